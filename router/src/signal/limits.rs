//! What one signaling client may send: message size and rate, the same for both transports.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest message (a Socket.IO packet or a WebSocket text message) a client may send: room for an SDP offer
/// with many codecs, far below what would let one client hold much memory.
pub const MAX_MESSAGE_BYTES: usize = 128 << 10;

/// Events a client may send per second on average, and in a burst. A call app sends a few dozen at connection
/// time (offer, answer, candidates); chat is a few per second. Past it the client is disconnected.
const RATE_PER_SECOND: f64 = 50.0;
const BURST: f64 = 200.0;

/// A token bucket per client.
#[derive(Debug)]
pub struct EventBudget {
    state: Mutex<(f64, Instant)>,
}

impl Default for EventBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBudget {
    pub fn new() -> Self {
        EventBudget { state: Mutex::new((BURST, Instant::now())) }
    }

    /// Takes one event's worth; false when the client is over its rate.
    pub fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * RATE_PER_SECOND).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a plain WebSocket client may stay silent (it answers our pings with pongs, which count).
pub const WEBSOCKET_IDLE: Duration = Duration::from_secs(60);
/// How often the router pings a plain WebSocket client.
pub const WEBSOCKET_PING: Duration = Duration::from_secs(25);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_a_flood_does_not_and_the_budget_refills() {
        let budget = EventBudget::new();
        let start = Instant::now();
        let passed = (0..1000).filter(|_| budget.take_at(start)).count();
        assert_eq!(passed, BURST as usize);
        assert!(!budget.take_at(start));
        assert!(budget.take_at(start + Duration::from_millis(100)), "5 events' worth came back in 100 ms");
    }
}
