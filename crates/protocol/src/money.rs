//! Money: kept as an integer count of nano-dollars, so sums are exact and a 10-token
//! embedding is not rounded to zero; on the wire it is a decimal number of US dollars.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// Nano-dollars per dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// An amount of US dollars in nano-dollars (1e-9 USD). Serializes as a decimal USD number
/// (`0.0000621`), never with float noise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Rounds a dollar amount to the nearest nano-dollar; NaN and negative infinity give 0,
    /// positive infinity saturates.
    pub fn from_usd(usd: f64) -> Nanos {
        let n = (usd * NANOS_PER_USD as f64).round();
        if n.is_nan() {
            Nanos(0)
        } else {
            // `as` saturates at the i64 bounds.
            Nanos(n as i64)
        }
    }

    /// The amount in dollars, for display and wire fields.
    pub fn usd(self) -> f64 {
        // Dividing the exact integer gives the closest double to the decimal value, so it
        // prints without noise (62_100 nanos → 0.0000621).
        self.0 as f64 / NANOS_PER_USD as f64
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        self.saturating_add(rhs)
    }
}

impl AddAssign for Nanos {
    fn add_assign(&mut self, rhs: Nanos) {
        *self = *self + rhs;
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        self.saturating_sub(rhs)
    }
}

impl SubAssign for Nanos {
    fn sub_assign(&mut self, rhs: Nanos) {
        *self = *self - rhs;
    }
}

impl Sum for Nanos {
    fn sum<I: Iterator<Item = Nanos>>(iter: I) -> Nanos {
        iter.fold(Nanos::ZERO, Add::add)
    }
}

/// Fixed-point decimal dollars with trailing zeros trimmed: `0.0000621`, `12`, `-0.5`.
impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u64;
        let frac = abs % NANOS_PER_USD as u64;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl Serialize for Nanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.usd())
    }
}

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Nanos, D::Error> {
        let usd = f64::deserialize(d)?;
        if !usd.is_finite() {
            return Err(serde::de::Error::custom(
                "a dollar amount must be a finite number",
            ));
        }
        Ok(Nanos::from_usd(usd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_print_without_noise() {
        let parts = [Nanos::from_usd(0.0000207); 3];
        let total: Nanos = parts.iter().copied().sum();
        assert_eq!(total, Nanos(62_100));
        assert_eq!(serde_json::to_string(&total).unwrap(), "0.0000621");
        assert_eq!(total.to_string(), "0.0000621");
        assert_eq!(Nanos(12 * NANOS_PER_USD).to_string(), "12");
        assert_eq!(Nanos(-500_000_000).to_string(), "-0.5");
    }

    #[test]
    fn small_costs_are_not_rounded_to_zero() {
        // 10 tokens at $0.02 per million tokens.
        assert_eq!(Nanos::from_usd(10.0 * 0.02 / 1e6), Nanos(200));
    }

    #[test]
    fn round_trips_through_json() {
        for n in [0, 1, 62_100, 1_234_567_890, -7] {
            let json = serde_json::to_string(&Nanos(n)).unwrap();
            assert_eq!(
                serde_json::from_str::<Nanos>(&json).unwrap(),
                Nanos(n),
                "{json}"
            );
        }
        assert!(serde_json::from_str::<Nanos>("\"1\"").is_err());
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        assert_eq!(Nanos::from_usd(f64::NAN), Nanos(0));
        assert_eq!(Nanos::from_usd(f64::INFINITY), Nanos(i64::MAX));
        assert_eq!(Nanos(i64::MAX) + Nanos(1), Nanos(i64::MAX));
    }
}
