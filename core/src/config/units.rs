//! Units in config files: durations (`"250ms"`, `"30s"`, `"5m"`, `"1h"`) and byte sizes
//! (`16384`, `"16KiB"`, `"4MiB"`, `"1GiB"`, or SI `"16KB"`). Parsed once at load time into
//! `Duration` and `usize`, so nothing downstream handles strings.

use serde::Deserialize;
use std::time::Duration;

/// A size as written: a plain integer (bytes) or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

/// Parses a duration such as `"1.5s"`, `"250ms"`, `"2m"`, `"1h"`, `"500us"`. A bare number is
/// refused: `timeout = 30` is ambiguous, so the unit is required.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let hint = "expected a duration such as \"250ms\", \"30s\", \"5m\" or \"1h\"";
    if number.is_empty() {
        return Err(format!("invalid duration `{text}`: {hint}"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: {hint}"))?;
    let scale = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        "" => return Err(format!("duration `{text}` needs a unit: {hint}")),
        _ => {
            return Err(format!(
                "unknown duration unit `{unit}` in `{text}`: {hint}"
            ))
        }
    };
    let secs = value * scale;
    // Ten years is far beyond any sane timeout and keeps `Instant + d` from overflowing.
    if !secs.is_finite() || secs > 315_360_000.0 {
        return Err(format!("duration `{text}` is too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: bytes as an integer, or a number with `B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB` (case-insensitive `k`/`m`/`g` prefixes accepted).
pub fn parse_size(raw: &RawSize) -> Result<usize, String> {
    let hint = "expected a size such as 16384, \"16KiB\" or \"4MiB\"";
    match raw {
        RawSize::Bytes(n) => {
            usize::try_from(*n).map_err(|_| format!("size {n} must not be negative"))
        }
        RawSize::Text(text) => {
            let t = text.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            if number.is_empty() {
                return Err(format!("invalid size `{text}`: {hint}"));
            }
            let value: f64 = number
                .parse()
                .map_err(|_| format!("invalid size `{text}`: {hint}"))?;
            let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1.0,
                "k" | "kb" => 1e3,
                "kib" => 1024.0,
                "m" | "mb" => 1e6,
                "mib" => 1024.0 * 1024.0,
                "g" | "gb" => 1e9,
                "gib" => 1024.0 * 1024.0 * 1024.0,
                _ => {
                    return Err(format!(
                        "unknown size unit `{}` in `{text}`: {hint}",
                        unit.trim()
                    ))
                }
            };
            let bytes = (value * scale).round();
            if !bytes.is_finite() || bytes > usize::MAX as f64 / 2.0 {
                return Err(format!("size `{text}` is too large"));
            }
            Ok(bytes as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "10",
            "10 parsecs",
            "1e3s",
            "-1s",
            "1..2s",
            "99999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
    }

    #[test]
    fn sizes() {
        let s = |t: &str| parse_size(&RawSize::Text(t.to_owned()));
        assert_eq!(parse_size(&RawSize::Bytes(16384)), Ok(16384));
        assert_eq!(s("16KiB"), Ok(16384));
        assert_eq!(s("16kb"), Ok(16000));
        assert_eq!(s("4MiB"), Ok(4 << 20));
        assert_eq!(s("1.5 KiB"), Ok(1536));
        assert_eq!(s("1GiB"), Ok(1 << 30));
        assert_eq!(s("12"), Ok(12));
        assert!(parse_size(&RawSize::Bytes(-1)).is_err());
        for bad in ["", "KiB", "4 furlongs", "1e9999GiB"] {
            assert!(s(bad).is_err(), "{bad}");
        }
    }
}
