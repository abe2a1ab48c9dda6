//! Retry pacing shared by everything that reconnects (pulled cameras, RTMP pulls and pushes): exponential
//! backoff with jitter, reset after a healthy stretch.

use std::time::Duration;

pub const MIN: Duration = Duration::from_millis(500);
pub const MAX: Duration = Duration::from_secs(30);
/// A connection that worked this long resets the backoff: the next drop retries quickly.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    pub failures: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: MIN, failures: 0 }
    }
}

impl Backoff {
    /// Records a failure after a connection that lasted `healthy_for` (if it connected at all) and returns how
    /// long to wait before the next attempt.
    pub fn failed(&mut self, healthy_for: Option<Duration>) -> Duration {
        if healthy_for.is_some_and(|d| d >= HEALTHY_AFTER) {
            self.next = MIN;
            self.failures = 0;
        }
        self.failures += 1;
        let wait = jittered(self.next);
        self.next = (self.next * 2).min(MAX);
        wait
    }
}

/// Up to 25% less than `d`, so peers that dropped together do not reconnect in lockstep.
pub fn jittered(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let fraction = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 0.25;
    d.mul_f64(1.0 - fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.failed(None)).collect();
        assert!(waits[0] <= MIN && waits[0] >= MIN.mul_f64(0.75));
        assert!(waits[1] > waits[0].mul_f64(1.2));
        assert!(waits[9] <= MAX && waits[9] >= MAX.mul_f64(0.75));
        assert!(b.failed(Some(HEALTHY_AFTER)) <= MIN);
        assert_eq!(b.failures, 1);
    }
}
