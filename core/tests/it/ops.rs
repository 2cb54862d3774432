//! Operations surface: admin endpoints, IO driver fallback, `sluice check`, drain.

use crate::harness::*;
use std::process::Command;

#[test]
fn admin_endpoints() {
    let m = mock(&[]);
    let s = sluice(&proxy_config(&m.url(), "", ""), "uring");
    assert_eq!(
        http(s.admin, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    let end = std::time::Instant::now() + DEADLINE;
    while http(s.admin, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").status != 200 {
        assert!(std::time::Instant::now() < end, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let metrics = s.metrics();
    assert!(
        metrics.contains(r#"sluice_worker_io_driver{worker="0",driver="io_uring"} 1"#),
        "{metrics}"
    );
    let cfg = http(s.admin, "GET /admin/config HTTP/1.1\r\nHost: x\r\n\r\n").json();
    assert_eq!(cfg["models"][0], "gpt-4o-mini");
    assert_eq!(
        http(s.admin, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").status,
        404
    );
}

#[test]
fn io_uring_setup_failure_falls_back_to_epoll() {
    // A ring larger than the kernel allows makes io_uring setup fail, as a small
    // `ulimit -l` or a seccomp profile would.
    let m = mock(&[]);
    let mut s = sluice(
        &proxy_config(&m.url(), "uring_entries = 1048576", ""),
        "auto",
    );
    assert!(
        s.proc.wait_log("falling back to epoll"),
        "{}",
        s.proc.log_text()
    );
    let r = s.request(&post(
        "/v1/chat/completions",
        &chat_body(true, true, "still works"),
    ));
    assert_eq!(r.status, 200);
    assert!(s.metrics().contains(r#"driver="epoll"} 1"#));
    // Forcing uring with an impossible ring is an error, not a silent fallback.
    let dir = TempDir::new();
    let path = dir.0.join("c.toml");
    std::fs::write(&path, proxy_config(&m.url(), "uring_entries = 1048576", "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--io-driver", "uring", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn check_command_reports_errors_with_locations() {
    let dir = TempDir::new();
    let good = dir.0.join("good.toml");
    std::fs::write(&good, proxy_config("http://127.0.0.1:1/v1", "", "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("gpt-4o-mini"));
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n\n[models.x]\ntargets = [{ backend = \"missing\" }]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:"), "{err}");
}

#[test]
fn sigterm_drains_in_flight_stream() {
    let up = scripted(vec![
        Step::Send(sse_response_head()),
        Step::Send(chunk(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n",
        )),
        Step::WaitGo,
        Step::Send(chunk(b"data: [DONE]\n\n")),
        Step::Send(b"0\r\n\r\n".to_vec()),
    ]);
    let mut s = sluice(
        &proxy_config(&format!("http://{}/v1", up.addr), "", ""),
        "epoll",
    );
    let addr = s.addr;
    let client = std::thread::spawn(move || {
        http(
            addr,
            &post("/v1/chat/completions", &chat_body(true, false, "hi")),
        )
    });
    up.requests.recv_timeout(DEADLINE).unwrap();
    s.signal(15);
    assert!(s.proc.wait_log("draining"));
    // New connections are refused while the stream finishes.
    up.go.send(()).unwrap();
    let r = client.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    let status = s.proc.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reload_keeps_in_flight_streams_and_rejects_bad_files() {
    let up = scripted(vec![
        Step::Send(sse_response_head()),
        Step::Send(chunk(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"old\"}}]}\n\n",
        )),
        Step::WaitGo,
        Step::Send(chunk(b"data: [DONE]\n\n")),
        Step::Send(b"0\r\n\r\n".to_vec()),
    ]);
    let m = mock(&[]);
    for driver in drivers() {
        let old = proxy_config(&format!("http://{}/v1", up.addr), "", "");
        let mut s = sluice(&old, driver);
        let addr = s.addr;
        let client = std::thread::spawn(move || {
            http(
                addr,
                &post("/v1/chat/completions", &chat_body(true, false, "hi")),
            )
        });
        up.requests.recv_timeout(DEADLINE).unwrap();

        // A broken file is refused and the running config stays.
        std::fs::write(&s.config_path, "[server]\nworkers = \"many\"\n").unwrap();
        s.signal(1);
        assert!(
            s.proc.wait_log("config reload rejected"),
            "{}",
            s.proc.log_text()
        );
        assert!(
            s.proc.wait_log("sluice.toml:2:11: error: invalid type"),
            "{}",
            s.proc.log_text()
        );

        // A good file adds a model; new requests see it at once.
        let new = format!(
            "{old}\n[backends.mockup]\nprovider = \"openai\"\nbase_url = \"{}\"\n\n[models.second]\ntargets = [{{ backend = \"mockup\", model = \"mock-small\" }}]\n",
            m.url()
        );
        std::fs::write(&s.config_path, new).unwrap();
        s.signal(1);
        assert!(s.proc.wait_log("config reloaded"), "{}", s.proc.log_text());
        // Each worker installs the snapshot on its next housekeeping tick and says so.
        for w in ["worker=0", "worker=1"] {
            assert!(
                s.proc
                    .wait_log_line(|l| l.contains("config snapshot installed") && l.contains(w)),
                "{}",
                s.proc.log_text()
            );
        }
        let body = r#"{"model":"second","messages":[{"role":"user","content":"after reload"}]}"#;
        for _ in 0..4 {
            let r = s.request(&post("/v1/chat/completions", body));
            assert_eq!(r.status, 200, "{driver}: {}", r.text());
        }
        let admin = http(s.admin, "GET /admin/config HTTP/1.1\r\nHost: x\r\n\r\n").json();
        assert!(
            admin["models"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "second"),
            "{admin}"
        );

        // The stream that started before both reloads finishes untouched.
        up.go.send(()).unwrap();
        let r = client.join().unwrap();
        assert_eq!(r.status, 200, "{driver}");
        assert!(
            r.text().contains("old") && r.text().ends_with("data: [DONE]\n\n"),
            "{}",
            r.text()
        );
    }
}
