//! The CRI container log format: `<RFC3339Nano> <stdout|stderr> <P|F> <msg>\n`.
//! A line longer than the cap is split into partial (`P`) records followed by
//! a final (`F`) one, so readers can join them back.

use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Write one logical line (without its trailing newline) as CRI records,
/// splitting at `max` bytes of payload per record. `complete` is false for a
/// trailing fragment that had no newline yet (it ends in `P`).
pub fn write_line(
    out: &mut impl Write,
    timestamp: &str,
    stream: Stream,
    line: &[u8],
    max: usize,
    complete: bool,
) -> io::Result<()> {
    let max = max.max(1);
    let mut chunks = line.chunks(max).peekable();
    if chunks.peek().is_none() {
        let tag = if complete { "F" } else { "P" };
        return writeln!(out, "{timestamp} {} {tag} ", stream.as_str());
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let tag = if last && complete { "F" } else { "P" };
        write!(out, "{timestamp} {} {tag} ", stream.as_str())?;
        out.write_all(chunk)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The current UTC time as RFC 3339 with nanoseconds, the records' stamp.
///
/// berth-runtime has the same function; the shim, which writes the logs,
/// must not link berth-runtime (its libseccomp would be linked dynamically,
/// which breaks the shim's static build).
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_berth_runtime() {
        for (s, n) in [(0, 0), (951_782_400, 5), (1_767_322_245, 999_999_999)] {
            assert_eq!(super::rfc3339(s, n), berth_runtime::state::rfc3339(s, n));
        }
    }

    use super::*;

    const TS: &str = "2026-01-02T03:04:05.000000006Z";

    #[test]
    fn short_line_is_one_final_record() {
        let mut out = Vec::new();
        write_line(&mut out, TS, Stream::Stdout, b"hello", 16 * 1024, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{TS} stdout F hello\n")
        );
    }

    #[test]
    fn long_line_splits_into_partials_then_final() {
        let mut out = Vec::new();
        write_line(&mut out, TS, Stream::Stderr, b"abcdefg", 3, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let tags: Vec<_> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        let joined: String = text
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap())
            .collect();
        assert_eq!(joined, "abcdefg");
    }

    #[test]
    fn unterminated_fragment_stays_partial() {
        let mut out = Vec::new();
        write_line(&mut out, TS, Stream::Stdout, b"ab", 10, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{TS} stdout P ab\n")
        );
    }
}
