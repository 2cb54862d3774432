//! Child processes of the end-to-end benches (mock upstreams, gateways, load generators).
//!
//! Every child runs in its own process group, pinned with `taskset`, under
//! `setpriv --pdeathsig KILL` (the kernel kills it if the bench dies without cleaning up, even
//! by SIGKILL). Its process group is recorded in a registry: dropping the [`Child`] kills the
//! group (nginx's workers too) and reaps it, and [`install_signal_handler`] kills every
//! registered group on SIGINT, SIGTERM or SIGHUP before exiting. So no child outlives the
//! bench, whether it ends normally, with an error, or by Ctrl-C.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

/// Process groups of the live children.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn register(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.push(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.retain(|&p| p != pgid);
    }
}

fn kill_group(pgid: i32) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// Kills every registered child group (the signal handler's job; also usable before exiting
/// on an error that skips destructors).
pub fn kill_all() {
    let groups = match GROUPS.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for pgid in groups {
        kill_group(pgid);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: kill every child group, remove `cleanup` (the run's scratch
/// directory), say so and exit with 130.
pub fn install_signal_handler(cleanup: Option<PathBuf>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                kill_all();
                if let Some(dir) = &cleanup {
                    let _ = std::fs::remove_dir_all(dir);
                }
                eprintln!("\ninterrupted (signal {sig}): every child process was killed");
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// How to start one child.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Shown in errors and logs (`mock-fast`, `nginx`, `sluice`).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// `taskset -c` CPU list; `None`: not pinned.
    pub cpus: Option<String>,
    /// Where stderr goes (stdout too when `ready` is `None`).
    pub log: PathBuf,
}

impl Spec {
    /// The command line actually run: `taskset -c CPUS setpriv --pdeathsig KILL -- PROGRAM
    /// ARGS...`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(cpus) = &self.cpus {
            argv.extend(["taskset".to_owned(), "-c".to_owned(), cpus.clone()]);
        }
        argv.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(str::to_owned));
        argv.push(self.program.display().to_string());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// A running child; dropping it kills its process group.
pub struct Child {
    pub name: String,
    inner: std::process::Child,
    pgid: i32,
    pub log: PathBuf,
}

impl Child {
    /// Starts `spec` with stdout and stderr going to its log file.
    pub fn spawn(spec: &Spec) -> Result<Child, String> {
        let log =
            std::fs::File::create(&spec.log).map_err(|e| format!("{}: {e}", spec.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        Self::start(spec, Stdio::from(log), Stdio::from(log2))
    }

    fn start(spec: &Spec, stdout: Stdio, stderr: Stdio) -> Result<Child, String> {
        use std::os::unix::process::CommandExt;
        let argv = spec.argv();
        let (program, args) = argv.split_first().ok_or("empty command line")?;
        let inner = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {} ({program}): {e}", spec.name))?;
        let pgid = i32::try_from(inner.id()).map_err(|e| e.to_string())?;
        register(pgid);
        Ok(Child {
            name: spec.name.clone(),
            inner,
            pgid,
            log: spec.log.clone(),
        })
    }

    /// Starts `spec` and waits (up to `timeout`) for a stdout line starting with
    /// `ready_prefix`; returns the child and the rest of that line. Stderr goes to the log;
    /// later stdout lines are appended to it too.
    pub fn spawn_ready(
        spec: &Spec,
        ready_prefix: &str,
        timeout: Duration,
    ) -> Result<(Child, String), String> {
        let log =
            std::fs::File::create(&spec.log).map_err(|e| format!("{}: {e}", spec.log.display()))?;
        let mut child = Self::start(spec, Stdio::piped(), Stdio::from(log))?;
        let stdout = child.inner.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel::<String>();
        let prefix = ready_prefix.to_owned();
        std::thread::Builder::new()
            .name(format!("{}-stdout", spec.name))
            .spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !sent {
                        if let Some(rest) = line.strip_prefix(&prefix) {
                            let _ = tx.send(rest.trim().to_owned());
                            sent = true;
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        match rx.recv_timeout(timeout) {
            Ok(rest) => Ok((child, rest)),
            Err(_) => {
                let status = child.inner.try_wait().ok().flatten();
                Err(format!(
                    "{} did not print `{ready_prefix}` within {} s ({}); its log: {}\n{}",
                    spec.name,
                    timeout.as_secs(),
                    status.map_or_else(|| "still running".to_owned(), |s| s.to_string()),
                    spec.log.display(),
                    tail(&spec.log, 20)
                ))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Waits for the child to exit by itself, up to `limit`; kills it after that.
    pub fn wait_for(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.inner.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(self.pgid);
                    let _ = self.inner.wait();
                    return Err(format!(
                        "{} did not finish within {} s and was killed",
                        self.name,
                        limit.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for {}: {e}", self.name)),
            }
        }
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.inner.try_wait(), Ok(None))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        kill_group(self.pgid);
        let _ = self.inner.wait();
        unregister(self.pgid);
    }
}

/// The last `lines` lines of a log file (for error messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join("\n")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("nothing listens on {addr} after {timeout:?}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A loopback port that was free a moment ago (for servers that cannot bind port 0 and
/// report it, such as nginx).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_pins_and_ties_the_child_to_the_bench() {
        let spec = Spec {
            name: "x".into(),
            program: "/bin/sluice".into(),
            args: vec!["run".into()],
            cpus: Some("0".into()),
            log: "/tmp/x.log".into(),
        };
        assert_eq!(
            spec.argv().join(" "),
            "taskset -c 0 setpriv --pdeathsig KILL -- /bin/sluice run"
        );
    }

    #[test]
    fn dropping_a_child_kills_its_group() {
        let dir = std::env::temp_dir().join(format!("sluice-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec {
            name: "sleeper".into(),
            program: "/bin/sh".into(),
            // A grandchild in the same group must die too.
            args: vec!["-c".into(), "sleep 60 & echo ready; wait".into()],
            cpus: None,
            log: dir.join("sleeper.log"),
        };
        let (child, rest) = Child::spawn_ready(&spec, "ready", Duration::from_secs(10)).unwrap();
        assert_eq!(rest, "");
        let pgid = child.pgid;
        drop(child);
        std::thread::sleep(Duration::from_millis(100));
        let survivors = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter(|s| {
                // Fields 3 and 5: the state and the process group. A killed grandchild may stay
                // a zombie until init reaps it; it no longer runs.
                let fields: Vec<&str> = s
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
            })
            .count();
        assert_eq!(survivors, 0);
        assert!(GROUPS.lock().unwrap().iter().all(|&g| g != pgid));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wait_for_kills_after_the_limit() {
        let dir = std::env::temp_dir().join(format!("sluice-bench-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec {
            name: "slow".into(),
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
            cpus: None,
            log: dir.join("slow.log"),
        };
        let mut child = Child::spawn(&spec).unwrap();
        let t = Instant::now();
        assert!(child.wait_for(Duration::from_millis(200)).is_err());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!child.alive());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
