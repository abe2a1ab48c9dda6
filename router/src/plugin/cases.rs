//! `sluice plugin test`: runs a plugin under the real host against a table of cases and reports each decision
//! with its time and memory, so authors see what the router will do before deploying.
//!
//! The cases file: the plugin's `config`, `limits` and `grants` exactly as in routes.toml (validated by the same
//! code), then, for an auth plugin, one `[[case]]` per request: `action`, `route`, and optionally `name`,
//! `protocol`, `target`, `remote_ip`, `query` (a table), credentials (`token`, `user` + `password`, or
//! `stream_key`) and `expect` ("allow", "deny" or "challenge"); for a signaling plugin, a script of `[[step]]`s
//! (see `signal_cases.rs`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use serde::Deserialize;

use super::auth::{Action, BasicCredentials, Credentials, Decision, Protocol, Request};
use super::{PluginHost, Plugins};
use crate::config;
use crate::config::model::PluginWorld;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    limits: Option<toml::Table>,
    #[serde(default)]
    grants: Option<toml::Table>,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
    #[serde(rename = "step", default)]
    steps: Vec<super::signal_cases::Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    action: String,
    #[serde(default)]
    route: String,
    protocol: Option<String>,
    target: Option<String>,
    remote_ip: Option<String>,
    #[serde(default)]
    query: toml::Table,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    stream_key: Option<String>,
    expect: Option<String>,
}

#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub all_passed: bool,
}

pub fn run(plugin: &Path, world: &str, cases_path: &Path) -> Result<Report, String> {
    let wanted = match world {
        "auth" => PluginWorld::Auth,
        "signaling" => PluginWorld::Signaling,
        _ => return Err(format!("--world {world}: auth and signaling plugins can be tested (sinks: not yet)")),
    };
    let bytes = std::fs::read(plugin).map_err(|e| format!("{}: {e}", plugin.display()))?;
    super::engine::binary_kind(&bytes).map_err(|e| format!("{}: {e}", plugin.display()))?;
    let text = std::fs::read_to_string(cases_path).map_err(|e| format!("{}: {e}", cases_path.display()))?;
    let file: CasesFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", cases_path.display()))?;
    let plugin_path = std::path::absolute(plugin).map_err(|e| format!("{}: {e}", plugin.display()))?;
    let host = PluginHost::shared(None).map_err(|e| e.to_string())?;
    // The world first: loading a sink as an auth plugin would fail on what sinks need (a storage grant) instead
    // of saying it is the wrong kind.
    let world = host.world_of(&bytes).map_err(|e| format!("{}: {e}", plugin.display()))?;
    if world != wanted {
        return Err(format!(
            "{}: this is {}, not --world {}",
            plugin.display(),
            world.with_article(),
            world_name(wanted)
        ));
    }

    // The plugin's settings go through routes.toml's own validation.
    let mut table = toml::Table::new();
    table.insert("source".into(), toml::Value::String(plugin_path.display().to_string()));
    for (key, value) in [("config", file.config), ("limits", file.limits), ("grants", file.grants)] {
        if let Some(v) = value {
            table.insert(key.into(), toml::Value::Table(v));
        }
    }
    let mut plugins = toml::Table::new();
    plugins.insert("test".into(), toml::Value::Table(table));
    let mut root = toml::Table::new();
    root.insert("plugins".into(), toml::Value::Table(plugins));
    let routes_text = toml::to_string(&root).map_err(|e| e.to_string())?;
    let label = cases_path.display().to_string();
    // Positions would point into the text made above, not the cases file: name the file, keep the message.
    let parsed = config::parse(&routes_text, &label, &|name| std::env::var(name).ok()).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| {
                let help = e.help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default();
                format!("{label}: {}{help}", e.message.replace("plugin \"test\": ", ""))
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;

    let load_started = Instant::now();
    let (loaded, _) = Plugins::load(&host, &parsed.plugins, &Plugins::default())
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let load_time = load_started.elapsed();
    let plugin = loaded.get("test").ok_or("the plugin did not load")?;

    let mut out = String::new();
    let limits = &plugin.config.limits;
    let _ = writeln!(
        out,
        "{}: loaded in {:.1} ms (memory limit {} MiB, call timeout {} ms)",
        plugin.origin.source,
        load_time.as_secs_f64() * 1000.0,
        limits.memory_bytes >> 20,
        limits.call_timeout.as_millis()
    );
    if let Some(signaling) = plugin.plugin.as_signaling() {
        if file.steps.is_empty() {
            return Err(format!("{label}: a signaling plugin is tested with [[step]]s, and there are none"));
        }
        let all_passed = super::signal_cases::run(signaling, &file.steps, &mut out);
        let _ = writeln!(out, "{}", if all_passed { "all steps passed" } else { "some steps FAILED" });
        return Ok(Report { text: out, all_passed });
    }
    let auth = plugin.plugin.as_auth().ok_or("this plugin is not an auth plugin (--world auth)")?;
    if file.cases.is_empty() {
        return Err(format!("{label}: an auth plugin is tested with [[case]]s, and there are none"));
    }
    let mut all_passed = true;
    for (i, case) in file.cases.iter().enumerate() {
        let name = case.name.clone().unwrap_or_else(|| format!("case {}", i + 1));
        let request = match to_request(case) {
            Ok(r) => r,
            Err(e) => {
                all_passed = false;
                let _ = writeln!(out, "FAIL {name}: {e}");
                continue;
            }
        };
        let started = Instant::now();
        let (result, memory) = auth.call_measured(&request);
        let micros = started.elapsed().as_secs_f64() * 1e6;
        let (kind, detail) = match &result {
            Ok(Decision::Allow(a)) => ("allow", format!("identity \"{}\", cache {} ms", a.identity, a.cache_ttl_ms)),
            Ok(Decision::Deny(reason)) => ("deny", format!("\"{reason}\"")),
            Ok(Decision::Challenge(realm)) => ("challenge", format!("realm \"{realm}\"")),
            Err(failure) => ("failure", failure.to_string()),
        };
        let passed = match &case.expect {
            Some(expected) => expected == kind,
            None => result.is_ok(),
        };
        all_passed &= passed;
        let verdict = if passed { "ok  " } else { "FAIL" };
        let expected = match (&case.expect, passed) {
            (Some(e), false) => format!(" (expected {e})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{verdict} {name}: {kind}{expected} ({detail}) in {micros:.0} µs, memory {:.1} MiB",
            memory as f64 / f64::from(1 << 20)
        );
    }
    let _ = writeln!(out, "{}", if all_passed { "all cases passed" } else { "some cases FAILED" });
    Ok(Report { text: out, all_passed })
}

fn world_name(world: PluginWorld) -> &'static str {
    match world {
        PluginWorld::Auth => "auth",
        PluginWorld::Sink => "sink",
        PluginWorld::Signaling => "signaling",
    }
}

fn to_request(case: &Case) -> Result<Request, String> {
    let action = match case.action.as_str() {
        "publish" => Action::Publish,
        "read" => Action::Read,
        "playback" => Action::Playback,
        "api" => Action::Api,
        other => return Err(format!("action \"{other}\": write publish, read, playback or api")),
    };
    let protocol = match case.protocol.as_deref() {
        None => match action {
            Action::Publish => Protocol::Whip,
            Action::Read => Protocol::Whep,
            Action::Playback | Action::Api => Protocol::Http,
        },
        Some("whip") => Protocol::Whip,
        Some("whep") => Protocol::Whep,
        Some("rtsp") => Protocol::Rtsp,
        Some("rtmp") => Protocol::Rtmp,
        Some("http") => Protocol::Http,
        Some(other) => return Err(format!("protocol \"{other}\": write whip, whep, rtsp, rtmp or http")),
    };
    let credentials = match (&case.token, &case.user, &case.password, &case.stream_key) {
        (None, None, None, None) => Credentials::None,
        (Some(t), None, None, None) => Credentials::Bearer(t.clone()),
        (None, Some(u), Some(p), None) => Credentials::Basic(BasicCredentials { user: u.clone(), password: p.clone() }),
        (None, None, None, Some(k)) => Credentials::StreamKey(k.clone()),
        _ => return Err("give one kind of credentials: token, user + password, or stream_key".into()),
    };
    let query =
        case.query.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
    Ok(Request {
        action,
        protocol,
        route: case.route.clone(),
        target: case.target.clone().unwrap_or_else(|| format!("/{}", case.route)),
        query,
        remote_ip: case.remote_ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
        credentials,
    })
}
