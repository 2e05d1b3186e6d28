//! berth-pause: the process that holds a pod's shared PID namespace.
//!
//! As PID 1 it must reap every orphan that is re-parented to it and exit
//! cleanly on SIGINT/SIGTERM. It is built statically (hack/build.sh) so it
//! runs from any image, including the project's `pause` test image.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_child(_: libc::c_int) {
    // Reap every exited child; waitpid is async-signal-safe.
    loop {
        // SAFETY: waitpid with a null status pointer and WNOHANG has no
        // memory effects and is async-signal-safe.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the
    // handlers only touch an atomic and call async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            eprintln!("berth-pause: sigaction {sig} failed");
            std::process::exit(1);
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("berth-pause {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("berth-pause: warning: not running as PID 1");
    }
    install(libc::SIGINT, on_stop);
    install(libc::SIGTERM, on_stop);
    install(libc::SIGCHLD, on_child);
    while !STOP.load(Ordering::SeqCst) {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
}
