//! Human-written sizes ("16MiB", "50GiB") and durations ("50ms", "10s", "2m").

use std::time::Duration;

/// Why a size or duration was not understood; the message quotes what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("\"{0}\" is not a {1}")]
    NotANumber(String, &'static str),
    #[error("unknown {kind} unit \"{unit}\" in \"{value}\"")]
    UnknownUnit { kind: &'static str, unit: String, value: String },
    #[error("\"{0}\" needs a unit (ms, s, m, h or d)")]
    MissingUnit(String),
    #[error("\"{0}\" is too large")]
    TooLarge(String),
    #[error("\"{0}\" is out of range")]
    OutOfRange(String),
}

/// Parses a byte size: a number with an optional unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| UnitError::NotANumber(s.to_string(), "size"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(UnitError::UnknownUnit { kind: "size", unit: other.to_string(), value: s.to_string() });
        }
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(UnitError::TooLarge(s.to_string()));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with a unit ms, s, m, h or d.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| UnitError::NotANumber(s.to_string(), "duration"))?;
    let secs = match unit.trim() {
        "ms" => num / 1000.0,
        "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        "d" => num * 86_400.0,
        "" => return Err(UnitError::MissingUnit(s.to_string())),
        other => {
            return Err(UnitError::UnknownUnit { kind: "duration", unit: other.to_string(), value: s.to_string() });
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| UnitError::OutOfRange(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1.5 KB"), Ok(1500));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(
            parse_size("5 parsecs").map_err(|e| e.to_string()),
            Err("unknown size unit \"parsecs\" in \"5 parsecs\"".into())
        );
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("10").map_err(|e| e.to_string()),
            Err("\"10\" needs a unit (ms, s, m, h or d)".into())
        );
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
    }
}
