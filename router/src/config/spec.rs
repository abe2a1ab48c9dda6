//! The raw shape of routes.toml, as serde reads it. Every key is listed; anything else is an error.
//! Values that later need a position in an error message are `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrors};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    #[serde(default)]
    pub server: Option<ServerSpec>,
    #[serde(default)]
    pub defaults: Option<DefaultsSpec>,
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<PluginSpec>>,
    /// `None` when the file has no `route` key at all; `route = []` says "no routes" on purpose (a reload that
    /// would end every running route is refused otherwise: it is more often a save caught half-written).
    #[serde(default, rename = "route")]
    pub routes: Option<Vec<Spanned<RouteSpec>>>,
    /// `[accounts]`: users, their cameras and sessions, in the router's database.
    pub accounts: Option<Spanned<AccountsSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSpec {
    pub registration: Option<Spanned<String>>,
    pub token_ttl: Option<Spanned<String>>,
    pub cameras: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub http: Option<Spanned<String>>,
    pub rtsp: Option<Spanned<String>>,
    pub rtmp: Option<Spanned<String>>,
    pub mediamtx_api: Option<Spanned<String>>,
    pub https: Option<Spanned<String>>,
    pub tls: Option<Spanned<TlsSpec>>,
    pub https_redirect: Option<Spanned<bool>>,
    pub webrtc: Option<WebrtcSpec>,
    pub data_dir: Option<Spanned<String>>,
    pub api_auth: Option<Spanned<String>>,
    pub limits: Option<ServerLimitsSpec>,
    pub hls: Option<HlsSpec>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}

/// `[server.hls]`: segment and part lengths, and segments kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsSpec {
    pub segment: Option<Spanned<String>>,
    pub part: Option<Spanned<String>>,
    pub segments: Option<Spanned<i64>>,
}

/// `[server] tls`: the certificate (PEM, the chain after it) and its private key, for `https`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimitsSpec {
    pub connections: Option<Spanned<i64>>,
    pub connections_per_ip: Option<Spanned<i64>>,
    pub webrtc_sessions_per_ip: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebrtcSpec {
    pub udp: Option<Spanned<String>>,
    #[serde(default)]
    pub public_ips: Vec<Spanned<String>>,
    #[serde(default)]
    pub ice_servers: Vec<IceServerSpec>,
    pub shards: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerSpec {
    pub url: Spanned<String>,
    pub username: Option<Spanned<String>>,
    pub credential: Option<Spanned<String>>,
}

/// Values every route inherits unless it sets its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    pub auth: Option<Spanned<String>>,
    pub on_demand: Option<bool>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_readers: Option<Spanned<i64>>,
    /// `rtmp_write_interval` is its name from before RTSP players were served in bunches too.
    #[serde(alias = "rtmp_write_interval")]
    pub write_interval: Option<Spanned<String>>,
    pub anonymous: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub source: Spanned<String>,
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
    #[serde(default)]
    pub grants: Option<GrantsSpec>,
    /// Signaling plugins: the HTTP path their clients connect to, e.g. "/socket.io/".
    pub mount: Option<Spanned<String>>,
    /// Signaling plugins: "socket.io" or "websocket" (by default the plugin's own).
    pub transport: Option<Spanned<String>>,
    /// Signaling plugins: an HTTP path prefix for the plugin's own REST endpoints, e.g. "/api/rooms".
    pub http: Option<Spanned<String>>,
    /// Signaling plugins: the auth plugin asked when a client connects.
    pub auth: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub memory: Option<Spanned<String>>,
    pub call_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSpec {
    pub storage: Option<StorageGrantSpec>,
    #[serde(default)]
    pub env: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageGrantSpec {
    pub dir: Spanned<String>,
    pub quota: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    #[serde(default)]
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    pub auth: Option<Spanned<String>>,
    pub on_demand: Option<Spanned<bool>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_readers: Option<Spanned<i64>>,
    pub rtsp_transport: Option<Spanned<String>>,
    pub rtsp_quirks: Option<Spanned<RtspQuirksSpec>>,
    pub publish_key: Option<Spanned<String>>,
    pub override_publisher: Option<Spanned<bool>>,
    /// `rtmp_write_interval` is its name from before RTSP players were served in bunches too.
    #[serde(alias = "rtmp_write_interval")]
    pub write_interval: Option<Spanned<String>>,
}

/// Workarounds for cameras that bend RTSP, each one of retina's named policies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspQuirksSpec {
    pub teardown: Option<Spanned<String>>,
    pub initial_timestamp: Option<Spanned<String>>,
    pub initial_seq: Option<Spanned<String>>,
    pub unknown_rtcp_ssrc: Option<Spanned<String>>,
    pub unassigned_channel_data: Option<Spanned<String>>,
    pub session_id: Option<Spanned<String>>,
}

/// Parses the text into specs; syntax errors, unknown keys, missing keys and wrong types end up here.
pub fn parse(text: &str, file: &str) -> Result<FileSpec, ConfigErrors> {
    toml::from_str(text).map_err(|e| ConfigErrors::single(from_toml_error(&e, text, file)))
}

fn from_toml_error(e: &toml::de::Error, text: &str, file: &str) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_string();
    let (mut message, mut help) = explain(&message);
    if message.starts_with("invalid type") {
        if let Some(key) = key_on_line(text, span.start) {
            message = format!("`{key}`: {message}");
        }
        help = type_help(&message).map(str::to_string);
    }
    ConfigError::at(file, text, span, message, help)
}

/// The `key` of a `key = value` line holding `offset`, for messages serde gives without one.
fn key_on_line(text: &str, offset: usize) -> Option<&str> {
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))).then_some(key)
}

fn type_help(message: &str) -> Option<&'static str> {
    let expected = message.rsplit("expected ").next()?;
    Some(match expected {
        e if e.starts_with("i64") || e.starts_with("u") || e.starts_with("an integer") => {
            "write a whole number, without quotes"
        }
        e if e.starts_with("a boolean") => "write true or false, without quotes",
        e if e.starts_with("a string") => "write the value in double quotes",
        e if e.starts_with("a sequence") => "write a list in brackets, e.g. [\"whep\"]",
        e if e.contains("map") || e.starts_with("struct") => {
            "write a table: [name] on its own line, or { key = value }"
        }
        _ => return None,
    })
}

/// Keys read under an alias for files written before they were renamed.
const OLD_NAMES: &[&str] = &["rtmp_write_interval"];

/// Rewrites serde's messages into ours, with a suggestion where one can be made.
fn explain(message: &str) -> (String, Option<String>) {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // Old names still read are not suggested.
        let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).filter(|k| !OLD_NAMES.contains(k)).collect();
        let help = match closest(key, &valid) {
            Some(best) => format!("did you mean `{best}`? Keys allowed here: {}", valid.join(", ")),
            None if valid.is_empty() => "remove it".to_string(),
            None => format!("keys allowed here: {}", valid.join(", ")),
        };
        return (format!("unknown key `{key}`"), Some(help));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return (format!("missing key `{key}`"), Some(format!("add `{key} = ...` to this table")));
    }
    (message.to_string(), None)
}

/// The candidate within edit distance 2 of `word`, if any.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_use_edit_distance() {
        assert_eq!(closest("form", &["name", "from", "to"]), Some("from"));
        assert_eq!(closest("zzzzzz", &["name", "from"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
