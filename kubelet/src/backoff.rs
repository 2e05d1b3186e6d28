//! Crash-loop back-off: 10 s after the first restart, doubling to 5 min;
//! forgotten once an entry has been quiet for twice the maximum, and reset
//! by a container that ran for 10 minutes. Pure: times are passed in (ns
//! since the epoch, as the CRI reports them).

use std::collections::HashMap;
use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before it exited starts over at INITIAL.
pub const RESET_AFTER_RUNNING: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_ns: i64,
}

#[derive(Debug, Clone)]
pub struct BackOff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for BackOff {
    fn default() -> Self {
        BackOff::new(INITIAL, MAX)
    }
}

fn since(now_ns: i64, then_ns: i64) -> Duration {
    Duration::from_nanos(now_ns.saturating_sub(then_ns).max(0) as u64)
}

impl BackOff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        BackOff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// Record a restart of `key` at `now_ns`: the first waits `initial`
    /// next time, each further one twice the last, up to `max`.
    pub fn next(&mut self, key: &str, now_ns: i64) {
        let (initial, max) = (self.initial, self.max);
        let e = self.entries.entry(key.to_owned()).or_insert(Entry {
            delay: Duration::ZERO,
            last_ns: now_ns,
        });
        e.delay = if e.delay.is_zero() || since(now_ns, e.last_ns) > max * 2 {
            initial
        } else {
            (e.delay * 2).min(max)
        };
        e.last_ns = now_ns;
    }

    /// How long `key` still has to wait when its container exited at
    /// `exited_ns`; None when it may restart now.
    pub fn remaining(&self, key: &str, exited_ns: i64, now_ns: i64) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if since(now_ns, e.last_ns) > self.max * 2 {
            return None;
        }
        let waited = since(now_ns, exited_ns);
        (waited < e.delay).then(|| e.delay - waited)
    }

    /// The delay the next wait of `key` will be (for messages).
    pub fn delay(&self, key: &str) -> Duration {
        self.entries
            .get(key)
            .map(|e| e.delay)
            .unwrap_or(Duration::ZERO)
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drop entries of keys that start with `prefix` (a pod that is gone).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn doubles_from_10s_to_300s() {
        let mut b = BackOff::default();
        let mut delays = Vec::new();
        let mut now = 1000 * S;
        for _ in 0..8 {
            b.next("k", now);
            delays.push(b.delay("k").as_secs());
            now += 5 * S;
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn remaining_counts_from_the_exit() {
        let mut b = BackOff::default();
        assert_eq!(b.remaining("k", 0, 100 * S), None); // never restarted
        b.next("k", 100 * S);
        // Exited at 104 s: must wait until 114 s.
        assert_eq!(
            b.remaining("k", 104 * S, 106 * S),
            Some(Duration::from_secs(8))
        );
        assert_eq!(b.remaining("k", 104 * S, 114 * S), None);
    }

    #[test]
    fn quiet_entries_start_over() {
        let mut b = BackOff::default();
        b.next("k", 0);
        b.next("k", S);
        assert_eq!(b.delay("k").as_secs(), 20);
        b.next("k", 2000 * S); // quiet for more than 2 * 300 s
        assert_eq!(b.delay("k").as_secs(), 10);
        b.reset("k");
        assert_eq!(b.delay("k"), Duration::ZERO);
        b.next("p/a", 0);
        b.forget_prefix("p/");
        assert_eq!(b.delay("p/a"), Duration::ZERO);
    }
}
