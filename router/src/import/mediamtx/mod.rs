//! MediaMTX's `mediamtx.yml` as a routes file.
//!
//! What maps: paths become routes (exact names; `all_others` and `~^PREFIX/(...)$` regexes become templates),
//! their sources, on-demand pulls, `maxReaders`, `overridePublisher`, recording (the built-in recorder with the
//! same part and segment durations, path pattern and retention), internal users (passwords hashed with argon2 on
//! the way; the `any` user becomes the auth plugin's anonymous entries), the listeners and WebRTC's ICE settings.
//! What does not (hooks, protocols Sluice lacks, HTTP auth) is listed with the reason, in the output and as a
//! comment at the end of the file. MediaMTX's defaults apply where the file is silent, as they did when MediaMTX
//! read it: a file without `authInternalUsers` lets anyone read and publish, as MediaMTX did.

mod names;
mod unconverted;
mod values;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use yaml_rust2::parser::{Event, EventReceiver, Parser};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

use self::names::{permission_pattern, pull_source, route_name, split_record_path};
use self::unconverted::{global_reason, path_reason};
use self::values::{Section, list, listener, q, sluice_duration, text};
use super::{Conversion, Skipped};
use crate::config::model::RouteName;

/// Anchors and aliases are not used in MediaMTX files; a handful is allowed, more is refused before loading
/// (each alias is a copy: nested ones grow the document exponentially).
const MAX_ALIASES: usize = 16;
/// MediaMTX files nest three or four levels; deeper is refused before loading (the loaded tree is walked and
/// dropped recursively).
const MAX_DEPTH: usize = 64;

/// The name of the auth plugin the users convert into.
const USERS_PLUGIN: &str = "users";
const JWT_PLUGIN: &str = "jwt";

pub fn convert(text: &str) -> Result<Conversion, String> {
    let mut shape = Shape::default();
    Parser::new_from_str(text).load(&mut shape, true).map_err(|e| format!("not valid YAML: {e}"))?;
    if shape.aliases > MAX_ALIASES {
        return Err(format!("the file uses {} YAML aliases; at most {MAX_ALIASES} are read", shape.aliases));
    }
    if shape.deepest > MAX_DEPTH {
        return Err(format!("the file nests {} levels deep; at most {MAX_DEPTH} are read", shape.deepest));
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let empty = Hash::new();
    let root = match docs.as_slice() {
        [] | [Yaml::Null] => &empty,
        [Yaml::Hash(h)] => h,
        [_] => return Err("expected MediaMTX settings (`key: value` lines) at the top level".into()),
        _ => return Err("the file holds several YAML documents; MediaMTX reads one".into()),
    };
    let mut converter = Converter::default();
    converter.global(root)?;
    converter.paths(root)?;
    Ok(converter.finish())
}

/// What is counted before the document is loaded: aliases, and how deep collections nest.
#[derive(Default)]
struct Shape {
    aliases: usize,
    depth: usize,
    deepest: usize,
}

impl EventReceiver for Shape {
    fn on_event(&mut self, event: Event) {
        match event {
            Event::Alias(_) => self.aliases += 1,
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                self.depth += 1;
                self.deepest = self.deepest.max(self.depth);
            }
            Event::SequenceEnd | Event::MappingEnd => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// This machine, as MediaMTX's default `any` user for the API lists it.
fn this_machine() -> Vec<String> {
    vec!["127.0.0.1".to_string(), "::1".to_string()]
}

/// Path settings of MediaMTX before 1.0 that guard one path (any of them switches MediaMTX to that mode).
const PER_PATH_AUTH: [&str; 6] = ["readUser", "readPass", "readIPs", "publishUser", "publishPass", "publishIPs"];

#[derive(Debug, Default)]
struct Converter {
    skipped: Vec<Skipped>,
    /// `[server]` lines, `key = value`.
    server: Vec<String>,
    webrtc: Vec<String>,
    /// The protocols readers may use on every route (`to`).
    outputs: Vec<&'static str>,
    auth: Auth,
    users: Users,
    /// Whether MediaMTX's API was on (`api: yes`): only then does its local `api` rule carry over.
    api_on: bool,
    /// Whether `authInternalUsers` was absent and MediaMTX's default users were converted.
    default_users: bool,
    recorders: Vec<Recorder>,
    routes: Vec<Route>,
    /// Said at the top of the file: what changed meaning on the way.
    comments: Vec<String>,
}

#[derive(Debug, Default)]
enum Auth {
    /// `authMethod: internal`: routes and the API ask the users plugin.
    #[default]
    Internal,
    /// Per-path `readUser`/`publishUser` (MediaMTX before 1.0): open routes stay open, those with credentials ask
    /// the users plugin.
    PerPath,
    /// `authMethod: jwt`.
    Jwt { claim: String, issuer: Option<String>, audience: Option<String> },
    /// Something Sluice cannot check (`authMethod: http`): everything is refused until the file says otherwise.
    Closed,
}

#[derive(Debug, Default)]
struct Users {
    users: Vec<User>,
    anonymous: Vec<Anonymous>,
}

#[derive(Debug)]
struct User {
    name: String,
    hash: String,
    /// Where the password came from, to tell two entries of one name apart.
    pass: String,
    permissions: Vec<String>,
    ips: Vec<String>,
}

#[derive(Debug)]
struct Anonymous {
    permissions: Vec<String>,
    ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorder {
    name: String,
    dir: String,
    pattern: String,
    part: String,
    segment: String,
    max_age: Option<String>,
}

#[derive(Debug)]
struct Route {
    /// The MediaMTX path it came from.
    path: String,
    name: String,
    lines: Vec<String>,
    notes: Vec<String>,
}

impl Converter {
    fn skip(&mut self, setting: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped { setting: setting.into(), reason: reason.into() });
    }

    /// The listeners, protocols, API and authentication.
    fn global(&mut self, root: &Hash) -> Result<(), String> {
        let g = Section::of(root);
        // Protocols: each on by default in MediaMTX, `xxxDisable: yes` in files before 1.0.
        let enabled =
            |on: &str, disable: &str| -> Result<bool, String> { Ok(g.bool(on, true)? && !g.bool(disable, false)?) };
        let webrtc = enabled("webrtc", "webrtcDisable")?;
        let rtsp = enabled("rtsp", "rtspDisable")?;
        let rtmp = enabled("rtmp", "rtmpDisable")?;
        let addr = |key: &str, default: &str| listener(key, &g.text(key).unwrap_or_else(|| default.into()));
        if g.bool("webrtcEncryption", false)? {
            // MediaMTX served its WebRTC port (pages, WHIP, WHEP) over TLS: Sluice's HTTPS listener takes that address
            // and certificate, and plain HTTP moves to this machine only.
            self.server.push(format!("https = {}", q(&addr("webrtcAddress", ":8889")?)));
            let cert = g.text("webrtcServerCert").unwrap_or_else(|| "server.crt".into());
            let key = g.text("webrtcServerKey").unwrap_or_else(|| "server.key".into());
            self.server.push(format!("tls = {{ cert = {}, key = {} }}", q(&cert), q(&key)));
            self.server.push("http = \"127.0.0.1:8880\"".into());
            self.comments.push(
                "webrtcEncryption: HTTPS is served on MediaMTX's WebRTC address with its certificate; plain HTTP only on \
                 127.0.0.1:8880"
                    .into(),
            );
        } else {
            self.server.push(format!("http = {}", q(&addr("webrtcAddress", ":8889")?)));
        }
        for (on, key, default, name) in [(rtsp, "rtspAddress", ":8554", "rtsp"), (rtmp, "rtmpAddress", ":1935", "rtmp")]
        {
            if on {
                self.server.push(format!("{name} = {}", q(&addr(key, default)?)));
            } else {
                // Sluice always listens on both; kept to this machine, and routes do not offer the protocol.
                let port = addr(key, default)?.rsplit_once(':').map(|(_, p)| p.to_string()).unwrap_or_default();
                self.server.push(format!("{name} = {}", q(&format!("127.0.0.1:{port}"))));
                self.comments.push(format!(
                    "{name} is off in MediaMTX: Sluice always listens, here on 127.0.0.1 only, and no route offers it"
                ));
            }
        }
        if webrtc {
            self.outputs.push("whep");
        }
        if rtsp {
            self.outputs.push("rtsp");
        }
        if rtmp {
            self.outputs.push("rtmp");
        }
        if enabled("hls", "hlsDisable")? {
            // Served on the HTTP port (`/PATH/index.m3u8`), not on hlsAddress: LL-HLS with fMP4 parts.
            self.outputs.push("hls");
            self.hls_settings(&g)?;
        }
        if g.bool("srt", true)? {
            self.skip(
                "srt",
                "Sluice does not serve SRT: publishers use RTMP, RTSP or WHIP; players WHEP, RTSP or RTMP",
            );
        }
        if !webrtc {
            self.comments.push(
                "webrtc is off in MediaMTX: its address is still Sluice's HTTP listener (API and pages); no route offers WHEP"
                    .into(),
            );
        }
        self.api_on = g.bool("api", false)?;
        if self.api_on {
            self.server.push(format!("mediamtx_api = {}", q(&addr("apiAddress", ":9997")?)));
        }
        let udp = g.text("webrtcLocalUDPAddress").or_else(|| g.text("webrtcICEUDPMuxAddress"));
        self.webrtc
            .push(format!("udp = {}", q(&listener("webrtcLocalUDPAddress", udp.as_deref().unwrap_or(":8189"))?)));
        self.public_ips(&g);
        self.ice_servers(&g)?;
        self.trusted_proxies(&g);
        self.server.push("data_dir = \"data\"".into());
        self.auth(&g)?;
        for (k, v) in root {
            let key = text(k);
            if let Some(reason) = global_reason(&key, v, &g) {
                self.skip(key, reason);
            }
        }
        Ok(())
    }

    fn public_ips(&mut self, g: &Section) {
        let mut ips = Vec::new();
        for key in ["webrtcAdditionalHosts", "webrtcICEHostNAT1To1IPs"] {
            for host in g.get(key).and_then(Yaml::as_vec).map(Vec::as_slice).unwrap_or_default() {
                let host = text(host);
                match host.parse::<IpAddr>() {
                    Ok(_) => ips.push(host),
                    Err(_) => self.skip(
                        format!("{key}: {host}"),
                        "Sluice advertises addresses, not host names: list the address it resolves to in `public_ips`",
                    ),
                }
            }
        }
        self.webrtc.push(format!("public_ips = {}", list(&ips)));
    }

    fn ice_servers(&mut self, g: &Section) -> Result<(), String> {
        let mut servers = Vec::new();
        for s in g.get("webrtcICEServers2").and_then(Yaml::as_vec).map(Vec::as_slice).unwrap_or_default() {
            let Yaml::Hash(h) = s else { return Err("`webrtcICEServers2`: expected entries with `url`".into()) };
            let s = Section::of(h);
            let url = s.text("url").ok_or("`webrtcICEServers2`: an entry has no `url`")?;
            let mut entry = format!("{{ url = {}", q(&url));
            if let (Some(user), Some(pass)) = (s.text("username"), s.text("password")) {
                write!(entry, ", username = {}, credential = {}", q(&user), q(&pass)).ok();
            }
            entry.push_str(" }");
            servers.push(entry);
        }
        // Before 1.0: a list of URLs, TURN ones as turn:USER:PASS:HOST:PORT.
        for url in g.get("webrtcICEServers").and_then(Yaml::as_vec).map(Vec::as_slice).unwrap_or_default() {
            let url = text(url);
            let parts: Vec<&str> = url.splitn(4, ':').collect();
            let entry = match parts.as_slice() {
                [scheme @ ("turn" | "turns"), user, pass, host] => format!(
                    "{{ url = {}, username = {}, credential = {} }}",
                    q(&format!("{scheme}:{host}")),
                    q(user),
                    q(pass)
                ),
                _ => format!("{{ url = {} }}", q(&url)),
            };
            servers.push(entry);
        }
        self.webrtc.push(format!("ice_servers = [{}]", servers.join(", ")));
        Ok(())
    }

    fn trusted_proxies(&mut self, g: &Section) {
        let mut proxies: Vec<String> = Vec::new();
        // Sluice has one list for its HTTP listener (pages, WHIP/WHEP, /v1): the WebRTC one, and the API's when the
        // API is on. Proxies trusted only for HLS or playback are not trusted for everything.
        let keys: &[&str] =
            if self.api_on { &["webrtcTrustedProxies", "apiTrustedProxies"] } else { &["webrtcTrustedProxies"] };
        for key in ["hlsTrustedProxies", "playbackTrustedProxies", "apiTrustedProxies"] {
            if !keys.contains(&key) && g.get(key).is_some_and(|v| !values::is_empty(v)) {
                self.skip(
                    key,
                    "not trusted for the HTTP listener as a whole: add them to `trusted_proxies` if they front it",
                );
            }
        }
        for key in keys {
            for p in g.get(key).and_then(Yaml::as_vec).map(Vec::as_slice).unwrap_or_default() {
                let p = text(p);
                if !proxies.contains(&p) {
                    proxies.push(p);
                }
            }
        }
        if !proxies.is_empty() {
            self.server.push(format!("trusted_proxies = {}", list(&proxies)));
        }
    }

    fn auth(&mut self, g: &Section) -> Result<(), String> {
        // Before 1.0, `externalAuthenticationURL` was HTTP auth.
        let legacy_http = g.text("externalAuthenticationURL").is_some();
        let method = g.text("authMethod").unwrap_or_else(|| if legacy_http { "http" } else { "internal" }.into());
        self.auth = match method.as_str() {
            "internal" => Auth::Internal,
            "jwt" => {
                self.skip(
                    "authJWTJWKS",
                    "auth-jwt checks tokens with one key, not a JWKS URL: put the RS256 public key (PEM) from that \
                     URL in the environment variable SLUICE_JWT_PUBLIC_KEY (the converted plugin reads it)",
                );
                Auth::Jwt {
                    claim: g.text("authJWTClaimKey").unwrap_or_else(|| "mediamtx_permissions".into()),
                    issuer: g.text("authJWTIssuer"),
                    audience: g.text("authJWTAudience"),
                }
            }
            other => {
                self.skip(
                    "authMethod",
                    format!(
                        "\"{other}\" has no Sluice equivalent (plugins have no network to call an auth service): \
                         every route and the API refuse clients until you name an auth plugin; write one with the SDK \
                         (sdk/) or use builtin:auth-users / builtin:auth-jwt"
                    ),
                );
                Auth::Closed
            }
        };
        Ok(())
    }

    fn paths(&mut self, root: &Hash) -> Result<(), String> {
        let g = Section::of(root);
        let defaults = match g.get("pathDefaults") {
            None => None,
            Some(Yaml::Hash(h)) => Some(h),
            Some(_) => return Err("`pathDefaults`: expected path settings".into()),
        };
        let paths = match g.get("paths") {
            None => Hash::new(),
            Some(Yaml::Hash(h)) => h.clone(),
            Some(_) => return Err("`paths`: expected a path name and its settings per entry".into()),
        };
        if let Some(d) = defaults {
            for (k, v) in d {
                let key = text(k);
                if let Some(reason) = path_reason(&key, v) {
                    self.skip(format!("pathDefaults.{key}"), reason);
                }
            }
        }
        let per_path = paths.values().any(|p| {
            let s = Section { hash: p.as_hash(), fallback: defaults };
            PER_PATH_AUTH.iter().any(|k| s.get(k).is_some_and(|v| !values::is_empty(v)))
        });
        if per_path && matches!(self.auth, Auth::Internal) && g.get("authInternalUsers").is_none() {
            self.auth = Auth::PerPath;
            // MediaMTX before 1.0 served its API, when on, to this machine only without credentials.
            if self.api_on {
                self.users.anonymous.push(Anonymous { permissions: vec!["api".into()], ips: this_machine() });
            }
        }
        if matches!(self.auth, Auth::Internal) {
            self.internal_users(&g)?;
        }
        let mut names: Vec<String> = Vec::new();
        for (name, conf) in &paths {
            let name = text(name);
            let hash = match conf {
                Yaml::Null => None,
                Yaml::Hash(h) => Some(h),
                _ => return Err(format!("`paths.{name}`: expected the path's settings (or nothing)")),
            };
            let s = Section { hash, fallback: defaults };
            for (k, v) in hash.into_iter().flatten() {
                let key = text(k);
                if let Some(reason) = path_reason(&key, v) {
                    self.skip(format!("paths.{name}.{key}"), reason);
                }
            }
            match self.route(&name, s, &names) {
                Ok(route) => {
                    names.push(route.name.clone());
                    self.routes.push(route);
                }
                Err(reason) => self.skip(format!("paths.{name}"), reason),
            }
        }
        Ok(())
    }

    /// `authInternalUsers` (or MediaMTX's default users when the file has none).
    /// MediaMTX's segment and part durations and segment count, within what `[server.hls]` takes.
    fn hls_settings(&mut self, g: &Section) -> Result<(), String> {
        let segment = g.duration("hlsSegmentDuration")?;
        let part = g.duration("hlsPartDuration")?;
        let count = g.text("hlsSegmentCount");
        if segment.is_none() && part.is_none() && count.is_none() {
            return Ok(());
        }
        let part = part.unwrap_or(Duration::from_millis(200)).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let segment = segment.unwrap_or(Duration::from_secs(1)).clamp(part, Duration::from_secs(60));
        let count = count.and_then(|c| c.parse::<u32>().ok()).unwrap_or(7).clamp(3, 100);
        self.server.push(format!(
            "hls = {{ segment = {}, part = {}, segments = {count} }}",
            q(&sluice_duration(segment)),
            q(&sluice_duration(part))
        ));
        Ok(())
    }

    fn internal_users(&mut self, g: &Section) -> Result<(), String> {
        let entries = match g.get("authInternalUsers") {
            None => {
                // MediaMTX's defaults: anyone publishes, reads and plays back; the API only from this machine.
                self.default_users = true;
                self.users.anonymous.push(Anonymous {
                    permissions: vec!["publish".into(), "read".into(), "playback".into()],
                    ips: Vec::new(),
                });
                if self.api_on {
                    self.users.anonymous.push(Anonymous { permissions: vec!["api".into()], ips: this_machine() });
                }
                return Ok(());
            }
            Some(Yaml::Array(a)) => a,
            Some(_) => return Err("`authInternalUsers`: expected a list of users".into()),
        };
        let mut noted_metrics = false;
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("authInternalUsers[{i}]");
            let Yaml::Hash(h) = entry else { return Err(format!("`{at}`: expected `user`, `pass` and `permissions`")) };
            let s = Section::of(h);
            let user = s.text("user").unwrap_or_default();
            let ips: Vec<String> = s.get("ips").and_then(Yaml::as_vec).into_iter().flatten().map(text).collect();
            let mut permissions = Vec::new();
            for p in s.get("permissions").and_then(Yaml::as_vec).into_iter().flatten() {
                let Yaml::Hash(p) = p else { return Err(format!("`{at}.permissions`: expected `action` and `path`")) };
                let p = Section::of(p);
                let action = p.text("action").unwrap_or_default();
                match action.as_str() {
                    "publish" | "read" | "playback" | "api" => {}
                    "metrics" | "pprof" => {
                        if !noted_metrics {
                            noted_metrics = true;
                            self.skip(
                                format!("{at}.permissions: {action}"),
                                "/metrics is served to anyone who reaches the HTTP listener; there is no pprof",
                            );
                        }
                        continue;
                    }
                    other => {
                        self.skip(format!("{at}.permissions: {other}"), "not an action Sluice knows");
                        continue;
                    }
                }
                let route = match p.text("path") {
                    None => "*".to_string(),
                    Some(path) => match permission_pattern(&path) {
                        Ok(r) => r,
                        Err(e) => {
                            self.skip(format!("{at}.permissions: {action} {path}"), e);
                            continue;
                        }
                    },
                };
                permissions.push(if route == "*" { action } else { format!("{action}:{route}") });
            }
            if user == "any" {
                self.users.anonymous.push(Anonymous { permissions, ips });
                continue;
            }
            if user.is_empty() {
                self.skip(at, "no `user` name");
                continue;
            }
            if user.starts_with("argon2:") || user.starts_with("sha256:") {
                self.skip(
                    format!("{at} (a hashed user name)"),
                    "the users plugin compares names as they are: give the user a plain name",
                );
                continue;
            }
            let pass = s.text("pass").unwrap_or_default();
            self.add_user(&format!("{at} ({user})"), &user, &pass, permissions, ips);
        }
        Ok(())
    }

    /// A user with a MediaMTX password (plain, `argon2:` or `sha256:`); permissions merge into an earlier entry of
    /// the same name and password.
    fn add_user(&mut self, at: &str, name: &str, pass: &str, permissions: Vec<String>, ips: Vec<String>) {
        if let Some(u) = self.users.users.iter_mut().find(|u| u.name == name) {
            if u.pass != pass {
                self.skip(at, "listed again with another password; the first entry is kept");
                return;
            }
            // One entry holds one address list: merging lists would let each permission come from the other's.
            if u.ips != ips {
                self.skip(
                    at,
                    "listed again with other addresses; the users plugin holds one list per user: give this entry \
                     another user name",
                );
                return;
            }
            for p in permissions {
                if !u.permissions.contains(&p) {
                    u.permissions.push(p);
                }
            }
            return;
        }
        match password_hash(pass) {
            Ok(hash) => self.users.users.push(User { name: name.into(), hash, pass: pass.into(), permissions, ips }),
            Err(reason) => self.skip(at, reason),
        }
    }

    /// One path as a route.
    fn route(&mut self, path: &str, s: Section, taken: &[String]) -> Result<Route, String> {
        let (name, mut notes) = route_name(path)?;
        // Before anything is registered for it (users, recorders): a skipped path leaves nothing behind.
        if taken.contains(&name) {
            return Err(format!("it becomes route \"{name}\", which an earlier path already is"));
        }
        let template = name.ends_with('*');
        let source = s.text("source").unwrap_or_else(|| "publisher".into());
        let pulls = source != "publisher";
        let from = if pulls { pull_source(&source, &name)? } else { q("publisher") };
        let mut lines = vec![format!("name = {}", q(&name)), format!("from = {from}")];
        let mut on_demand = pulls && s.bool("sourceOnDemand", false)?;
        if pulls && template && !on_demand {
            on_demand = true;
            notes.push("pulled on demand: a template's routes are made when a reader asks for one".into());
        }
        if on_demand {
            lines.push("on_demand = true".into());
            let close_after = s.duration("sourceOnDemandCloseAfter")?.unwrap_or(Duration::from_secs(10));
            if close_after != Duration::from_secs(10) {
                lines.push(format!("idle_timeout = {}", q(&sluice_duration(close_after))));
            }
        }
        if let Some(max) = s.text("maxReaders") {
            let max: u64 = max.parse().map_err(|_| format!("`maxReaders`: \"{max}\" is not a number"))?;
            if max > 0 {
                lines.push(format!("max_readers = {max}"));
            }
        }
        if source.starts_with("rtsp://") {
            match s.text("rtspTransport").or_else(|| s.text("sourceProtocol")).as_deref() {
                Some("udp") => lines.push("rtsp_transport = \"udp\"".into()),
                Some("tcp") => lines.push("rtsp_transport = \"tcp\"".into()),
                Some("multicast") => notes.push("pulled over TCP: multicast is not supported".into()),
                _ => {}
            }
        }
        if !pulls {
            let default = !s.bool("disablePublisherOverride", false)?;
            if s.bool("overridePublisher", default)? {
                lines.push("override_publisher = true".into());
            }
        }
        let mut to: Vec<String> = self.outputs.iter().map(|o| o.to_string()).collect();
        if s.bool("record", false)? {
            let recorder = self.recorder(path, s)?;
            to.push(format!("record:{recorder}"));
            lines.push(format!("to = {}", list(&to)));
        }
        if self.per_path_users(path, &name, s) {
            lines.push(format!("auth = {}", q(USERS_PLUGIN)));
        }
        Ok(Route { path: path.into(), name, lines, notes })
    }

    /// MediaMTX before 1.0: `readUser`/`publishUser` on the path. Returns whether the route needs credentials.
    fn per_path_users(&mut self, path: &str, name: &str, s: Section) -> bool {
        if !matches!(self.auth, Auth::PerPath) {
            return false;
        }
        if !PER_PATH_AUTH.iter().any(|k| s.get(k).is_some_and(|v| !values::is_empty(v))) {
            return false;
        }
        let ips =
            |key: &str| -> Vec<String> { s.get(key).and_then(Yaml::as_vec).into_iter().flatten().map(text).collect() };
        for (user_key, pass_key, ips_key, action) in
            [("readUser", "readPass", "readIPs", "read"), ("publishUser", "publishPass", "publishIPs", "publish")]
        {
            let mut permissions = vec![format!("{action}:{name}")];
            if action == "read" {
                permissions.push(format!("playback:{name}"));
            }
            let from = ips(ips_key);
            match s.text(user_key) {
                Some(user) => {
                    let pass = s.text(pass_key).unwrap_or_default();
                    self.add_user(&format!("paths.{path}.{user_key} ({user})"), &user, &pass, permissions, from);
                }
                // "*" as a permission would match every route the plugin guards, not only the catch-all's.
                None if name == RouteName::CATCH_ALL => self.skip(
                    format!("paths.{path}"),
                    format!(
                        "what anyone could {action} on it now needs credentials (a catch-all's open permission \
                         would open every guarded route)"
                    ),
                ),
                None => self.users.anonymous.push(Anonymous { permissions, ips: from }),
            }
        }
        true
    }

    /// The recorder plugin for the path's recording settings: one per directory.
    fn recorder(&mut self, path: &str, s: Section) -> Result<String, String> {
        let record_path = s.text("recordPath").unwrap_or_else(|| "./recordings/%path/%Y-%m-%d_%H-%M-%S-%f".into());
        let (dir, pattern) = match split_record_path(&record_path) {
            Ok(split) => split,
            Err(e) => {
                self.skip(format!("paths.{path}.recordPath"), format!("{e}; recording to recordings/ instead"));
                ("recordings".to_string(), "%route/%Y-%m-%d_%H-%M-%S".to_string())
            }
        };
        let part = s.duration("recordPartDuration")?.unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(100));
        let segment = s.duration("recordSegmentDuration")?.unwrap_or(Duration::from_secs(3600)).max(part);
        let delete_after = s.duration("recordDeleteAfter")?.unwrap_or(Duration::from_secs(86400));
        let mut recorder = Recorder {
            name: String::new(),
            dir,
            pattern,
            part: sluice_duration(part),
            segment: sluice_duration(segment),
            max_age: (!delete_after.is_zero()).then(|| sluice_duration(delete_after)),
        };
        if let Some(same_dir) = self.recorders.iter().find(|r| r.dir == recorder.dir) {
            let name = same_dir.name.clone();
            if (Recorder { name: name.clone(), ..recorder }) != *same_dir {
                self.skip(
                    format!("paths.{path}.record*"),
                    format!("recorded with recorder \"{name}\"'s settings: Sluice keeps one recorder per directory"),
                );
            }
            return Ok(name);
        }
        recorder.name = match self.recorders.len() {
            0 => "mp4".to_string(),
            n => format!("mp4-{}", n + 1),
        };
        let name = recorder.name.clone();
        self.recorders.push(recorder);
        Ok(name)
    }

    fn finish(self) -> Conversion {
        let mut out = String::new();
        out.push_str(
            "# Sluice routes file converted from MediaMTX's configuration by `sluice import`. Check it with\n\
             # `sluice check`; the commented routes.toml shipped with Sluice explains every key.\n",
        );
        for c in &self.comments {
            writeln!(out, "# Note: {}", comment_safe(c)).ok();
        }
        if self.routes.is_empty() {
            out.push_str("\n# The MediaMTX file had no paths: nothing may publish or be read until routes are added.\nroute = []\n");
        }
        out.push_str("\n[server]\n");
        for line in &self.server {
            writeln!(out, "{line}").ok();
        }
        writeln!(out, "webrtc = {{ {} }}", self.webrtc.join(", ")).ok();
        let api_auth = match &self.auth {
            Auth::Jwt { .. } => JWT_PLUGIN,
            _ => USERS_PLUGIN,
        };
        out.push_str("# The REST API (/v1, and /v3 when mediamtx_api is set) asks the same plugin as the routes.\n");
        writeln!(out, "api_auth = {}", q(api_auth)).ok();

        out.push_str("\n# MediaMTX serves every path on every protocol it has on; these are Sluice's.\n[defaults]\n");
        let outputs: Vec<String> = self.outputs.iter().map(|o| o.to_string()).collect();
        writeln!(out, "to = {}", list(&outputs)).ok();
        match &self.auth {
            Auth::PerPath => out.push_str(
                "# Paths without readUser/publishUser were open to anyone; those with them ask the users plugin.\n\
                 auth = \"none\"\nanonymous = [\"read\", \"publish\", \"playback\"]\n",
            ),
            Auth::Jwt { .. } => writeln!(out, "auth = {}", q(JWT_PLUGIN)).unwrap_or_default(),
            _ => writeln!(out, "auth = {}", q(USERS_PLUGIN)).unwrap_or_default(),
        }

        match &self.auth {
            Auth::Jwt { claim, issuer, audience } => {
                out.push_str(
                    "\n# MediaMTX's JWT auth: tokens carry their permissions in the claim below ({ action, path }\n\
                     # entries, read as they are). Set SLUICE_JWT_PUBLIC_KEY to the RS256 public key (PEM) of the issuer.\n",
                );
                writeln!(out, "[plugins.{JWT_PLUGIN}]\nsource = \"builtin:auth-jwt\"").ok();
                let mut config =
                    format!("public_key_env = \"SLUICE_JWT_PUBLIC_KEY\", permissions_claim = {}", q(claim));
                for (key, value) in [("issuer", issuer), ("audience", audience)] {
                    if let Some(v) = value {
                        write!(config, ", {key} = {}", q(v)).ok();
                    }
                }
                writeln!(out, "config = {{ {config} }}").ok();
                out.push_str("grants = { env = [\"SLUICE_JWT_PUBLIC_KEY\"] }\n");
            }
            auth => self.write_users(&mut out, matches!(auth, Auth::Closed)),
        }

        for r in &self.recorders {
            writeln!(
                out,
                "\n# Recording, as MediaMTX's record settings said (fragmented MP4, indexed for /v1/recordings)."
            )
            .ok();
            writeln!(out, "[plugins.{}]\nsource = \"builtin:record-mp4\"", r.name).ok();
            writeln!(
                out,
                "config = {{ part_duration = {}, segment_duration = {}, path = {} }}",
                q(&r.part),
                q(&r.segment),
                q(&r.pattern)
            )
            .ok();
            let max_age = r.max_age.as_ref().map(|a| format!(", max_age = {}", q(a))).unwrap_or_default();
            writeln!(out, "grants = {{ storage = {{ dir = {}{max_age} }} }}", q(&r.dir)).ok();
        }

        for route in &self.routes {
            writeln!(out, "\n# MediaMTX path {}", q(&route.path)).ok();
            for note in &route.notes {
                writeln!(out, "# ({})", comment_safe(note)).ok();
            }
            writeln!(out, "[[route]]").ok();
            for line in &route.lines {
                writeln!(out, "{line}").ok();
            }
        }

        if !self.skipped.is_empty() {
            out.push_str("\n# Not converted (`sluice import` printed these too):\n");
            for s in &self.skipped {
                writeln!(out, "#  - {}", comment_safe(&s.to_string())).ok();
            }
        }
        Conversion { routes_toml: out, skipped: self.skipped }
    }

    fn write_users(&self, out: &mut String, closed: bool) {
        out.push('\n');
        if closed {
            out.push_str(
                "# MediaMTX's auth method did not convert: this plugin has no users, so everything is refused.\n",
            );
        } else if self.default_users {
            out.push_str(
                "# The MediaMTX file listed no users, so MediaMTX's defaults apply: anyone publishes, reads and plays\n\
                 # back (and, where MediaMTX's API was on, this machine uses the API, /v1 included). Add users\n\
                 # (`sluice passwd` hashes a password) to close it.\n",
            );
        } else {
            out.push_str(
                "# MediaMTX's internal users: passwords hashed with argon2 on the way (`sluice passwd` makes more);\n\
                 # the user `any` became `anonymous` entries (what clients without credentials may do). Its `api`\n\
                 # permission also covers Sluice's /v1 on the HTTP port (routes are changed there).\n",
            );
        }
        writeln!(out, "[plugins.{USERS_PLUGIN}]\nsource = \"builtin:auth-users\"").ok();
        if self.users.users.is_empty() && self.users.anonymous.is_empty() {
            out.push_str("config = { users = [] }\n");
            return;
        }
        for u in &self.users.users {
            writeln!(out, "\n[[plugins.{USERS_PLUGIN}.config.users]]").ok();
            writeln!(out, "name = {}\npassword_hash = {}", q(&u.name), q(&u.hash)).ok();
            writeln!(out, "permissions = {}", list(&u.permissions)).ok();
            if !u.ips.is_empty() {
                writeln!(out, "ips = {}", list(&u.ips)).ok();
            }
        }
        for a in &self.users.anonymous {
            writeln!(out, "\n[[plugins.{USERS_PLUGIN}.config.anonymous]]").ok();
            writeln!(out, "permissions = {}", list(&a.permissions)).ok();
            if !a.ips.is_empty() {
                writeln!(out, "ips = {}", list(&a.ips)).ok();
            }
        }
    }
}

/// Text from the MediaMTX file (names, keys) in a `#` comment: one line, no control characters.
fn comment_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A MediaMTX password as an argon2 hash the users plugin checks.
fn password_hash(pass: &str) -> Result<String, String> {
    if let Some(hash) = pass.strip_prefix("argon2:") {
        return argon2::PasswordHash::new(hash)
            .map(|_| hash.to_string())
            .map_err(|e| format!("its argon2 hash does not parse ({e})"));
    }
    if pass.starts_with("sha256:") {
        return Err("a sha256 password hash cannot become an argon2 one: give the user a new password \
                    (`echo -n PASSWORD | sluice passwd`) and add it to the users plugin"
            .into());
    }
    if pass.is_empty() {
        return Err("no password (only the user `any` may go without one)".into());
    }
    crate::credentials::hash_password(pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteTable;

    const CAMERAS: &str = include_str!("../../../tests/mediamtx/cameras.yml");
    const PUBLISHER: &str = include_str!("../../../tests/mediamtx/publisher-recording.yml");
    const USERS: &str = include_str!("../../../tests/mediamtx/users.yml");

    /// Converts and validates as `sluice check` would (without loading plugins).
    fn converted(yaml: &str) -> (RouteTable, Conversion) {
        let conversion = convert(yaml).expect("converts");
        let table = crate::config::parse(&conversion.routes_toml, "routes.toml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{}", conversion.routes_toml));
        (table, conversion)
    }

    fn route<'t>(table: &'t RouteTable, name: &str) -> &'t crate::config::model::RouteConfig {
        table.routes.iter().find(|r| r.name.as_str() == name).unwrap_or_else(|| panic!("no route {name}"))
    }

    fn skipped<'c>(c: &'c Conversion, setting: &str) -> &'c str {
        let found = c.skipped.iter().find(|s| s.setting == setting);
        &found.unwrap_or_else(|| panic!("{setting} not among {:#?}", c.skipped)).reason
    }

    #[test]
    fn a_camera_list_becomes_pulled_routes() {
        let (table, c) = converted(CAMERAS);
        assert_eq!(table.server.rtsp.to_string(), "0.0.0.0:8554");
        assert_eq!(table.server.http.to_string(), "0.0.0.0:8889");
        let front = route(&table, "front_door");
        // `hls: no` in this file.
        assert!(!front.to.contains(&crate::config::model::Output::Hls), "{:?}", front.to);
        assert_eq!(front.from.redacted(), "rtsp://admin:***@192.168.1.64:554/Streaming/Channels/101");
        assert!(front.on_demand);
        let backyard = route(&table, "backyard");
        assert!(c.routes_toml.contains("rtsp://admin:pa$$word@192.168.1.65"), "a `$` in a password stays literal");
        assert_eq!(backyard.rtsp.as_ref().map(|o| o.transport.as_str()), Some("udp"));
        assert_eq!(backyard.idle_timeout, Duration::from_secs(30));
        let garage = route(&table, "garage");
        assert!(!garage.on_demand);
        assert_eq!(garage.max_readers, Some(4));
        // The NVR's regex became a template whose `${1}` is the channel.
        let made = table.template_for("nvr/3").expect("template").instantiate("nvr/3").expect("made");
        assert_eq!(made.from.redacted(), "rtsp://admin:***@192.168.1.20:554/ch3");
        assert!(c.routes_toml.contains("takes every one-segment name under its prefix, more than"));
        assert!(skipped(&c, "paths.doorbell").contains("rtsps sources are not pulled"));
        assert!(skipped(&c, "srt").contains("SRT"), "SRT is on by default in MediaMTX");
        assert!(c.skipped.iter().all(|s| s.setting != "hls"), "hls: no is not reported");
        // MediaMTX's default users: anyone reads and publishes.
        assert!(
            c.routes_toml
                .contains("[[plugins.users.config.anonymous]]\npermissions = [\"publish\", \"read\", \"playback\"]")
        );
        assert!(c.routes_toml.contains("\n#  - paths.doorbell: rtsps"), "skipped settings are listed in the file too");
    }

    #[test]
    fn a_recorded_publisher_path_keeps_its_recording_settings() {
        let (table, c) = converted(PUBLISHER);
        let live = route(&table, "live");
        assert_eq!(live.from.redacted(), "publisher");
        assert!(!live.override_publisher, "overridePublisher: no");
        // MediaMTX serves HLS unless told not to: so does the converted route.
        assert!(
            c.routes_toml.contains("to = [\"whep\", \"rtsp\", \"rtmp\", \"hls\", \"record:mp4\"]"),
            "{}",
            c.routes_toml
        );
        assert!(table.plugins.contains_key("mp4"));
        assert!(
            c.routes_toml.contains(
                "config = { part_duration = \"2s\", segment_duration = \"1h\", path = \"%route/%Y-%m-%d_%H-%M-%S\" }"
            ),
            "{}",
            c.routes_toml
        );
        assert!(c.routes_toml.contains("grants = { storage = { dir = \"recordings\", max_age = \"168h\" } }"));
        let others = route(&table, "*");
        assert!(others.is_template() && others.override_publisher, "MediaMTX's default lets a publisher take over");
        assert_eq!(table.server.mediamtx_api.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9997"));
        assert!(skipped(&c, "paths.live.runOnReady").starts_with("Sluice runs no commands"));
        assert!(skipped(&c, "metrics").contains("/metrics"));
        assert!(c.skipped.iter().all(|s| s.setting != "logLevel"), "a default is not reported");
    }

    #[test]
    fn internal_users_keep_their_permissions_with_hashed_passwords() {
        let (table, c) = converted(USERS);
        assert_eq!(table.server.api_auth.as_deref(), Some("users"));
        assert!(table.routes.iter().all(|r| r.auth.as_deref() == Some("users")));
        let config: toml::Table = toml::from_str(&c.routes_toml).expect("toml");
        let users = &config["plugins"]["users"]["config"]["users"];
        let user =
            |name: &str| users.as_array().expect("users").iter().find(|u| u["name"].as_str() == Some(name)).cloned();
        let admin = user("admin").expect("admin");
        let hash = argon2::PasswordHash::new(admin["password_hash"].as_str().expect("hash")).expect("argon2");
        use argon2::PasswordVerifier;
        assert!(argon2::Argon2::default().verify_password(b"adminpass", &hash).is_ok(), "hashed on the way");
        assert!(!c.routes_toml.contains("adminpass"), "no plain password in the file");
        assert_eq!(admin["permissions"].as_array().map(Vec::len), Some(4));
        let cam1 = user("cam1").expect("cam1");
        assert!(cam1["password_hash"].as_str().expect("hash").starts_with("$argon2id$v=19$m=19456"), "kept as it was");
        assert_eq!(cam1["permissions"].as_array().expect("p")[0].as_str(), Some("publish:cam1"));
        let viewer = user("viewer").expect("viewer");
        assert_eq!(viewer["permissions"].as_array().expect("p")[0].as_str(), Some("read:cam*"));
        assert_eq!(viewer["ips"].as_array().expect("ips")[0].as_str(), Some("192.168.1.0/24"));
        assert!(user("legacy").is_none());
        assert!(skipped(&c, "authInternalUsers[4] (legacy)").contains("sha256"));
        let anonymous = config["plugins"]["users"]["config"]["anonymous"].as_array().expect("anonymous").clone();
        assert_eq!(anonymous.len(), 2);
        assert_eq!(anonymous[0]["permissions"].as_array().expect("p")[0].as_str(), Some("read:lobby"));
        assert_eq!(anonymous[1]["permissions"].as_array().expect("p").len(), 1, "api; metrics and pprof have no place");
        assert!(skipped(&c, "authInternalUsers[5].permissions: metrics").contains("/metrics"));
        assert_eq!(table.server.webrtc.ice_servers.len(), 2);
        assert_eq!(table.server.webrtc.public_ips.len(), 1);
        assert!(skipped(&c, "webrtcAdditionalHosts: my.example.com").contains("not host names"));
    }

    #[test]
    fn webrtc_over_tls_becomes_the_https_listener_with_the_same_certificate() {
        let (table, _) = converted(
            "webrtcEncryption: yes\nwebrtcServerKey: /etc/mtx/key.pem\nwebrtcServerCert: /etc/mtx/cert.pem\n",
        );
        assert_eq!(table.server.https.map(|a| a.to_string()).as_deref(), Some("0.0.0.0:8889"));
        let tls = table.server.tls.expect("tls");
        assert_eq!((tls.cert.to_str(), tls.key.to_str()), (Some("/etc/mtx/cert.pem"), Some("/etc/mtx/key.pem")));
        assert_eq!(table.server.http.to_string(), "127.0.0.1:8880");
    }

    #[test]
    fn files_before_1_0_with_per_path_credentials_guard_only_those_paths() {
        let (table, c) = converted(
            "paths:\n  open:\n  private:\n    readUser: ana\n    readPass: secret\n    readIPs: [10.0.0.0/8]\n",
        );
        assert_eq!(route(&table, "open").auth.as_deref(), None, "open to anyone, as it was");
        assert_eq!(table.anonymous.len(), 3);
        assert_eq!(route(&table, "private").auth.as_deref(), Some("users"));
        assert!(c.routes_toml.contains("name = \"ana\""));
        assert!(c.routes_toml.contains("permissions = [\"read:private\", \"playback:private\"]"));
        assert!(c.routes_toml.contains("permissions = [\"publish:private\"]"), "anyone still publishes to it");
        assert!(c.routes_toml.contains("ips = [\"10.0.0.0/8\"]"), "ana reads from where MediaMTX let her");
        assert!(!c.routes_toml.contains("permissions = [\"api\"]"), "MediaMTX's API was off: no local API rule");

        // An address list alone switched MediaMTX to this mode too: publishing stays limited to it.
        let (table, c) = converted("paths:\n  cam:\n    publishIPs: [127.0.0.1]\n");
        assert_eq!(route(&table, "cam").auth.as_deref(), Some("users"));
        assert!(c.routes_toml.contains("permissions = [\"publish:cam\"]\nips = [\"127.0.0.1\"]"), "{}", c.routes_toml);
        assert!(c.routes_toml.contains("permissions = [\"read:cam\", \"playback:cam\"]"), "anyone still reads");
    }

    #[test]
    fn hls_settings_carry_over_and_the_rest_is_explained() {
        let (table, c) = converted(
            "hlsSegmentDuration: 2s\nhlsPartDuration: 250ms\nhlsSegmentCount: 10\nhlsVariant: mpegts\nhlsAddress: :9000\n",
        );
        assert_eq!(
            table.server.hls,
            crate::config::model::HlsConfig {
                segment: Duration::from_secs(2),
                part: Duration::from_millis(250),
                segments: 10
            }
        );
        assert!(skipped(&c, "hlsVariant").contains("no MPEG-TS"));
        assert!(skipped(&c, "hlsAddress").contains("/PATH/index.m3u8"));
        assert!(c.skipped.iter().all(|s| s.setting != "hlsSegmentDuration"));
        // `hls: no` leaves HLS out, settings and all.
        let (table, c) = converted("hls: no\nhlsSegmentDuration: 2s\n");
        assert_eq!(table.server.hls, crate::config::model::HlsConfig::default());
        assert!(c.routes_toml.contains("to = [\"whep\", \"rtsp\", \"rtmp\"]"), "{}", c.routes_toml);
    }

    #[test]
    fn what_would_widen_access_is_left_out_with_its_reason() {
        let (_, c) = converted(
            "authInternalUsers:\n  - user: x\n    pass: p\n    ips: [10.0.0.0/8]\n    permissions: [{action: publish}]\n\
             \x20 - user: x\n    pass: p\n    permissions: [{action: read}]\n\
             \x20 - user: y\n    pass: p\n    permissions: [{action: read, path: '~^cam\\d+$'}]\n",
        );
        assert!(skipped(&c, "authInternalUsers[1] (x)").contains("other addresses"), "{:#?}", c.skipped);
        assert!(c.routes_toml.contains("permissions = [\"publish\"]\nips = [\"10.0.0.0/8\"]"));
        assert!(c.skipped.iter().any(|s| s.setting.starts_with("authInternalUsers[2].permissions")));
        // The default users bring no API rule unless MediaMTX's API was on, and then say it covers /v1.
        let (_, off) = converted("paths:\n  cam:\n");
        assert!(!off.routes_toml.contains("permissions = [\"api\"]"));
        let (_, on) = converted("api: yes\npaths:\n  cam:\n");
        assert!(on.routes_toml.contains("permissions = [\"api\"]\nips = [\"127.0.0.1\", \"::1\"]"));
        // Proxies trusted for HLS only are not trusted for everything.
        let (table, c) = converted("hlsTrustedProxies: [10.0.0.1]\nwebrtcTrustedProxies: [10.0.0.2]\n");
        assert_eq!(table.server.trusted_proxies.len(), 1);
        assert!(skipped(&c, "hlsTrustedProxies").contains("trusted_proxies"));
        // externalAuthenticationURL (HTTP auth before 1.0) closes everything rather than leaving it open.
        let (_, c) = converted("externalAuthenticationURL: http://auth/\npaths:\n  cam:\n");
        assert!(c.routes_toml.contains("config = { users = [] }"));
        // A regex capture in the host is refused, and control characters stay out of comments.
        let (table, c) = converted("paths:\n  '~^cams/([^/]+)$':\n    source: rtsp://10.0.0.$G1/s\n  \"a\\rb\":\n");
        assert!(table.routes.is_empty());
        assert!(skipped(&c, "paths.~^cams/([^/]+)$").contains("host"));
        assert!(c.routes_toml.contains("#  - paths.a b: "), "{}", c.routes_toml);
    }

    #[test]
    fn what_cannot_convert_is_refused_or_listed_never_a_panic() {
        assert!(convert("paths: [a, b]\n").expect_err("refused").contains("`paths`"));
        assert!(convert("- just\n- a list\n").is_err());
        assert!(convert("a: 1\n---\nb: 2\n").expect_err("refused").contains("several YAML documents"));
        assert!(convert("paths:\n  x: {source: [\n").expect_err("refused").starts_with("not valid YAML"));
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
        assert!(convert(bomb).expect_err("refused").contains("aliases"));
        // An empty file is MediaMTX with every default: nothing to route yet.
        let (table, c) = converted("");
        assert!(table.routes.is_empty() && table.routes_declared);
        assert!(c.routes_toml.contains("route = []"));
        // HTTP auth cannot be converted: everything is refused rather than opened.
        let (table, c) = converted("authMethod: http\nauthHTTPAddress: http://localhost:9000/auth\npaths:\n  cam:\n");
        assert!(skipped(&c, "authMethod").contains("refuse"));
        assert_eq!(route(&table, "cam").auth.as_deref(), Some("users"));
        assert!(c.routes_toml.contains("config = { users = [] }"));
        // Unknown keys are listed, bad names and sources are skipped with their reason.
        let (table, c) =
            converted("someNewSetting: 3\npaths:\n  \"bad name\":\n  ok:\n    source: srt://x\n    runOnInit: x\n");
        assert!(table.routes.is_empty());
        assert!(skipped(&c, "someNewSetting").contains("not a setting this importer knows"));
        assert!(skipped(&c, "paths.bad name").contains("rename"));
        assert!(skipped(&c, "paths.ok").contains("srt sources"));
        assert!(skipped(&c, "paths.ok.runOnInit").starts_with("Sluice runs no commands"));
    }
}
