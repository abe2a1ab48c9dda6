//! MediaMTX's values as it reads them (YAML 1.1 booleans, Go durations, `:8554` listeners), and routes.toml's as
//! the converter writes them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

/// A MediaMTX mapping, read key by key; a missing key and an explicit `null` are alike.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub hash: Option<&'a Hash>,
    /// Falls back to these (a path's keys to `pathDefaults`).
    pub fallback: Option<&'a Hash>,
}

impl<'a> Section<'a> {
    pub fn of(hash: &'a Hash) -> Self {
        Section { hash: Some(hash), fallback: None }
    }

    pub fn get(&self, key: &str) -> Option<&'a Yaml> {
        let find = |h: Option<&'a Hash>| h.and_then(|h| h.get(&Yaml::String(key.into()))).filter(|v| !v.is_null());
        find(self.hash).or_else(|| find(self.fallback))
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(text).filter(|t| !t.is_empty())
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => boolean(v).ok_or_else(|| format!("`{key}`: expected yes or no, got {}", text(v))),
        }
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>, String> {
        self.text(key).map(|t| go_duration(&t).map_err(|e| format!("`{key}`: {e}"))).transpose()
    }
}

/// A scalar as MediaMTX would read it into a string; lists joined with commas.
pub fn text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        Yaml::Hash(_) => "{...}".into(),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => String::new(),
    }
}

/// MediaMTX reads YAML 1.1 booleans: yes/no as well as true/false.
pub fn boolean(v: &Yaml) -> Option<bool> {
    match v {
        Yaml::Boolean(b) => Some(*b),
        Yaml::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "y" => Some(true),
            "no" | "false" | "off" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a value says nothing: empty, no, zero, or an empty list.
pub fn is_empty(v: &Yaml) -> bool {
    match v {
        Yaml::Null | Yaml::BadValue => true,
        Yaml::String(s) => s.is_empty() || boolean(v) == Some(false),
        Yaml::Boolean(b) => !b,
        Yaml::Integer(i) => *i == 0,
        Yaml::Array(a) => a.is_empty(),
        Yaml::Hash(h) => h.is_empty(),
        _ => false,
    }
}

/// A Go duration (`10s`, `1h30m`, `500ms`) or MediaMTX's days (`1d`).
pub fn go_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err("an empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| format!("\"{t}\" is not a duration like \"10s\""))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(format!("\"{t}\" is not a duration like \"10s\"")),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e10 {
        return Err(format!("\"{t}\" is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A duration as routes.toml and the recorder write it: the largest whole unit (never days: the recorder reads
/// ms, s, m and h).
pub fn sluice_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// A TOML string, with `${` kept literal (routes.toml expands `${VAR}`; MediaMTX did not).
pub fn q(s: &str) -> String {
    toml::Value::String(s.replace("${", "$${")).to_string()
}

pub fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", "))
}

/// MediaMTX's `:8554` (every interface), `host:port` or `[v6]:port`, as a socket address.
pub fn listener(key: &str, addr: &str) -> Result<String, String> {
    let bad = || format!("`{key}`: \"{addr}\" is not an address like \":8554\" or \"127.0.0.1:8554\"");
    let (host, port) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "" => IpAddr::from([0, 0, 0, 0]),
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.parse().map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_listeners_read_as_mediamtx_reads_them() {
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(go_duration("0s"), Ok(Duration::ZERO));
        assert!(go_duration("soon").is_err() && go_duration("").is_err() && go_duration("1e400h").is_err());
        assert_eq!(sluice_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(sluice_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(listener("k", ":8554").as_deref(), Ok("0.0.0.0:8554"));
        assert_eq!(listener("k", "[::]:8554").as_deref(), Ok("[::]:8554"));
        assert_eq!(listener("k", "localhost:1935").as_deref(), Ok("127.0.0.1:1935"));
        assert!(listener("k", "8554").is_err() && listener("k", "host:99999").is_err());
    }
}
