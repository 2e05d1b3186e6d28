//! Minimal logging in runc's formats (`--log`, `--log-format text|json`).
//!
//! Not `tracing`: callers (containerd's runc shim, go-runc) parse the log
//! file as logrus lines (`{"level":"error","msg":...,"time":...}`), the
//! runtime is single-threaded and short-lived, and a subscriber stack costs
//! start-up time and RSS that are product goals here. One line per event.

use std::io::Write;
use std::sync::OnceLock;

struct Logger {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Configure once, at the CLI edge. A log file that cannot be opened is
/// reported and logging falls back to stderr.
pub fn init(path: Option<&std::path::Path>, json: bool, debug: bool) {
    let file = path.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("berth-runc: open log {}: {e}", p.display()))
            .ok()
    });
    let _ = LOGGER.set(Logger { file, json, debug });
}

fn emit(level: &str, msg: &str, also_stderr: bool) {
    let Some(l) = LOGGER.get() else {
        eprintln!("{msg}");
        return;
    };
    let time = crate::state::rfc3339_now();
    let line = if l.file.is_none() {
        String::new()
    } else if l.json {
        format!(
            "{}\n",
            serde_json::json!({"level": level, "msg": msg, "time": time})
        )
    } else {
        format!("time={time:?} level={level} msg={msg:?}\n")
    };
    match &l.file {
        Some(f) => {
            let _ = (&*f).write_all(line.as_bytes());
            if also_stderr {
                eprintln!("{msg}");
            }
        }
        // No log file: people read stderr, so plain text.
        None if also_stderr => eprintln!("{msg}"),
        None => eprintln!("{level}: {msg}"),
    }
}

pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

pub fn debug(msg: &str) {
    if debug_enabled() {
        emit("debug", msg, false);
    }
}

pub fn info(msg: &str) {
    emit("info", msg, false);
}

pub fn warn(msg: &str) {
    emit("warning", msg, false);
}

/// A fatal error: to the log file and to stderr, where callers look.
pub fn error(msg: &str) {
    emit("error", msg, true);
}
