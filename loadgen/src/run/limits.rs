//! The open-files limit: every virtual user holds a socket, so 50,000 users need more than
//! the usual soft limit of 1024.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors a run needs besides its connections (runtime, io_uring, stdio, files, slack).
pub const SPARE_FILES: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; when even the hard limit is below
/// `needed`, first tries to lift both to `needed` (which only a privileged process may do).
/// Returns the soft limit in force afterwards.
pub fn raise_nofile(needed: u64) -> u64 {
    let old = getrlimit(Resource::Nofile);
    let soft = old.current.unwrap_or(u64::MAX);
    let hard = old.maximum.unwrap_or(u64::MAX);
    if hard < needed {
        let both = Rlimit {
            current: Some(needed),
            maximum: Some(needed),
        };
        if setrlimit(Resource::Nofile, both).is_ok() {
            return needed;
        }
    }
    if soft >= hard {
        return soft;
    }
    // An unlimited hard limit is refused as a soft value for files; the kernel's ceiling
    // (`fs.nr_open`, 1048576 by default) is the most a process can have.
    let target = hard.min(nr_open());
    let raised = Rlimit {
        current: Some(target),
        maximum: old.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => target,
        Err(_) => soft,
    }
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_is_raised_to_the_hard_limit() {
        let before = getrlimit(Resource::Nofile);
        let soft = raise_nofile(16);
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current, Some(soft));
        assert!(soft >= before.maximum.unwrap_or(u64::MAX).min(nr_open()));
        assert!(soft >= 16);
        // Idempotent.
        assert_eq!(raise_nofile(16), soft);
    }
}
