//! Test harness: starts the real `sluice` binary and the real mock upstream
//! (`sluice-loadgen mock`) on ephemeral loopback ports, plus a scripted raw upstream for
//! byte-level tests. Every wait is on an event (a line printed, a byte read, a socket closed),
//! bounded by a generous deadline so a broken build fails instead of hanging.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bound for any single wait in tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn drivers() -> [&'static str; 2] {
    ["uring", "epoll"]
}

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn loadgen_bin() -> PathBuf {
    let p = bin_dir().join("sluice-loadgen");
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// A child process killed on drop, with its stderr collected.
pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    log_rx: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Wait until a stderr line contains `needle` (or the deadline passes).
    pub fn wait_log(&mut self, needle: &str) -> bool {
        self.wait_log_line(|l| l.contains(needle))
    }

    /// Wait until a stderr line satisfies `pred` (or the deadline passes).
    pub fn wait_log_line(&mut self, pred: impl Fn(&str) -> bool) -> bool {
        if self.log.lock().unwrap().iter().any(|l| pred(l)) {
            return true;
        }
        let rx = self.log_rx.as_ref().unwrap();
        let end = std::time::Instant::now() + DEADLINE;
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) if pred(&l) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd`, wait for a stdout line starting with `ready_prefix`, return it and the process.
fn start(mut cmd: Command, ready_prefix: &str) -> (Proc, String) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (log_tx, log_rx) = mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line.clone());
                let _ = log_tx.send(line);
            }
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut proc = Proc {
        child,
        log,
        log_rx: Some(log_rx),
    };
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(ready_prefix) => return (proc, line),
            Ok(_) => {}
            Err(_) => {
                let _ = proc.child.kill();
                panic!("process did not become ready; stderr:\n{}", proc.log_text());
            }
        }
    }
}

pub struct Mock {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Mock {
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `GET /mock/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let r = http(
            self.addr,
            "GET /mock/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        serde_json::from_slice(&r.body).unwrap()
    }
}

pub fn mock(args: &[&str]) -> Mock {
    let mut cmd = Command::new(loadgen_bin());
    cmd.arg("mock")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(args);
    let (proc, line) = start(cmd, "listening on ");
    let addr = line
        .trim_start_matches("listening on ")
        .trim()
        .parse()
        .unwrap();
    Mock { proc, addr }
}

pub struct Sluice {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    _dir: TempDir,
    pub config_path: PathBuf,
}

impl Sluice {
    pub fn metrics(&self) -> String {
        let r = http(self.admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        String::from_utf8(r.body).unwrap()
    }

    /// Value of one metric line (exact name with labels), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    /// Wait until `series` reaches `value` (metrics are updated when the worker notices).
    pub fn wait_metric(&self, series: &str, value: f64) -> bool {
        let end = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < end {
            if self.metric(series) == value {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Sum of every series of metric `name` (all label sets), 0 if absent.
    pub fn metric_sum(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// Wait until the sum over all label sets of `name` reaches `value`.
    pub fn wait_metric_sum(&self, name: &str, value: f64) -> bool {
        let end = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < end {
            if self.metric_sum(name) == value {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn request(&self, raw: &str) -> Response {
        http(self.addr, raw)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: use the kill command rather than libc in tests.
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.proc.child.id().to_string())
            .status();
    }
}

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sluice-it-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start sluice with `config` (TOML; `listen`/`admin` should use port 0) on `driver`.
pub fn sluice(config: &str, driver: &str) -> Sluice {
    sluice_env(config, driver, &[])
}

pub fn sluice_env(config: &str, driver: &str, env: &[(&str, &str)]) -> Sluice {
    let dir = TempDir::new();
    let path = dir.0.join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("run")
        .arg("--config")
        .arg(&path)
        .arg("--io-driver")
        .arg(driver);
    cmd.env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (proc, line) = start(cmd, "sluice listening ");
    // "sluice listening client=ADDR[,ADDR] admin=ADDR"
    let mut addr = None;
    let mut admin = None;
    for part in line.split_whitespace() {
        if let Some(v) = part.strip_prefix("client=") {
            addr = v.split(',').next().and_then(|a| a.parse().ok());
        }
        if let Some(v) = part.strip_prefix("admin=") {
            admin = v.parse().ok();
        }
    }
    Sluice {
        proc,
        addr: addr.unwrap(),
        admin: admin.unwrap(),
        _dir: dir,
        config_path: path,
    }
}

/// Config for one openai backend at `url` and model `m` mapped to upstream model `mock-small`.
/// Two workers unless `extra_server` sets `workers` itself.
pub fn proxy_config(url: &str, extra_server: &str, extra_backend: &str) -> String {
    let workers = if extra_server.contains("workers") {
        ""
    } else {
        "workers = 2"
    };
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
{workers}
{extra_server}

[backends.local]
provider = "openai"
base_url = "{url}"
{extra_backend}

[models."gpt-4o-mini"]
targets = [{{ backend = "local", model = "mock-small" }}]
"#
    )
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body after transfer decoding.
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Send one raw request on a fresh connection and read one response.
pub fn http(addr: SocketAddr, raw: &str) -> Response {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r).expect("response")
}

/// Read one response from a buffered connection (Content-Length, chunked, or until close).
pub fn read_response<R: BufRead>(r: &mut R) -> Option<Response> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':')?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        if status == 100 {
            continue;
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim(), 16).ok()?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length") {
            let n: usize = n.parse().ok()?;
            body.resize(n, 0);
            r.read_exact(&mut body).ok()?;
        } else if status != 204 && status != 304 {
            r.read_to_end(&mut body).ok()?;
        }
        return Some(Response {
            status,
            headers,
            body,
        });
    }
}

pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn chat_body(stream: bool, usage: bool, content: &str) -> String {
    chat_body_for("gpt-4o-mini", stream, usage, content)
}

pub fn chat_body_for(model: &str, stream: bool, usage: bool, content: &str) -> String {
    let opts = if usage {
        r#","stream_options":{"include_usage":true}"#
    } else {
        ""
    };
    format!(
        r#"{{"model":"{model}","stream":{stream}{opts},"messages":[{{"role":"user","content":"{content}"}}]}}"#
    )
}

/// One scripted step of a raw upstream's response.
#[derive(Clone)]
pub enum Step {
    /// Write these bytes (a separate TCP write).
    Send(Vec<u8>),
    /// Wait until the test says go.
    WaitGo,
    /// Close the connection abruptly.
    Close,
    /// Block reading until the peer closes; reports it on the `closed` channel.
    AwaitPeerClose,
}

/// A raw TCP upstream that answers each connection's first request with a fixed script.
pub struct Scripted {
    pub addr: SocketAddr,
    pub requests: mpsc::Receiver<Vec<u8>>,
    pub go: mpsc::Sender<()>,
    pub closed: mpsc::Receiver<()>,
}

pub fn scripted(steps: Vec<Step>) -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (req_tx, req_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (closed_tx, closed_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let go_rx = go_rx;
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            // Read one request head + Content-Length body.
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            let head_end = loop {
                let n = s.read(&mut tmp).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&tmp[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = s.read(&mut tmp).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let _ = req_tx.send(buf.clone());
            for step in &steps {
                match step {
                    Step::Send(b) => {
                        if s.write_all(b).is_err() {
                            break;
                        }
                        let _ = s.flush();
                    }
                    Step::WaitGo => {
                        let _ = go_rx.recv_timeout(DEADLINE);
                    }
                    Step::Close => break,
                    Step::AwaitPeerClose => {
                        let mut b = [0u8; 64];
                        loop {
                            match s.read(&mut b) {
                                Ok(0) => {
                                    let _ = closed_tx.send(());
                                    break;
                                }
                                Ok(_) => {}
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut =>
                                {
                                    break
                                }
                                Err(_) => {
                                    let _ = closed_tx.send(());
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    Scripted {
        addr,
        requests: req_rx,
        go: go_tx,
        closed: closed_rx,
    }
}

/// Wrap SSE bytes as a chunked HTTP response split into the given pieces.
pub fn sse_response_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec()
}

pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}
