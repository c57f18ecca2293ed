//! Backoff between upstream attempts, as Spanner's service config sets it
//! (`google/spanner/v1/spanner_grpc_service_config.json`): 250 ms initial,
//! ×1.3 per attempt, at most 32 s; each wait jittered to between half and
//! all of the current backoff so retrying callers do not move in lockstep.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Successive waits.
pub struct Backoff {
    current: Duration,
    multiplier: f64,
    max: Duration,
}

impl Backoff {
    /// Spanner's retry policy.
    pub fn spanner() -> Self {
        Self {
            current: Duration::from_millis(250),
            multiplier: 1.3,
            max: Duration::from_secs(32),
        }
    }

    /// The next wait.
    pub fn next(&mut self) -> Duration {
        let full = self.current;
        self.current = self.current.mul_f64(self.multiplier).min(self.max);
        let half = full / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A number in [0, 1): std's randomly keyed hasher is random enough for
/// jitter and needs no extra dependency.
fn unit_random() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stay_jittered_within_bounds() {
        let mut b = Backoff::spanner();
        let mut full = Duration::from_millis(250);
        for _ in 0..40 {
            let wait = b.next();
            assert!(wait >= full / 2 && wait <= full, "{wait:?} vs {full:?}");
            full = full.mul_f64(1.3).min(Duration::from_secs(32));
        }
        assert_eq!(full, Duration::from_secs(32));
    }
}
