//! Time as the protocol core sees it: given by the caller with every input,
//! never read from a clock. `Mono` is a monotonic instant (a duration since
//! an epoch the driver chooses: its start, or zero in a simulation); `Time`
//! adds the wall clock in Unix milliseconds for what outlives the process
//! (address-book timestamps, ban expiries).

use std::ops::{Add, Sub};
use std::time::Duration;

/// A monotonic instant, as a duration since the driver's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(pub Duration);

impl Mono {
    pub const ZERO: Mono = Mono(Duration::ZERO);

    /// How long after `earlier` this is (zero if it is not later).
    pub fn saturating_duration_since(self, earlier: Mono) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Mono {
    type Output = Mono;

    fn add(self, duration: Duration) -> Mono {
        Mono(self.0.saturating_add(duration))
    }
}

impl Sub<Mono> for Mono {
    type Output = Duration;

    fn sub(self, earlier: Mono) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// The time given with an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time {
    pub mono: Mono,
    pub unix_ms: u64,
}

impl Time {
    pub fn new(mono: Mono, unix_ms: u64) -> Time {
        Time { mono, unix_ms }
    }

    /// The same moment plus `duration` on both clocks.
    pub fn after(self, duration: Duration) -> Time {
        Time {
            mono: self.mono + duration,
            unix_ms: self
                .unix_ms
                .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}
