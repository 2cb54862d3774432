//! TLS client settings per backend, built once per config snapshot (off the request path) and
//! shared by the workers through `Arc<ClientConfig>`.

use crate::config::{Config, TlsRoots};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashMap;
use std::sync::Arc;

/// Per backend name: the rustls client config and the name to verify.
pub type TlsConfigs = HashMap<String, (Arc<ClientConfig>, ServerName<'static>)>;

/// One worker's TLS connectors.
#[derive(Default)]
pub struct TlsClients(HashMap<String, (monoio_rustls::TlsConnector, ServerName<'static>)>);

impl TlsClients {
    pub fn new(configs: &TlsConfigs) -> Self {
        Self(
            configs
                .iter()
                .map(|(k, (cfg, name))| {
                    (
                        k.clone(),
                        (monoio_rustls::TlsConnector::from(cfg.clone()), name.clone()),
                    )
                })
                .collect(),
        )
    }

    pub fn get(
        &self,
        backend: &str,
    ) -> Option<&(monoio_rustls::TlsConnector, ServerName<'static>)> {
        self.0.get(backend)
    }
}

/// Build the TLS client configs for every https backend.
pub fn build(config: &Config) -> Result<TlsConfigs, String> {
    let mut out = HashMap::new();
    let mut system_roots: Option<Vec<CertificateDer<'static>>> = None;
    for b in &config.backends {
        let Some(url) = &b.upstream else { continue };
        if !url.tls {
            continue;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("backend `{}`: {e}", b.name))?;
        let mut cfg = if b.tls.danger_accept_invalid_certs {
            tracing::warn!(backend = %b.name, "TLS certificate verification is DISABLED (danger_accept_invalid_certs)");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            if let Some(path) = &b.tls.ca_file {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| {
                        format!(
                            "backend `{}`: reading ca_file {}: {e}",
                            b.name,
                            path.display()
                        )
                    })?
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        format!(
                            "backend `{}`: parsing ca_file {}: {e}",
                            b.name,
                            path.display()
                        )
                    })?;
                if certs.is_empty() {
                    return Err(format!(
                        "backend `{}`: ca_file {} holds no certificate",
                        b.name,
                        path.display()
                    ));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("backend `{}`: ca_file certificate: {e}", b.name))?;
                }
            } else {
                if matches!(b.tls.roots, TlsRoots::System | TlsRoots::SystemAndWebpki) {
                    let sys = system_roots.get_or_insert_with(|| {
                        let res = rustls_native_certs::load_native_certs();
                        for e in &res.errors {
                            tracing::debug!("loading a system root certificate failed: {e}");
                        }
                        res.certs
                    });
                    let (added, _ignored) = roots.add_parsable_certificates(sys.iter().cloned());
                    if added == 0 && matches!(b.tls.roots, TlsRoots::System) {
                        return Err(format!(
                            "backend `{}`: no system root certificates found",
                            b.name
                        ));
                    }
                }
                if matches!(b.tls.roots, TlsRoots::Webpki | TlsRoots::SystemAndWebpki) {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name_str = b
            .tls
            .server_name
            .clone()
            .unwrap_or_else(|| url.host.clone());
        let name = ServerName::try_from(name_str.clone()).map_err(|e| {
            format!(
                "backend `{}`: invalid TLS server name `{name_str}`: {e}",
                b.name
            )
        })?;
        out.insert(b.name.clone(), (Arc::new(cfg), name));
    }
    Ok(out)
}

/// Accepts any certificate. Only used with `danger_accept_invalid_certs = true`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
