//! The clocks a guest sees: wall and monotonic time in whole milliseconds, as the WIT promises
//! ("no clock-based timing beyond the deadline"). A 1 ns clock would let a style time host calls
//! (and through them other requests' work) to about 100 ns.

use std::time::{Duration, Instant, SystemTime};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The clocks' resolution.
pub const RESOLUTION: Duration = Duration::from_millis(1);

fn coarse(nanos: u128) -> u64 {
    let step = RESOLUTION.as_nanos();
    u64::try_from(nanos / step * step).unwrap_or(u64::MAX)
}

/// Unix time, truncated to [`RESOLUTION`].
pub struct CoarseWallClock;

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        RESOLUTION
    }

    fn now(&self) -> Duration {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Duration::from_nanos(coarse(since_epoch.as_nanos()))
    }
}

/// Nanoseconds since the call's sandbox was made, truncated to [`RESOLUTION`].
pub struct CoarseMonotonicClock(Instant);

impl CoarseMonotonicClock {
    /// A clock starting at zero now.
    pub fn new() -> Self {
        CoarseMonotonicClock(Instant::now())
    }
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        coarse(self.0.elapsed().as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_whole_milliseconds() {
        let monotonic = CoarseMonotonicClock::new();
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(monotonic.now() % 1_000_000, 0);
        assert!(monotonic.now() >= 3_000_000);
        assert_eq!(CoarseWallClock.now().subsec_nanos() % 1_000_000, 0);
        assert_eq!(monotonic.resolution(), 1_000_000);
        assert_eq!(CoarseWallClock.resolution(), RESOLUTION);
    }
}
