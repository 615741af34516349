//! Time as the cores see it: microseconds since an epoch the driver picks.
//!
//! Cores never read a clock; the tokio driver passes the wall clock, the simulator its own.

use std::{
    ops::{Add, AddAssign},
    time::Duration,
};

/// A point in time, in microseconds since the driver's epoch (the simulator starts at zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_subtracts_without_going_backwards() {
        let start = Instant::from_micros(10);
        let later = start + Duration::from_millis(2);
        assert_eq!(later.as_micros(), 2_010);
        assert_eq!(
            later.saturating_duration_since(start),
            Duration::from_micros(2_000)
        );
        assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
    }
}
