//! The pause binary as a user (the runtime) sees it: it stays up, and a
//! SIGTERM ends it with status 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn pause_runs_until_sigterm_then_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth-pause"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn berth-pause");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "pause exited on its own"
    );
    let pid = child.id() as libc::pid_t;
    // SAFETY: pid is our own live child; kill has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "pause exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "pause ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
