//! Turning a container's stdout/stderr bytes into CRI log records. The shim
//! is single-threaded: its loop hands each chunk it read to the stream's
//! [`LineSplitter`], which writes whole records to the [`LogFile`]; a
//! rotation (`reopen`) happens between two chunks, so it neither loses nor
//! repeats a line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::logfmt::{Stream, write_line};

/// Lines longer than this are split into partial records (containerd's
/// default is 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// A container's log file, shared by its streams.
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// One record's bytes, reused (records are written whole).
    buf: Vec<u8>,
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            file,
            buf: Vec::new(),
        })
    }

    /// Open the path again (the old file was renamed away by the rotator).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok(())
    }

    fn write(&mut self, stream: Stream, line: &[u8], complete: bool) {
        let ts = crate::logfmt::rfc3339_now();
        self.buf.clear();
        // Writing to a Vec cannot fail.
        let _ = write_line(&mut self.buf, &ts, stream, line, MAX_LINE, complete);
        // A full disk must not stop the container: drop the record.
        let _ = self.file.write_all(&self.buf);
        if self.buf.capacity() > 64 * 1024 {
            // One long line must not keep its buffer for the pod's lifetime.
            self.buf = Vec::new();
        }
    }
}

/// One output stream's line assembly: bytes in, CRI records out. Memory
/// stays bounded whatever the container prints: at most [`MAX_LINE`] bytes
/// of an unfinished line are kept.
pub struct LineSplitter {
    stream: Stream,
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        LineSplitter {
            stream,
            partial: Vec::new(),
        }
    }

    /// Log what `data` completes; keep the unfinished tail.
    pub fn push(&mut self, mut data: &[u8], log: &mut LogFile) {
        while !data.is_empty() {
            let take = data.len().min(MAX_LINE - self.partial.len());
            match data[..take].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.partial.is_empty() {
                        log.write(self.stream, &data[..i], true);
                    } else {
                        self.partial.extend_from_slice(&data[..i]);
                        log.write(self.stream, &self.partial, true);
                        self.partial.clear();
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() == MAX_LINE {
                        log.write(self.stream, &self.partial, false);
                        self.partial.clear();
                    }
                }
            }
        }
        if self.partial.is_empty() && self.partial.capacity() > 4096 {
            self.partial = Vec::new();
        }
    }

    /// The stream ended: log an unfinished last line as a partial record.
    pub fn finish(&mut self, log: &mut LogFile) {
        if !self.partial.is_empty() {
            log.write(self.stream, &self.partial, false);
        }
        self.partial = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_lines_splits_long_ones_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = LogFile::open(&path).unwrap();
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\n{long}\ntail");
        let mut out = LineSplitter::new(Stream::Stdout);
        // In uneven chunks, as pipes deliver them.
        for chunk in input.as_bytes().chunks(1000) {
            out.push(chunk, &mut log);
        }
        out.finish(&mut log);
        let text = std::fs::read_to_string(&path).unwrap();
        let tags: Vec<_> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["F", "P", "F", "P"], "{text}");
        assert!(text.lines().next().unwrap().ends_with(" stdout F one"));

        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        log.reopen().unwrap();
        let mut err = LineSplitter::new(Stream::Stderr);
        err.push(b"aft", &mut log);
        err.push(b"er\n", &mut log);
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), 1);
        assert!(new.ends_with(" stderr F after\n"), "{new}");
    }
}
