//! Go's `time.Duration` text form (`"1m30s"`, `"100ms"`, `"2h"`), as the
//! KubeletConfiguration file writes durations.

use std::time::Duration;

/// Parse a Go duration string. Negative durations are refused: no kubelet
/// setting means anything by them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('-') {
        return Err(format!("duration {s:?} is negative"));
    }
    let mut rest = t;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {s:?}: missing unit after {rest:?}"))?;
        if num_len == 0 {
            return Err(format!("duration {s:?}: expected a number at {rest:?}"));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("duration {s:?}: unknown unit {unit:?}")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(format!("duration {s:?}: bad number {num:?}"));
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| format!("duration {s:?}: bad number {num:?}"))?
        };
        let mut part = int
            .checked_mul(unit_ns)
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
        // Fraction: digits beyond nanosecond precision are dropped.
        let mut scale = unit_ns;
        for d in frac.bytes().take(30) {
            scale /= 10;
            part += u128::from(d - b'0') * scale;
        }
        total_ns = total_ns
            .checked_add(part)
            .filter(|n| *n <= u128::from(u64::MAX))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
        rest = after;
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_go_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("2us"), Ok(Duration::from_micros(2)));
    }

    #[test]
    fn refuses_bad_durations() {
        for bad in ["", "10", "s", "1x", "-1s", "1..2s", "99999999999999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
