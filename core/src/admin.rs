//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/admin/config`. It runs on its own
//! thread with blocking sockets, far from the request path; a scrape merges the workers'
//! metric shards.

use crate::metrics::Metrics;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Process state the admin endpoints report.
#[derive(Debug, Default)]
pub struct AdminState {
    pub workers: usize,
    pub workers_ready: AtomicUsize,
    pub draining: AtomicBool,
    /// JSON for `/admin/config` (no secrets), replaced on reload.
    pub config_info: Mutex<String>,
}

impl AdminState {
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.workers_ready.load(Ordering::Relaxed) >= self.workers
    }

    pub fn set_config_info(&self, info: String) {
        match self.config_info.lock() {
            Ok(mut g) => *g = info,
            Err(p) => *p.into_inner() = info,
        }
    }
}

pub fn spawn(
    listener: TcpListener,
    metrics: Metrics,
    state: Arc<AdminState>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let metrics = metrics.clone();
                let state = state.clone();
                // One short-lived thread per admin connection: scrapes are rare and must not be
                // held up by a slow client.
                let _ = std::thread::Builder::new()
                    .name("sluice-admin-conn".into())
                    .spawn(move || handle(conn, &metrics, &state));
            }
        })?;
    Ok(())
}

fn handle(mut conn: TcpStream, metrics: &Metrics, state: &AdminState) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let path = loop {
        let Some(spare) = buf.get_mut(len..) else {
            return;
        };
        if spare.is_empty() {
            let _ = respond(&mut conn, 431, "text/plain", b"request head too large\n");
            return;
        }
        match conn.read(spare) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf.get(..len).unwrap_or_default()) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") && req.method != Some("HEAD") {
                    let _ = respond(&mut conn, 405, "text/plain", b"method not allowed\n");
                    return;
                }
                break req
                    .path
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_owned();
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => {
                let _ = respond(&mut conn, 400, "text/plain", b"bad request\n");
                return;
            }
        }
    };
    let _ = match path.as_str() {
        "/metrics" => respond(
            &mut conn,
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render().as_bytes(),
        ),
        "/healthz" => respond(&mut conn, 200, "text/plain", b"ok\n"),
        "/readyz" => {
            if state.is_ready() {
                respond(&mut conn, 200, "text/plain", b"ready\n")
            } else if state.draining.load(Ordering::Relaxed) {
                respond(&mut conn, 503, "text/plain", b"draining\n")
            } else {
                respond(&mut conn, 503, "text/plain", b"starting\n")
            }
        }
        "/admin/config" => {
            let info = match state.config_info.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            respond(&mut conn, 200, "application/json", info.as_bytes())
        }
        "/admin/quota" => match &metrics.board {
            Some(board) => {
                let json = board.current().view_json(crate::time::unix_ms());
                respond(&mut conn, 200, "application/json", json.as_bytes())
            }
            None => respond(&mut conn, 404, "text/plain", b"not found\n"),
        },
        _ => respond(&mut conn, 404, "text/plain", b"not found\n"),
    };
}

fn respond(
    conn: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 128);
    crate::http::write_status_line(&mut out, 1, status);
    crate::http::write_header(&mut out, "Content-Type", content_type.as_bytes());
    crate::http::write_header_u64(&mut out, "Content-Length", body.len() as u64);
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    conn.write_all(&out)?;
    conn.flush()
}
