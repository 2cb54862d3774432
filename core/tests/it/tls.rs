//! Upstreams over TLS (rustls): certificate verification against a configured CA, and failure
//! when the certificate is not trusted.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// A TLS upstream on loopback answering every request with a small SSE stream. Returns its
/// port and the PEM of its (self-signed) certificate.
fn tls_upstream() -> (u16, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = ck.cert.pem();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in l.incoming() {
            let Ok(tcp) = tcp else { return };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                tcp.set_read_timeout(Some(DEADLINE)).unwrap();
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let body = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"secure\"}}]}\n\ndata: [DONE]\n\n";
                let mut resp = sse_response_head();
                resp.extend_from_slice(&chunk(body));
                resp.extend_from_slice(b"0\r\n\r\n");
                let _ = s.write_all(&resp);
                let _ = s.flush();
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    (port, cert_pem)
}

#[test]
fn tls_upstream_with_configured_ca() {
    let (port, pem) = tls_upstream();
    let dir = TempDir::new();
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    for driver in drivers() {
        let cfg = proxy_config(
            &format!("https://localhost:{port}/v1"),
            "",
            &format!("tls = {{ ca_file = \"{}\" }}", ca.display()),
        );
        let s = sluice(&cfg, driver);
        let r = s.request(&post("/v1/chat/completions", &chat_body(true, false, "hi")));
        assert_eq!(r.status, 200, "{driver}: {}", r.text());
        assert!(r.text().contains("secure") && r.text().ends_with("data: [DONE]\n\n"));
    }
}

#[test]
fn untrusted_tls_certificate_is_502() {
    let (port, _pem) = tls_upstream();
    let s = sluice(
        &proxy_config(&format!("https://localhost:{port}/v1"), "", ""),
        "epoll",
    );
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body(false, false, "hi"),
    ));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TLS"));
}
