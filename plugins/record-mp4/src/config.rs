//! The plugin's configuration: the raw serde [`ConfigSpec`] from routes.toml, validated into [`Config`]
//! (durations parsed, the file name template checked), and the template's expansion into a segment's path.
//!
//! Invariants of a [`Config`]: `part_duration >= 100 ms`, `segment_duration >= part_duration`, and the template
//! only holds known placeholders. Expanded paths are relative, `/`-separated, without empty, `.` or `..`
//! components, and end in `.mp4`.

use std::time::Duration;

use serde::Deserialize;

/// `[plugins.NAME] config` as written in routes.toml. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// How much media one fragment (moof + mdat) holds, e.g. "1s": a crash loses at most about this much.
    pub part_duration: Option<String>,
    /// How long a file grows before the next keyframe starts a new one, e.g. "10m".
    pub segment_duration: Option<String>,
    /// Where segments go inside the granted directory, without ".mp4": `%route`, `%Y %m %d %H %M %S` (UTC time of
    /// the segment's first sample), `%%`.
    pub path: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub part_duration: Duration,
    pub segment_duration: Duration,
    pub path: PathTemplate,
}

pub const DEFAULT_PART: &str = "1s";
pub const DEFAULT_SEGMENT: &str = "10m";
pub const DEFAULT_PATH: &str = "%route/%Y-%m-%d_%H-%M-%S";

/// Shorter parts would make the moof overhead and the number of appends dominate; 100 ms is already below what
/// any player needs to resume a torn file.
const MIN_PART: Duration = Duration::from_millis(100);

impl Default for Config {
    fn default() -> Self {
        Config::from_spec(ConfigSpec::default()).unwrap_or_else(|_| Config {
            part_duration: Duration::from_secs(1),
            segment_duration: Duration::from_secs(600),
            path: PathTemplate(vec![Piece::Route]),
        })
    }
}

impl Config {
    pub fn from_spec(spec: ConfigSpec) -> Result<Config, String> {
        let part = spec.part_duration.as_deref().unwrap_or(DEFAULT_PART);
        let part_duration = parse_duration(part).map_err(|e| format!("invalid config: `part_duration`: {e}"))?;
        if part_duration < MIN_PART {
            return Err(format!(
                "invalid config: `part_duration`: \"{part}\" is shorter than the minimum of 100ms; write e.g. \"500ms\" or \"1s\""
            ));
        }
        let segment = spec.segment_duration.as_deref().unwrap_or(DEFAULT_SEGMENT);
        let segment_duration =
            parse_duration(segment).map_err(|e| format!("invalid config: `segment_duration`: {e}"))?;
        if segment_duration < part_duration {
            return Err(format!(
                "invalid config: `segment_duration` (\"{segment}\") is shorter than `part_duration` (\"{part}\"); a segment holds whole parts"
            ));
        }
        let path = PathTemplate::parse(spec.path.as_deref().unwrap_or(DEFAULT_PATH))
            .map_err(|e| format!("invalid config: `path`: {e}"))?;
        Ok(Config { part_duration, segment_duration, path })
    }
}

/// Parses "500ms", "1s", "10m", "1h": a positive whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = "write a whole number and a unit: \"500ms\", \"1s\", \"10m\" or \"1h\"";
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration; {hint}"))?;
    let ms_per_unit = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("\"{text}\" has no known unit; {hint}")),
    };
    if n == 0 {
        return Err(format!("\"{text}\" is zero; {hint}"));
    }
    let ms = n.checked_mul(ms_per_unit).ok_or_else(|| format!("\"{text}\" is too long"))?;
    Ok(Duration::from_millis(ms))
}

/// A parsed `path` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Route,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        let known = "known placeholders are %route, %Y, %m, %d, %H, %M, %S and %% for a literal %";
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (piece, len) = if after.starts_with("route") {
                (Piece::Route, 5)
            } else {
                match after.chars().next() {
                    Some('%') => {
                        text.push('%');
                        rest = &after[1..];
                        continue;
                    }
                    Some('Y') => (Piece::Year, 1),
                    Some('m') => (Piece::Month, 1),
                    Some('d') => (Piece::Day, 1),
                    Some('H') => (Piece::Hour, 1),
                    Some('M') => (Piece::Minute, 1),
                    Some('S') => (Piece::Second, 1),
                    Some(c) => return Err(format!("unknown placeholder %{c} in \"{template}\"; {known}")),
                    None => return Err(format!("\"{template}\" ends with a lone %; {known}")),
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &after[len..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let template = PathTemplate(pieces);
        // A template that is wrong for every route and time (absolute, `..`) is reported at load, not at the first
        // segment: expand it once with a plain route name.
        template.expand("route", 0).map_err(|e| format!("{e} (template \"{}\")", template_text(&template)))?;
        Ok(template)
    }

    /// The segment's file name, ".mp4" appended, for a segment whose first sample was captured at `wallclock_ms`.
    pub fn expand(&self, route: &str, wallclock_ms: u64) -> Result<String, String> {
        self.expand_with_suffix(route, wallclock_ms, "")
    }

    /// As [`expand`](Self::expand), with `suffix` (e.g. "-2") before ".mp4": the name taken, the next one tried.
    pub fn expand_with_suffix(&self, route: &str, wallclock_ms: u64, suffix: &str) -> Result<String, String> {
        let t = CivilTime::from_unix_ms(wallclock_ms);
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(s) => out.push_str(s),
                Piece::Route => out.push_str(route),
                Piece::Year => out.push_str(&format!("{:04}", t.year)),
                Piece::Month => out.push_str(&format!("{:02}", t.month)),
                Piece::Day => out.push_str(&format!("{:02}", t.day)),
                Piece::Hour => out.push_str(&format!("{:02}", t.hour)),
                Piece::Minute => out.push_str(&format!("{:02}", t.minute)),
                Piece::Second => out.push_str(&format!("{:02}", t.second)),
            }
        }
        if out.is_empty() || out.ends_with('/') {
            return Err(format!("\"{out}\" has an empty file name"));
        }
        out.push_str(suffix);
        out.push_str(".mp4");
        check_relative(&out)?;
        Ok(out)
    }
}

fn template_text(t: &PathTemplate) -> String {
    t.0.iter()
        .map(|p| match p {
            Piece::Text(s) => s.replace('%', "%%"),
            Piece::Route => "%route".into(),
            Piece::Year => "%Y".into(),
            Piece::Month => "%m".into(),
            Piece::Day => "%d".into(),
            Piece::Hour => "%H".into(),
            Piece::Minute => "%M".into(),
            Piece::Second => "%S".into(),
        })
        .collect()
}

/// The host refuses paths leaving the granted directory anyway; checking here gives the admin a message naming the
/// template instead of a storage error at the first segment.
fn check_relative(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.contains('\\') {
        return Err(format!("\"{path}\" must be a relative path with `/` separators"));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(format!("\"{path}\" has an empty path component")),
            "." | ".." => return Err(format!("\"{path}\" must not contain `.` or `..` components")),
            _ => {}
        }
    }
    Ok(())
}

/// A UTC calendar time, second resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl CivilTime {
    pub fn from_unix_ms(ms: u64) -> CivilTime {
        let secs = ms / 1000;
        let days = (secs / 86_400) as i64;
        let rem = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        CivilTime { year, month, day, hour: rem / 3600, minute: rem % 3600 / 60, second: rem % 60 }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar: Howard Hinnant's
/// `civil_from_days`, which counts in 400-year eras starting on March 1st so that the leap day is the era-year's
/// last day.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(part: Option<&str>, segment: Option<&str>, path: Option<&str>) -> ConfigSpec {
        ConfigSpec {
            part_duration: part.map(str::to_string),
            segment_duration: segment.map(str::to_string),
            path: path.map(str::to_string),
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_spec(ConfigSpec::default()).expect("defaults");
        assert_eq!(c.part_duration, Duration::from_secs(1));
        assert_eq!(c.segment_duration, Duration::from_secs(600));
        assert_eq!(c.path.expand("cam", 0).expect("expand"), "cam/1970-01-01_00-00-00.mp4");
        assert_eq!(Config::default(), c);
    }

    #[test]
    fn config_json_rejects_unknown_keys() {
        let e = sluice_sdk::config::parse::<ConfigSpec>(r#"{"part": "1s"}"#).expect_err("unknown");
        assert!(e.starts_with("invalid config: unknown field `part`"), "{e}");
        let s = sluice_sdk::config::parse::<ConfigSpec>(r#"{"part_duration": "500ms", "path": "x/%route"}"#)
            .expect("parse");
        let c = Config::from_spec(s).expect("valid");
        assert_eq!(c.part_duration, Duration::from_millis(500));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 2 s "), Ok(Duration::from_secs(2)));
        for bad in ["", "s", "0s", "1", "1d", "-1s", "1.5s", "ten", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration("0s"),
            Err("\"0s\" is zero; write a whole number and a unit: \"500ms\", \"1s\", \"10m\" or \"1h\"".to_string())
        );
    }

    #[test]
    fn limits_between_durations() {
        let e = Config::from_spec(spec(Some("50ms"), None, None)).expect_err("short part");
        assert_eq!(
            e,
            "invalid config: `part_duration`: \"50ms\" is shorter than the minimum of 100ms; write e.g. \"500ms\" or \"1s\""
        );
        let e = Config::from_spec(spec(Some("2s"), Some("1s"), None)).expect_err("segment < part");
        assert_eq!(
            e,
            "invalid config: `segment_duration` (\"1s\") is shorter than `part_duration` (\"2s\"); a segment holds whole parts"
        );
        let e = Config::from_spec(spec(None, Some("10 minutes"), None)).expect_err("garbage");
        assert!(e.starts_with("invalid config: `segment_duration`: \"10 minutes\" has no known unit"), "{e}");
        assert!(Config::from_spec(spec(Some("1s"), Some("1s"), None)).is_ok());
    }

    #[test]
    fn templates() {
        let t = PathTemplate::parse("rec/%route/%Y/%m/%d/%H%M%S-100%%").expect("parse");
        // 2026-11-21 10:00:00 UTC.
        assert_eq!(
            t.expand("cams/front", 1_795_255_200_000).expect("expand"),
            "rec/cams/front/2026/11/21/100000-100%.mp4"
        );
        assert_eq!(
            t.expand_with_suffix("a", 1_795_255_200_999, "-2").expect("suffix"),
            "rec/a/2026/11/21/100000-100%-2.mp4"
        );
        for (bad, why) in [
            ("%x", "unknown placeholder %x"),
            ("a%", "ends with a lone %"),
            ("/abs/%route", "must be a relative path"),
            ("../%route", "`.` or `..`"),
            ("a//b", "empty path component"),
            ("%route/", "empty file name"),
        ] {
            let e = PathTemplate::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        // A route name cannot smuggle in `..`: the expansion is checked too.
        let t = PathTemplate::parse("%route/x").expect("parse");
        assert!(t.expand("..", 0).is_err());
        assert!(t.expand("", 0).is_err());
    }

    #[test]
    fn civil_dates() {
        let at = |ms| {
            let t = CivilTime::from_unix_ms(ms);
            (t.year, t.month, t.day, t.hour, t.minute, t.second)
        };
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(86_399_999), (1970, 1, 1, 23, 59, 59));
        assert_eq!(at(1_795_255_200_000), (2026, 11, 21, 10, 0, 0));
        // Leap years: 2024 (divisible by 4), 2000 (by 400); 2100 is not one.
        assert_eq!(at(1_709_164_800_000), (2024, 2, 29, 0, 0, 0));
        assert_eq!(at(1_709_251_200_000), (2024, 3, 1, 0, 0, 0));
        assert_eq!(at(951_782_400_000), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(4_107_456_000_000), (2100, 2, 28, 0, 0, 0));
        assert_eq!(at(4_107_542_400_000), (2100, 3, 1, 0, 0, 0));
        assert_eq!(at(1_735_689_599_000), (2024, 12, 31, 23, 59, 59));
        assert_eq!(at(1_735_689_600_000), (2025, 1, 1, 0, 0, 0));
        // Every day from 1970 to 2400 follows the previous one.
        let mut prev = civil_from_days(0);
        for d in 1..157_000 {
            let cur = civil_from_days(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(cur == next_day || cur == next_month || cur == next_year, "{prev:?} -> {cur:?}");
            assert!(cur.2 <= 31);
            prev = cur;
        }
    }
}
