//! Durations as people and tools write them: `90`, `90s`, `15m`, `4h`,
//! `2d`, `1w`, and Go's `time.Duration` strings such as `3h59m57.4s`,
//! which CrowdSec passes to its bouncers.

use std::time::Duration;

/// Parses `text`; the error says what is wrong with it. Zero is refused:
/// a ban for no time is a mistake, not a request.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return nonzero(Duration::from_secs(secs));
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{rest}` has no unit (ns, us, ms, s, m, h, d or w)"))?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}`: `{number}` is not a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        total += value
            * unit_secs(unit).ok_or_else(|| {
                format!("`{text}`: unknown unit `{unit}` (use ns, us, ms, s, m, h, d or w)")
            })?;
        rest = next;
    }
    if !total.is_finite() || total > MAX_SECS {
        return Err(format!("`{text}` is longer than ten years"));
    }
    nonzero(Duration::from_secs_f64(total))
}

/// Seconds in a day.
pub const DAY_SECS: u64 = 86_400;

/// Ten years: longer is a typo, and a deny entry without `--for` lasts
/// for good anyway.
const MAX_SECS: f64 = 10.0 * 365.0 * 86_400.0;

fn unit_secs(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return None,
    })
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d < Duration::from_secs(1) {
        Err("is shorter than a second".to_owned())
    } else {
        Ok(d)
    }
}

/// Whole seconds as the shortest text that reads at a glance: `45s`,
/// `12m`, `3h20m`, `2d4h`.
#[must_use]
pub fn short(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / DAY_SECS,
        secs / 3_600 % 24,
        secs / 60 % 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> f64 {
        parse(text).unwrap().as_secs_f64()
    }

    #[test]
    fn plain_seconds_units_and_gos_format_parse() {
        assert!((secs("90") - 90.0).abs() < 1e-9);
        assert!((secs("90s") - 90.0).abs() < 1e-9);
        assert!((secs("15m") - 900.0).abs() < 1e-9);
        assert!((secs("2d") - 172_800.0).abs() < 1e-9);
        assert!((secs("1w") - 604_800.0).abs() < 1e-9);
        assert!((secs("1h30m") - 5_400.0).abs() < 1e-9);
        // What CrowdSec passes for a 4 h decision a moment after it was made.
        assert!((secs("3h59m57.405164424s") - 14_397.405_164_424).abs() < 1e-6);
        assert!((secs("1500ms") - 1.5).abs() < 1e-9);
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("4").is_ok());
        assert!(parse("0").unwrap_err().contains("shorter than a second"));
        assert!(
            parse("300ms")
                .unwrap_err()
                .contains("shorter than a second")
        );
        assert!(parse("4x").unwrap_err().contains("unknown unit `x`"));
        assert!(parse("h").unwrap_err().contains("not a number"));
        assert!(parse("12.5").unwrap_err().contains("no unit"));
        assert!(parse("-5m").unwrap_err().contains("not a number"));
        assert!(parse("99999w").unwrap_err().contains("ten years"));
    }

    #[test]
    fn short_reads_at_a_glance() {
        assert_eq!(short(45), "45s");
        assert_eq!(short(720), "12m");
        assert_eq!(short(7_200), "2h");
        assert_eq!(short(12_000), "3h20m");
        assert_eq!(short(172_800), "2d");
        assert_eq!(short(187_200), "2d4h");
    }
}
