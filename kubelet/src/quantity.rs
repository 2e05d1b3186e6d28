//! Resource quantities (`"100m"`, `"0.5"`, `"64Mi"`, `"1e3"`, `"2G"`), as
//! the API writes them, parsed exactly (no floats).

/// A quantity in billionths of its unit (so `1m` is 1_000_000 and `1Ki`
/// is 1024 * 10^9): exact for every suffix, with room for `Ei`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let bad = || {
            format!(
                "quantity {s:?} is not a number with an optional suffix (like 100m, 0.5, 64Mi, 1G)"
            )
        };
        let t = s.trim();
        if t.is_empty() || t.len() > 64 {
            return Err(bad());
        }
        let (neg, t) = match t.as_bytes()[0] {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let num_end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(num_end);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad());
        }
        // The value as digits * 10^exp10 * 2^exp2.
        let mut digits: i128 = 0;
        let mut exp10: i32 = 0;
        for c in int.bytes().chain(frac.bytes()) {
            if digits > i128::MAX / 100 {
                return Err(format!("quantity {s:?} is too large"));
            }
            digits = digits * 10 + i128::from(c - b'0');
        }
        exp10 -= frac.len() as i32;
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            e if e.starts_with(['e', 'E']) => {
                let n: i32 = e[1..].parse().map_err(|_| bad())?;
                if !(-30..=30).contains(&n) {
                    return Err(format!("quantity {s:?}: exponent out of range"));
                }
                exp10 += n;
            }
            _ => return Err(bad()),
        }
        // To billionths: multiply by 10^(exp10 + 9), rounding up what is
        // below a billionth (as the API server rounds up to its precision).
        let mut v = digits;
        let e = exp10 + 9;
        let overflow = || format!("quantity {s:?} is too large");
        if e >= 0 {
            for _ in 0..e {
                v = v.checked_mul(10).ok_or_else(overflow)?;
            }
        } else {
            let div = 10i128.checked_pow((-e) as u32).unwrap_or(i128::MAX);
            v = (v + div - 1) / div;
        }
        v = v.checked_mul(1i128 << exp2).ok_or_else(overflow)?;
        if v > i128::from(i64::MAX) * NANO {
            return Err(overflow());
        }
        Ok(Quantity(if neg { -v } else { v }))
    }

    /// In thousandths, rounded up (CPU in millicores).
    pub fn milli(self) -> i64 {
        (self.0.div_euclid(1_000_000) + i128::from(self.0.rem_euclid(1_000_000) != 0)) as i64
    }

    /// In units, rounded up (memory in bytes).
    pub fn value(self) -> i64 {
        (self.0.div_euclid(NANO) + i128::from(self.0.rem_euclid(NANO) != 0)) as i64
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn cpu_quantities_in_millicores() {
        assert_eq!(q("100m").milli(), 100);
        assert_eq!(q("0.5").milli(), 500);
        assert_eq!(q("2").milli(), 2000);
        assert_eq!(q("1.0001").milli(), 1001); // rounded up
        assert_eq!(q("250000u").milli(), 250);
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(q("64Mi").value(), 64 << 20);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("128974848").value(), 128_974_848);
        assert_eq!(q("129M").value(), 129_000_000);
        assert_eq!(q("1Ei").value(), 1 << 60);
        assert!(q("-1").is_negative());
    }

    #[test]
    fn refuses_bad_quantities() {
        for bad in [
            "",
            "Mi",
            "1MB",
            "1..2",
            "abc",
            "1e",
            "1e99",
            "99999999999999999999Ei",
            "1 Gi",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
