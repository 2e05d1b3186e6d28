//! Copying a container's stdout/stderr into its CRI log file. One thread per
//! stream, blocking reads; records are written whole under a lock shared
//! with `reopen`, so a log rotation neither loses nor repeats a line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::logfmt::{Stream, write_line};

/// Lines longer than this are split into partial records (containerd's
/// default is 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// A container's log file, shared by its streams.
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(Some(f))),
        })
    }

    /// Open the path again (the old file was renamed away by the rotator).
    pub fn reopen(&self) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        *self.file.lock().expect("log lock") = Some(f);
        Ok(())
    }

    fn write(&self, stream: Stream, line: &[u8], complete: bool) {
        let ts = berth_runtime::state::rfc3339_now();
        let mut buf = Vec::with_capacity(line.len() + 64);
        // Writing to a Vec cannot fail.
        let _ = write_line(&mut buf, &ts, stream, line, MAX_LINE, complete);
        let mut guard = self.file.lock().expect("log lock");
        if let Some(f) = guard.as_mut() {
            use std::io::Write;
            // A full disk must not stop the container: drop the record.
            let _ = f.write_all(&buf);
        }
    }
}

/// Copy `src` into `log` until EOF, on a thread of its own.
pub fn spawn_copy(
    src: impl Read + Send + 'static,
    stream: Stream,
    log: LogFile,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(64 * 1024, src);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            // Read at most MAX_LINE bytes of one line: memory stays bounded
            // whatever the container prints.
            let n = match (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let complete = line.ends_with(b"\n");
            let body = if complete { &line[..n - 1] } else { &line[..] };
            log.write(stream, body, complete);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_lines_splits_long_ones_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path).unwrap();
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\n{long}\ntail");
        spawn_copy(
            std::io::Cursor::new(input.into_bytes()),
            Stream::Stdout,
            log.clone(),
        )
        .join()
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let tags: Vec<_> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["F", "P", "F", "P"], "{text}");
        assert!(text.lines().next().unwrap().ends_with(" stdout F one"));

        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        log.reopen().unwrap();
        spawn_copy(
            std::io::Cursor::new(b"after\n".to_vec()),
            Stream::Stderr,
            log,
        )
        .join()
        .unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), 1);
        assert!(new.ends_with(" stderr F after\n"), "{new}");
    }
}
