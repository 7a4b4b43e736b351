//! How long to wait before retrying: exponential backoff with full jitter, bounded by the
//! upstream's `Retry-After` and by a per-request waiting budget.
//!
//! Also the two time formats upstreams use to say when to come back: `Retry-After` (delta
//! seconds or an HTTP date) and OpenAI's reset durations (`x-ratelimit-reset-requests: 6m0s`),
//! which are Go `time.Duration` strings.

use std::time::{Duration, UNIX_EPOCH};

use rand::Rng;

use crate::nanos;

/// When and how often a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// Ceiling of the first retry's delay; doubles with every retry.
    pub base: Duration,
    /// Largest ceiling the doubling reaches.
    pub max_delay: Duration,
    /// Total time one request may spend waiting between attempts.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1 = the first retry, i.e. the second attempt; 0
    /// counts as 1), given the upstream's `Retry-After` if any and the time already `spent`
    /// waiting for this request. `None`: do not retry, because the attempts are used up or the
    /// wait would not fit in what is left of the budget.
    ///
    /// Full jitter: uniform in `[0, min(max_delay, base · 2^(attempt-1))]`, raised to
    /// `retry_after` when the upstream asked for longer (even beyond `max_delay`).
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        spent: Duration,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let attempt = attempt.max(1);
        if attempt >= self.max_attempts || spent >= self.budget {
            return None;
        }
        let jitter = Duration::from_nanos(rng.random_range(0..=nanos(self.ceiling(attempt))));
        let wait = retry_after.map_or(jitter, |at_least| jitter.max(at_least));
        (wait <= self.budget - spent).then_some(wait)
    }

    /// The upper bound of the jittered delay before retry number `attempt`:
    /// `min(max_delay, base · 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.max(1) - 1).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max_delay)
    }
}

/// Parses a `Retry-After` value into how long to wait from `now_unix_secs`: delta seconds
/// (`120`, leniently also `1.5`), an HTTP date (a date in the past gives zero), or an OpenAI
/// reset duration (`6m0s`, `20ms`).
pub fn parse_retry_after(value: &str, now_unix_secs: i64) -> Option<Duration> {
    let value = value.trim();
    if let Some(d) = parse_seconds(value) {
        return Some(d);
    }
    if let Some(d) = parse_reset_duration(value) {
        return Some(d);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    Some(Duration::from_secs(
        at.saturating_sub(now_unix_secs).max(0).unsigned_abs(),
    ))
}

/// `123` or `1.5` (non-negative decimal seconds).
fn parse_seconds(s: &str) -> Option<Duration> {
    match leading_number(s)? {
        (int, frac, len) if len == s.len() => scale(int, frac, 1_000_000_000).and_then(to_duration),
        _ => None,
    }
}

/// Parses a Go duration string as OpenAI sends in `x-ratelimit-reset-*`: one or more
/// `<number><unit>` with unit `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`, the number possibly
/// fractional (`1h2m3.5s`, `6m0s`, `20ms`); also a bare `0`. No sign; nanosecond precision.
pub fn parse_reset_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (int, frac, len) = leading_number(rest)?;
        rest = &rest[len..];
        let (unit, ns) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        total = total.checked_add(scale(int, frac, *ns)?)?;
    }
    to_duration(total)
}

/// Formats a duration the way OpenAI's `x-ratelimit-reset-*` headers do (Go's
/// `Duration.String`): `0s`, `20ms`, `1.5ms`, `1s`, `59.5s`, `6m0s`, `1h2m3.5s`. Unlike Go,
/// everything below a second is in milliseconds (`0.5ms`, not `500µs`), so the value stays
/// ASCII.
pub fn format_reset_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let ns = d.subsec_nanos();
        return format!("{}{}ms", ns / 1_000_000, fraction(ns % 1_000_000, 6));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}{}s", fraction(d.subsec_nanos(), 9)));
    out
}

/// `.digits` of `value / 10^width` without trailing zeros; empty for zero.
fn fraction(value: u32, width: usize) -> String {
    if value == 0 {
        return String::new();
    }
    let digits = format!("{value:0width$}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// The number `123.456` (or `123`, `123.`, `.456`) at the start of `s`: its integer digits,
/// its fraction digits and its length in bytes. `None` unless it has at least one digit.
fn leading_number(s: &str) -> Option<(&str, &str, usize)> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = s.split_at(digits(s));
    let (frac, len) = match rest.strip_prefix('.') {
        Some(after) => (&after[..digits(after)], int.len() + 1 + digits(after)),
        None => ("", int.len()),
    };
    (!int.is_empty() || !frac.is_empty()).then_some((int, frac, len))
}

/// `int.frac` units of `unit_ns` nanoseconds, in nanoseconds (truncated).
fn scale(int: &str, frac: &str, unit_ns: u128) -> Option<u128> {
    let whole = if int.is_empty() {
        0
    } else {
        int.parse::<u128>().ok()?.checked_mul(unit_ns)?
    };
    // Digits past the 18th are below a nanosecond for any unit up to hours.
    let frac = &frac[..frac.len().min(18)];
    let part = if frac.is_empty() {
        0
    } else {
        frac.parse::<u128>().ok()? * unit_ns / 10u128.pow(frac.len() as u32)
    };
    whole.checked_add(part)
}

fn to_duration(total_ns: u128) -> Option<Duration> {
    let secs = u64::try_from(total_ns / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const DRAWS: usize = 10_000;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn draws(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Vec<Duration> {
        let mut rng = rng();
        (0..DRAWS)
            .map(|_| {
                policy
                    .delay(attempt, retry_after, Duration::ZERO, &mut rng)
                    .unwrap()
            })
            .collect()
    }

    fn mean_ms(ds: &[Duration]) -> f64 {
        ds.iter().map(|d| d.as_secs_f64() * 1000.0).sum::<f64>() / ds.len() as f64
    }

    fn unbounded() -> RetryPolicy {
        RetryPolicy {
            max_attempts: u32::MAX,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn defaults() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.base, ms(200));
        assert_eq!(p.max_delay, Duration::from_secs(10));
        assert_eq!(p.budget, Duration::from_secs(30));
    }

    #[test]
    fn attempts_run_out() {
        let p = RetryPolicy::default();
        let mut rng = rng();
        assert!(p.delay(1, None, Duration::ZERO, &mut rng).is_some());
        assert!(p.delay(2, None, Duration::ZERO, &mut rng).is_some());
        assert!(
            p.delay(3, None, Duration::ZERO, &mut rng).is_none(),
            "3 attempts made"
        );
        assert!(
            p.delay(0, None, Duration::ZERO, &mut rng).is_some(),
            "0 counts as 1"
        );
        let once = RetryPolicy {
            max_attempts: 1,
            ..p
        };
        assert!(once.delay(1, None, Duration::ZERO, &mut rng).is_none());
        let never = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert!(never.delay(1, None, Duration::ZERO, &mut rng).is_none());
    }

    #[test]
    fn ceiling_doubles_up_to_max_delay() {
        let p = unbounded();
        assert_eq!(p.ceiling(0), ms(200));
        assert_eq!(p.ceiling(1), ms(200));
        assert_eq!(p.ceiling(2), ms(400));
        assert_eq!(p.ceiling(3), ms(800));
        assert_eq!(p.ceiling(6), ms(6400));
        assert_eq!(p.ceiling(7), Duration::from_secs(10));
        assert_eq!(p.ceiling(40), Duration::from_secs(10), "no overflow");
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn full_jitter_is_uniform_over_the_ceiling() {
        let ds = draws(&unbounded(), 1, None);
        assert!(ds.iter().all(|d| *d <= ms(200)));
        // Uniform on [0, 200 ms]: mean 100 ms, a quarter in each 50 ms quarter.
        let mean = mean_ms(&ds);
        assert!((mean - 100.0).abs() < 3.0, "mean {mean}");
        for q in 0..4u64 {
            let share = ds
                .iter()
                .filter(|d| **d >= ms(50 * q) && **d < ms(50 * (q + 1)))
                .count() as f64
                / DRAWS as f64;
            assert!((share - 0.25).abs() < 0.03, "quarter {q}: {share}");
        }
        assert!(
            ds.iter().any(|d| *d < ms(5)),
            "full jitter reaches down to zero"
        );
    }

    #[test]
    fn later_retries_wait_longer_on_average() {
        let p = unbounded();
        let third = draws(&p, 3, None);
        assert!(third.iter().all(|d| *d <= ms(800)));
        assert!((mean_ms(&third) - 400.0).abs() < 12.0);
        let capped = draws(&p, 12, None);
        assert!(capped.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!((mean_ms(&capped) - 5000.0).abs() < 150.0);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = unbounded();
        // Above the jitter ceiling: exactly what the upstream asked, even past max_delay.
        let ds = draws(&p, 1, Some(Duration::from_secs(2)));
        assert!(ds.iter().all(|d| *d == Duration::from_secs(2)));
        let long = Duration::from_secs(15);
        assert_eq!(draws(&p, 1, Some(long))[0], long);
        // Inside the jitter range: never below it, sometimes above.
        let ds = draws(&p, 12, Some(Duration::from_secs(2)));
        assert!(ds.iter().all(|d| *d >= Duration::from_secs(2)));
        let above = ds.iter().filter(|d| **d > Duration::from_secs(2)).count() as f64;
        assert!((above / DRAWS as f64 - 0.8).abs() < 0.03);
    }

    #[test]
    fn the_budget_bounds_the_wait() {
        let p = unbounded();
        let mut rng = rng();
        let s = Duration::from_secs;
        // Retry-After beyond what is left: give up now rather than wait in vain.
        assert_eq!(p.delay(1, Some(s(5)), s(26), &mut rng), None);
        assert_eq!(p.delay(1, Some(s(5)), s(25), &mut rng), Some(s(5)));
        assert_eq!(p.delay(1, None, s(30), &mut rng), None, "budget spent");
        assert_eq!(p.delay(1, None, s(31), &mut rng), None);
        // 50 ms left, jitter up to 200 ms: about a quarter of the draws fit.
        let spent = s(30) - ms(50);
        let fit = (0..DRAWS)
            .filter_map(|_| p.delay(1, None, spent, &mut rng))
            .inspect(|d| assert!(*d <= ms(50)))
            .count() as f64;
        assert!((fit / DRAWS as f64 - 0.25).abs() < 0.03, "{fit}");
    }

    #[test]
    fn formats_like_openai() {
        let cases = [
            (Duration::ZERO, "0s"),
            (ms(20), "20ms"),
            (ms(999), "999ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_micros(500), "0.5ms"),
            (Duration::from_nanos(1), "0.000001ms"),
            (Duration::from_secs(1), "1s"),
            (ms(8640), "8.64s"),
            (ms(59_500), "59.5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(360), "6m0s"),
            (ms(361_250), "6m1.25s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (ms(3_723_500), "1h2m3.5s"),
            (Duration::new(90_000, 1), "25h0m0.000000001s"),
        ];
        for (d, s) in cases {
            assert_eq!(format_reset_duration(d), s, "{d:?}");
        }
    }

    #[test]
    fn parses_reset_durations() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1s", Duration::from_secs(1)),
            ("20ms", ms(20)),
            ("6m0s", Duration::from_secs(360)),
            ("1h2m3.5s", ms(3_723_500)),
            ("59.5s", ms(59_500)),
            ("8.64s", ms(8640)),
            ("1.5ms", Duration::from_micros(1500)),
            ("0.5ms", Duration::from_micros(500)),
            ("500us", Duration::from_micros(500)),
            ("500µs", Duration::from_micros(500)),
            ("7ns", Duration::from_nanos(7)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("2h", Duration::from_secs(7200)),
            ("1m1ms", ms(60_001)),
            ("0.1234567891234567891s", Duration::from_nanos(123_456_789)),
        ];
        for (s, d) in cases {
            assert_eq!(parse_reset_duration(s), Some(d), "{s}");
        }
        for bad in [
            "",
            "s",
            "1",
            "1x",
            "-1s",
            "+1s",
            "1 s",
            " 1s",
            "1s ",
            ".s",
            "1..5s",
            "m5",
            "1sm",
            "99999999999999999999999h",
        ] {
            assert_eq!(parse_reset_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        let mut rng = rng();
        for _ in 0..DRAWS {
            let scale =
                [1_000u64, 1_000_000, 1_000_000_000, 10_000_000_000_000][rng.random_range(0..4)];
            let d = Duration::from_nanos(rng.random_range(0..scale));
            let s = format_reset_duration(d);
            assert_eq!(parse_reset_duration(&s), Some(d), "{s}");
            assert!(s.is_ascii());
        }
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5", 0), Some(ms(1500)));
        for bad in ["", "-5", "1e3", "inf", "NaN", "1.2.3", "abc", "5 s"] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_date() {
        // 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT (RFC 9110's example).
        let at = 1_445_412_480;
        let imf = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            parse_retry_after(imf, at - 90),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after(imf, at), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(imf, at + 3600),
            Some(Duration::ZERO),
            "past"
        );
        // The obsolete formats HTTP still accepts.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", at - 1),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:00 2015", at - 2),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_retry_after("Wed, 32 Oct 2015 07:28:00 GMT", 0), None);
    }

    #[test]
    fn retry_after_reset_duration() {
        assert_eq!(parse_retry_after("6m0s", 0), Some(Duration::from_secs(360)));
        assert_eq!(parse_retry_after("20ms", 0), Some(ms(20)));
    }
}
