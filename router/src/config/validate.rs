//! Turns the specs into the typed model, collecting every error with its position and a fix.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::error::{ConfigError, ConfigErrors, LineIndex};
use super::interpolate::expand;
use super::model::*;
use super::spec::*;
use super::units::{parse_duration, parse_size};

const OUTPUTS_HELP: &str =
    "outputs are \"whep\", \"hls\", \"rtsp\", \"rtmp\", \"record:<plugin>\", or an rtmp:// or rtsp:// URL to push to";
const SOURCES_HELP: &str = "write \"demo\"; \"whip\", \"rtmp\" or \"rtsp\" to take a publisher of that protocol, \"publisher\" for any; or an rtsp:// or rtmp:// URL to pull from";

/// Messages quote values as written in the file, never after `${VAR}` expansion: expanded values are often
/// secrets, and these messages reach logs and the API.
pub fn validate(
    spec: FileSpec,
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RouteTable, ConfigErrors> {
    let base_dir = Path::new(file).parent().map(Path::to_path_buf).unwrap_or_default();
    let routes_declared = spec.routes.is_some();
    let route_specs = spec.routes.unwrap_or_default();
    if route_specs.len() > MAX_ROUTES {
        let span = route_specs[MAX_ROUTES].span();
        return Err(ConfigErrors::single(ConfigError::at(
            file,
            text,
            span,
            format!("more than {MAX_ROUTES} routes ({} in the file)", route_specs.len()),
            Some("split the sites over several routers, or use fewer routes".to_string()),
        )));
    }
    let mut cx = Validator {
        lines: LineIndex::new(text),
        file,
        env,
        base_dir,
        errors: Vec::new(),
        plugin_positions: BTreeMap::new(),
        accounts_enabled: false,
    };
    let api_auth_spec = spec.server.as_ref().and_then(|s| s.api_auth.clone());
    let mut server = cx.server(spec.server);
    // Like every other path in the file, relative to the file: the router then finds the same data whichever
    // directory it was started from.
    server.data_dir = cx.base_dir.join(&server.data_dir);
    let plugins = cx.plugins(spec.plugins, &server.data_dir);
    let accounts = spec.accounts.as_ref().map(|a| cx.accounts(a));
    cx.accounts_enabled = accounts.is_some();
    if let Some(a) = &api_auth_spec {
        server.api_auth = cx.auth("`server.api_auth`", a, &plugins);
    }
    let anonymous = cx.anonymous(spec.defaults.as_ref().and_then(|d| d.anonymous.as_ref()));
    let defaults = cx.defaults(spec.defaults, &plugins);
    let routes = cx.routes(route_specs, &defaults, &plugins, &server);
    if let (Some(spec), Some(accounts)) = (&spec.accounts, &accounts) {
        cx.camera_template(spec, accounts, &routes);
        cx.accounts_paths_free(&plugins);
    }
    if cx.errors.is_empty() {
        let plugin_positions = cx.plugin_positions;
        Ok(RouteTable { server, plugins, anonymous, routes, routes_declared, accounts, plugin_positions })
    } else {
        cx.errors.sort_by_key(|e| (e.line, e.column));
        // An inherited `[defaults]` value that is wrong is reported once, not once per route inheriting it.
        cx.errors.dedup_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(cx.errors))
    }
}

/// The longest `header_timeout` / `body_timeout` (and past which deadline arithmetic could overflow).
const MAX_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Routes one file may declare. Far above what one router carries; it bounds what a mistaken or hostile file
/// costs to validate and start.
pub const MAX_ROUTES: usize = 10_000;

struct Validator<'a> {
    lines: LineIndex<'a>,
    plugin_positions: BTreeMap<String, (usize, usize)>,
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    /// The file has `[accounts]`: `auth = "accounts"` is valid.
    accounts_enabled: bool,
}

/// Whether every `${1}` of a URL stands after its authority (scheme, credentials, host, port).
fn capture_in_path(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    !rest[..path_start].contains(TEMPLATE_CAPTURE)
}

/// `[defaults]` after validation.
#[derive(Default)]
struct Defaults {
    to: Option<Spanned<Vec<Spanned<String>>>>,
    auth: Option<Option<String>>,
    on_demand: Option<bool>,
    idle_timeout: Option<Duration>,
    max_readers: Option<u32>,
    write_interval: Option<Duration>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<Option<String>>) {
        self.errors.push(ConfigError::at_line_col(self.file, self.lines.line_col(span.start), message, help.into()));
    }

    /// Expands `${VAR}` in a string value, reporting at its position.
    fn expand(&mut self, context: &str, value: &Spanned<String>) -> Option<String> {
        self.expand_with(context, value, false)
    }

    /// [`expand`](Self::expand); `keep_capture`: a template's `from`, where `${1}` stays for its routes.
    fn expand_with(&mut self, context: &str, value: &Spanned<String>, keep_capture: bool) -> Option<String> {
        let expanded = if keep_capture {
            super::interpolate::expand_keeping_capture(value.get_ref(), self.env)
        } else {
            expand(value.get_ref(), self.env)
        };
        match expanded {
            Ok(s) => Some(s),
            Err(e) => {
                let help = if e.contains("is not set") {
                    "export it before starting sluice, or write `$${` for a literal `${`".to_string()
                } else {
                    "write variables as ${NAME}, or `$${` for a literal `${`".to_string()
                };
                self.err(value.span(), format!("{context}: {e}"), Some(help));
                None
            }
        }
    }

    fn server(&mut self, spec: Option<ServerSpec>) -> ServerConfig {
        let mut server = ServerConfig::default();
        let Some(spec) = spec else { return server };
        if let Some(v) = &spec.http {
            server.http = self.addr("server.http", v, server.http);
        }
        if let Some(v) = &spec.rtsp {
            server.rtsp = self.addr("server.rtsp", v, server.rtsp);
        }
        if let Some(v) = &spec.rtmp {
            server.rtmp = self.addr("server.rtmp", v, server.rtmp);
        }
        if let Some(v) = &spec.mediamtx_api {
            server.mediamtx_api = Some(self.addr("server.mediamtx_api", v, SocketAddr::from(([127, 0, 0, 1], 9997))));
        }
        if let Some(v) = &spec.https {
            server.https = Some(self.addr("server.https", v, SocketAddr::from(([0, 0, 0, 0], 8443))));
        }
        if let Some(tls) = &spec.tls {
            let cert = self.expand("`server.tls.cert`", &tls.get_ref().cert);
            let key = self.expand("`server.tls.key`", &tls.get_ref().key);
            if let (Some(cert), Some(key)) = (cert, key) {
                server.tls = Some(TlsFiles { cert: self.base_dir.join(cert), key: self.base_dir.join(key) });
            }
            if server.https.is_none() {
                self.err(
                    tls.span(),
                    "`server.tls` names certificate files, but `server.https` is not set",
                    Some("add https = \"0.0.0.0:8443\"".to_string()),
                );
            }
        }
        if let Some(redirect) = &spec.https_redirect {
            server.https_redirect = *redirect.get_ref();
            if server.https_redirect && server.https.is_none() {
                self.err(
                    redirect.span(),
                    "`server.https_redirect` sends browsers to HTTPS, but `server.https` is not set",
                    Some("add https = \"0.0.0.0:8443\"".to_string()),
                );
            }
        }
        if let Some(webrtc) = &spec.webrtc {
            if let Some(v) = &webrtc.udp {
                server.webrtc.udp = self.addr("server.webrtc.udp", v, server.webrtc.udp);
            }
            if let Some(v) = &webrtc.shards {
                match usize::try_from(*v.get_ref()) {
                    Ok(n) if (1..=WebrtcConfig::MAX_SHARDS).contains(&n) => server.webrtc.shards = Some(n),
                    _ => self.err(
                        v.span(),
                        format!("`server.webrtc.shards` must be between 1 and {}", WebrtcConfig::MAX_SHARDS),
                        Some("leave it out for one per core".to_string()),
                    ),
                }
            }
            for server_spec in &webrtc.ice_servers {
                let Some(url) = self.expand("`server.webrtc.ice_servers`", &server_spec.url) else { continue };
                let scheme = url.split(':').next().unwrap_or_default();
                if !matches!(scheme, "stun" | "turn" | "turns") || !url.contains(':') {
                    self.err(
                        server_spec.url.span(),
                        format!(
                            "`server.webrtc.ice_servers`: \"{}\" is not a stun:, turn: or turns: URL",
                            server_spec.url.get_ref()
                        ),
                        Some("e.g. { url = \"stun:stun.example.com:3478\" }".to_string()),
                    );
                    continue;
                }
                let username =
                    server_spec.username.as_ref().and_then(|u| self.expand("`server.webrtc.ice_servers`", u));
                let credential =
                    server_spec.credential.as_ref().and_then(|c| self.expand("`server.webrtc.ice_servers`", c));
                if scheme != "stun" && (username.is_none() || credential.is_none()) {
                    self.err(
                        server_spec.url.span(),
                        "`server.webrtc.ice_servers`: a TURN server needs `username` and `credential`",
                        Some("add username = \"...\", credential = \"${TURN_PASSWORD}\"".to_string()),
                    );
                    continue;
                }
                server.webrtc.ice_servers.push(IceServer { url, username, credential });
            }
            for ip in &webrtc.public_ips {
                let Some(s) = self.expand("`server.webrtc.public_ips`", ip) else {
                    continue;
                };
                match s.parse::<IpAddr>() {
                    Ok(ip) => server.webrtc.public_ips.push(ip),
                    Err(_) => self.err(
                        ip.span(),
                        format!("`server.webrtc.public_ips`: \"{}\" is not an IP address", ip.get_ref()),
                        Some("list the addresses clients reach this machine at, e.g. [\"203.0.113.7\"]".to_string()),
                    ),
                }
            }
        }
        if let Some(v) = &spec.data_dir
            && let Some(s) = self.expand("`server.data_dir`", v)
        {
            if s.trim().is_empty() {
                self.err(v.span(), "`server.data_dir` is empty", Some("write a directory, e.g. \"data\"".to_string()));
            } else {
                server.data_dir = PathBuf::from(s);
            }
        }
        if let Some(limits) = &spec.limits {
            server.limits = self.server_limits(limits);
        }
        if let Some(hls) = &spec.hls {
            server.hls = self.server_hls(hls);
        }
        for proxy in &spec.trusted_proxies {
            let Some(s) = self.expand("`server.trusted_proxies`", proxy) else { continue };
            match IpNet::parse(&s) {
                Ok(net) if net.prefix == 0 => self.err(
                    proxy.span(),
                    format!("`server.trusted_proxies`: \"{s}\" trusts every address: any client could name itself"),
                    Some(TRUSTED_PROXIES_HELP.to_string()),
                ),
                Ok(net) => server.trusted_proxies.push(net),
                Err(e) => self.err(
                    proxy.span(),
                    format!("`server.trusted_proxies`: {e}"),
                    Some(TRUSTED_PROXIES_HELP.to_string()),
                ),
            }
        }
        // The TCP listeners cannot share a port on the same address.
        let mut tcp = vec![
            ("server.http", server.http, &spec.http),
            ("server.rtsp", server.rtsp, &spec.rtsp),
            ("server.rtmp", server.rtmp, &spec.rtmp),
        ];
        if let Some(addr) = server.mediamtx_api {
            tcp.push(("server.mediamtx_api", addr, &spec.mediamtx_api));
        }
        if let Some(addr) = server.https {
            tcp.push(("server.https", addr, &spec.https));
        }
        for (i, (name, addr, v)) in tcp.iter().enumerate() {
            for (other, other_addr, _) in &tcp[..i] {
                let overlap = addr.port() == other_addr.port()
                    && (addr.ip() == other_addr.ip() || addr.ip().is_unspecified() || other_addr.ip().is_unspecified());
                if overlap && addr.port() != 0 {
                    let span = v.as_ref().map_or(0..0, |v| v.span());
                    self.err(
                        span,
                        format!("`{name}` uses port {} which `{other}` already uses", addr.port()),
                        Some("give each listener its own port".to_string()),
                    );
                }
            }
        }
        server
    }

    fn server_hls(&mut self, spec: &HlsSpec) -> HlsConfig {
        let mut hls = HlsConfig::default();
        let duration =
            |cx: &mut Self, key: &str, v: &Spanned<String>, range: (Duration, Duration), slot: &mut Duration| {
                match parse_duration(v.get_ref()) {
                    Ok(d) if d >= range.0 && d <= range.1 => *slot = d,
                    Ok(_) => cx.err(
                        v.span(),
                        format!("`server.hls.{key}` must be between {:?} and {:?}", range.0, range.1),
                        Some("leave it out for the default".to_string()),
                    ),
                    Err(e) => cx.err(
                        v.span(),
                        format!("`server.hls.{key}`: {e}"),
                        Some("write a duration such as \"1s\"".to_string()),
                    ),
                }
            };
        if let Some(v) = &spec.part {
            // Below a frame's length parts would be empty; above a few seconds it is no longer low latency.
            duration(self, "part", v, (Duration::from_millis(50), Duration::from_secs(5)), &mut hls.part);
        }
        if let Some(v) = &spec.segment {
            duration(self, "segment", v, (Duration::from_millis(50), Duration::from_secs(60)), &mut hls.segment);
        }
        if hls.part > hls.segment {
            let span = spec.part.as_ref().or(spec.segment.as_ref()).map_or(0..0, |v| v.span());
            self.err(
                span,
                format!("`server.hls.part` ({:?}) is longer than `server.hls.segment` ({:?})", hls.part, hls.segment),
                Some("a segment is made of parts: make the part shorter".to_string()),
            );
        }
        if let Some(v) = &spec.segments {
            // A live playlist lasts at least three target durations (RFC 8216bis 6.2.2).
            match u32::try_from(*v.get_ref()) {
                Ok(n @ 3..=100) => hls.segments = n,
                _ => self.err(v.span(), "`server.hls.segments` must be between 3 and 100", None),
            }
        }
        hls
    }

    fn server_limits(&mut self, spec: &ServerLimitsSpec) -> ServerLimits {
        let mut limits = ServerLimits::default();
        let count = |cx: &mut Self, key: &str, v: &Spanned<i64>| match u32::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                cx.err(
                    v.span(),
                    format!("`server.limits.{key}` must be between 1 and {}", u32::MAX),
                    Some("leave it out for the default".to_string()),
                );
                None
            }
        };
        if let Some(v) = &spec.connections {
            limits.connections = count(self, "connections", v).map(u64::from);
        }
        if let Some(n) = spec.connections_per_ip.as_ref().and_then(|v| count(self, "connections_per_ip", v)) {
            limits.connections_per_ip = n;
        }
        if let Some(n) = spec.webrtc_sessions_per_ip.as_ref().and_then(|v| count(self, "webrtc_sessions_per_ip", v)) {
            limits.webrtc_sessions_per_ip = n;
        }
        for (key, v, slot) in [
            ("header_timeout", &spec.header_timeout, &mut limits.header_timeout),
            ("body_timeout", &spec.body_timeout, &mut limits.body_timeout),
        ] {
            let Some(v) = v else { continue };
            let message = match parse_duration(v.get_ref()) {
                Ok(d) if !d.is_zero() && d <= MAX_CLIENT_TIMEOUT => {
                    *slot = d;
                    continue;
                }
                Ok(d) if d.is_zero() => format!("`server.limits.{key}` cannot be zero"),
                Ok(_) => format!("`server.limits.{key}` is at most 1h: a client taking longer is not a client"),
                Err(e) => format!("`server.limits.{key}`: {e}"),
            };
            self.err(v.span(), message, Some("write a duration such as \"10s\"".to_string()));
        }
        limits
    }

    fn addr(&mut self, key: &str, v: &Spanned<String>, fallback: SocketAddr) -> SocketAddr {
        let Some(s) = self.expand(&format!("`{key}`"), v) else {
            return fallback;
        };
        match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    v.span(),
                    format!("`{key}`: \"{}\" is not an IP address and port", v.get_ref()),
                    Some(format!(
                        "write IP:PORT, e.g. \"0.0.0.0:{0}\" for every interface or \"127.0.0.1:{0}\" for this machine only",
                        fallback.port()
                    )),
                );
                fallback
            }
        }
    }

    fn plugins(
        &mut self,
        specs: BTreeMap<String, Spanned<PluginSpec>>,
        data_dir: &Path,
    ) -> BTreeMap<String, PluginConfig> {
        let mut plugins = BTreeMap::new();
        // Granted storage directories so far: no two may overlap (each one's retention deletes what it finds).
        let mut storage_dirs: Vec<(String, PathBuf)> = Vec::new();
        let mut mount_auths: Vec<(String, Spanned<String>)> = Vec::new();
        let mut mount_spans: HashMap<String, Range<usize>> = HashMap::new();
        for (name, spec) in specs {
            let span = spec.span();
            let spec = spec.into_inner();
            let ctx = format!("plugin \"{name}\"");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                self.err(span.clone(), format!("{ctx}: plugin names use letters, digits, '-' and '_'"), None);
                continue;
            }
            if name == ACCOUNTS_AUTH {
                self.err(
                    span.clone(),
                    format!("{ctx}: the name is reserved: `auth = \"{ACCOUNTS_AUTH}\"` means the [accounts]"),
                    Some("give the plugin another name".to_string()),
                );
                continue;
            }
            let Some(source_text) = self.expand(&format!("{ctx}: `source`"), &spec.source) else {
                continue;
            };
            let source = if let Some(builtin) = source_text.strip_prefix("builtin:") {
                match BuiltinPlugin::ALL.iter().find(|b| b.name() == builtin) {
                    Some(b) => PluginSource::Builtin(*b),
                    None => {
                        let names: Vec<String> =
                            BuiltinPlugin::ALL.iter().map(|b| format!("builtin:{}", b.name())).collect();
                        self.err(
                            spec.source.span(),
                            format!("{ctx}: `source`: there is no built-in plugin \"{builtin}\""),
                            Some(format!("built-ins are {}", names.join(", "))),
                        );
                        continue;
                    }
                }
            } else {
                let path = self.base_dir.join(&source_text);
                if !source_text.ends_with(".wasm") {
                    self.err(spec.source.span(), format!("{ctx}: `source`: \"{source_text}\" is neither builtin:NAME nor a .wasm file"),
                        Some("write \"builtin:auth-jwt\" (or another built-in) or the path of a plugin's .wasm component".to_string()));
                    continue;
                }
                if !path.is_file() {
                    self.err(
                        spec.source.span(),
                        format!("{ctx}: `source`: {} does not exist", path.display()),
                        Some("paths are relative to the directory of the routes file".to_string()),
                    );
                    continue;
                }
                PluginSource::File(path)
            };
            let position = self.lines.line_col(spec.config.as_ref().map_or(span.start, |c| c.span().start));
            self.plugin_positions.insert(name.clone(), position);
            let config = match spec.config.map(Spanned::into_inner) {
                Some(table) => match self.table_to_json(toml::Value::Table(table)) {
                    Ok(v) => v,
                    Err(e) => {
                        self.err(
                            span.clone(),
                            format!("{ctx}: `config`: {e}"),
                            Some("export the variable before starting sluice".to_string()),
                        );
                        continue;
                    }
                },
                None => serde_json::Value::Object(Default::default()),
            };
            let mut limits = source.default_limits();
            if let Some(l) = &spec.limits {
                if let Some(m) = &l.memory
                    && let Some(s) = self.expand(&format!("{ctx}: `limits.memory`"), m)
                {
                    match parse_size(&s) {
                        Ok(b) if b >= 1 << 20 => limits.memory_bytes = b,
                        Ok(_) => self.err(
                            m.span(),
                            format!("{ctx}: `limits.memory`: \"{s}\" is below the 1MiB minimum"),
                            Some("write at least \"1MiB\"".to_string()),
                        ),
                        Err(e) => self.err(
                            m.span(),
                            format!("{ctx}: `limits.memory`: {e}"),
                            Some("write a size such as \"16MiB\"".to_string()),
                        ),
                    }
                }
                if let Some(t) = &l.call_timeout
                    && let Some(s) = self.expand(&format!("{ctx}: `limits.call_timeout`"), t)
                {
                    match parse_duration(&s) {
                        Ok(d) if !d.is_zero() => limits.call_timeout = d,
                        Ok(_) => self.err(
                            t.span(),
                            format!("{ctx}: `limits.call_timeout` cannot be zero"),
                            Some("write a duration such as \"50ms\"".to_string()),
                        ),
                        Err(e) => self.err(
                            t.span(),
                            format!("{ctx}: `limits.call_timeout`: {e}"),
                            Some("write a duration such as \"50ms\"".to_string()),
                        ),
                    }
                }
            }
            let mut grants = PluginGrants::default();
            for var in spec.grants.iter().flat_map(|g| &g.env) {
                let v = var.get_ref();
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.err(
                        var.span(),
                        format!("{ctx}: `grants.env`: \"{v}\" is not an environment variable name"),
                        Some("list variable names, e.g. env = [\"SLUICE_JWT_SECRET\"]".to_string()),
                    );
                } else {
                    grants.env.push(v.clone());
                }
            }
            if let Some(storage) = spec.grants.and_then(|g| g.storage) {
                let dir = self.expand(&format!("{ctx}: `grants.storage.dir`"), &storage.dir);
                let quota = match &storage.quota {
                    Some(q) => {
                        match self.expand(&format!("{ctx}: `grants.storage.quota`"), q).map(|s| parse_size(&s)) {
                            Some(Ok(b)) => Some(b),
                            Some(Err(e)) => {
                                self.err(
                                    q.span(),
                                    format!("{ctx}: `grants.storage.quota`: {e}"),
                                    Some("write a size such as \"50GiB\"".to_string()),
                                );
                                None
                            }
                            None => None,
                        }
                    }
                    None => None,
                };
                let max_age = storage.max_age.as_ref().and_then(|a| {
                    let ctx = format!("{ctx}: `grants.storage.max_age`");
                    match self.expand(&ctx, a).map(|s| parse_duration(&s)) {
                        Some(Ok(d)) if !d.is_zero() => Some(d),
                        Some(Ok(_)) => {
                            self.err(a.span(), format!("{ctx} is zero: every file would be deleted"), Some("write an age such as \"30d\", or leave it out to keep files until the quota needs room".to_string()));
                            None
                        }
                        Some(Err(e)) => {
                            self.err(a.span(), format!("{ctx}: {e}"), Some("write an age such as \"30d\"".to_string()));
                            None
                        }
                        None => None,
                    }
                });
                match dir {
                    Some(d) if d.trim().is_empty() => self.err(
                        storage.dir.span(),
                        format!("{ctx}: `grants.storage.dir` is empty"),
                        Some("write a directory, e.g. \"recordings\"".to_string()),
                    ),
                    Some(d) => {
                        let dir = self.base_dir.join(d);
                        match storage_conflict(&dir, &self.base_dir, data_dir, &storage_dirs) {
                            Some(why) => self.err(
                                storage.dir.span(),
                                format!("{ctx}: `grants.storage.dir` {why}"),
                                Some("give recordings a folder of their own, e.g. \"recordings\"".to_string()),
                            ),
                            None => {
                                storage_dirs.push((name.clone(), lexical_absolute(&dir)));
                                grants.storage = Some(StorageGrant { dir, quota_bytes: quota, max_age });
                            }
                        }
                    }
                    None => {}
                }
            }
            let mut mount = self.mount(&ctx, span.clone(), &source, &spec.mount, &spec.transport);
            if let Some(http) = &spec.http {
                match (&mut mount, self.mount_path(&ctx, "http", http)) {
                    (Some(m), Some(path)) => m.http = Some(path.trim_end_matches('/').to_string()),
                    (None, Some(_)) => self.err(
                        http.span(),
                        format!("{ctx}: only a mounted signaling plugin takes `http`"),
                        Some("add `mount` too, or remove `http`".to_string()),
                    ),
                    (_, None) => {}
                }
            }
            if let Some(m) = &spec.mount {
                mount_spans.insert(name.clone(), m.span());
            }
            if let Some(auth) = spec.auth {
                mount_auths.push((name.clone(), auth));
            }
            plugins.insert(name.clone(), PluginConfig { name, source, config, limits, grants, mount });
        }
        // A mount's auth names a plugin, which may come later in the file: checked once all are known.
        for (name, auth) in mount_auths {
            let ctx = format!("plugin \"{name}\": `auth`");
            let checked = self.auth(&ctx, &auth, &plugins);
            match plugins.get_mut(&name).and_then(|p| p.mount.as_mut()) {
                Some(mount) => mount.auth = checked,
                None => self.err(
                    auth.span(),
                    format!("{ctx}: only a mounted signaling plugin takes `auth`"),
                    Some("routes name their auth plugin in their own `auth`".to_string()),
                ),
            }
        }
        let mut mounts: Vec<(&str, &str)> =
            plugins.values().filter_map(|p| p.mount.as_ref().map(|m| (p.name.as_str(), m.path.as_str()))).collect();
        mounts.sort_by_key(|(_, path)| *path);
        for pair in mounts.windows(2) {
            if pair[1].1.starts_with(pair[0].1) {
                let span = mount_spans.get(pair[1].0).cloned().unwrap_or(0..0);
                self.err(
                    span,
                    format!(
                        "plugin \"{}\": `mount` \"{}\" lies under plugin \"{}\"'s mount \"{}\"",
                        pair[1].0, pair[1].1, pair[0].0, pair[0].1
                    ),
                    Some("give every signaling plugin a path of its own".to_string()),
                );
            }
        }
        plugins
    }

    /// A signaling plugin's `mount` and `transport`; other plugins may not have them.
    fn mount(
        &mut self,
        ctx: &str,
        table: Range<usize>,
        source: &PluginSource,
        mount: &Option<Spanned<String>>,
        transport: &Option<Spanned<String>>,
    ) -> Option<Mount> {
        let world = source.known_world();
        if world.is_some_and(|w| w != PluginWorld::Signaling) {
            for key in [mount, transport].into_iter().flatten() {
                self.err(
                    key.span(),
                    format!("{ctx}: only signaling plugins are mounted (`mount`, `transport`)"),
                    Some("remove the key".to_string()),
                );
            }
            return None;
        }
        let Some(mount) = mount else {
            if world == Some(PluginWorld::Signaling) {
                self.err(
                    table,
                    format!("{ctx}: a signaling plugin needs `mount`, the path its clients connect to"),
                    Some("add mount = \"/socket.io/\" (or \"/ws/NAME\" for a plain WebSocket plugin)".to_string()),
                );
            }
            return None;
        };
        let path = self.mount_path(ctx, "mount", mount)?;
        let transport = match transport.as_ref().map(|t| (t, t.get_ref().as_str())) {
            None => match source {
                PluginSource::Builtin(b) => b.default_transport(),
                PluginSource::File(_) => SignalTransport::SocketIo,
            },
            Some((_, "socket.io")) => SignalTransport::SocketIo,
            Some((_, "websocket")) => SignalTransport::WebSocket,
            Some((t, other)) => {
                self.err(
                    t.span(),
                    format!("{ctx}: `transport` \"{other}\" is not one the router speaks"),
                    Some("write \"socket.io\" or \"websocket\"".to_string()),
                );
                return None;
            }
        };
        Some(Mount { path, transport, http: None, auth: None })
    }

    /// A path under the HTTP listener a plugin may take (ends with '/'): not the root, not the router's own.
    fn mount_path(&mut self, ctx: &str, key: &str, value: &Spanned<String>) -> Option<String> {
        const RESERVED: [&str; 3] = ["/v1/", "/metrics/", "/healthz/"];
        let path = value.get_ref().trim();
        let path = if path.ends_with('/') { path.to_string() } else { format!("{path}/") };
        if !path.starts_with('/') || path == "/" || path.contains(['?', '#', ' ', '{', '}', '*']) {
            self.err(
                value.span(),
                format!("{ctx}: `{key}` \"{}\" is not a path under the HTTP listener", value.get_ref()),
                Some("write a path such as \"/socket.io/\" or \"/ws/live\"".to_string()),
            );
            return None;
        }
        if RESERVED.iter().any(|r| path.starts_with(r)) {
            self.err(
                value.span(),
                format!("{ctx}: `{key}` \"{}\" is taken by the router (/v1, /metrics, /healthz)", value.get_ref()),
                Some("pick another path, e.g. \"/socket.io/\"".to_string()),
            );
            return None;
        }
        Some(path)
    }

    /// Converts a TOML value to JSON, expanding `${VAR}` in every string.
    fn table_to_json(&self, v: toml::Value) -> Result<serde_json::Value, String> {
        Ok(match v {
            toml::Value::String(s) => serde_json::Value::String(expand(&s, self.env)?),
            toml::Value::Integer(i) => serde_json::Value::from(i),
            toml::Value::Float(f) => serde_json::Value::from(f),
            toml::Value::Boolean(b) => serde_json::Value::Bool(b),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(|v| self.table_to_json(v)).collect::<Result<_, _>>()?)
            }
            toml::Value::Table(t) => serde_json::Value::Object(
                t.into_iter().map(|(k, v)| Ok((k, self.table_to_json(v)?))).collect::<Result<_, String>>()?,
            ),
        })
    }

    /// `[defaults] anonymous`: what anyone may do on routes without an auth plugin. Unset: everything, as
    /// routes.toml's `auth = "none"` promises.
    fn anonymous(&mut self, spec: Option<&Spanned<Vec<Spanned<String>>>>) -> Vec<AnonymousAction> {
        let Some(list) = spec else { return AnonymousAction::ALL.to_vec() };
        let mut out = Vec::new();
        for item in list.get_ref() {
            match AnonymousAction::ALL.iter().find(|a| a.name() == item.get_ref()) {
                Some(a) if !out.contains(a) => out.push(*a),
                Some(_) => {}
                None => self.err(
                    item.span(),
                    format!("`defaults.anonymous`: \"{}\" is not an action", item.get_ref()),
                    Some("actions are \"read\", \"publish\" and \"playback\"".to_string()),
                ),
            }
        }
        out
    }

    fn defaults(&mut self, spec: Option<DefaultsSpec>, plugins: &BTreeMap<String, PluginConfig>) -> Defaults {
        let Some(spec) = spec else {
            return Defaults::default();
        };
        Defaults {
            to: spec.to,
            auth: spec.auth.as_ref().map(|a| self.auth("`defaults.auth`", a, plugins)),
            on_demand: spec.on_demand,
            idle_timeout: spec.idle_timeout.as_ref().and_then(|t| self.idle_timeout("`defaults.idle_timeout`", t)),
            max_readers: spec.max_readers.as_ref().and_then(|m| self.max_readers("`defaults.max_readers`", m)),
            write_interval: spec
                .write_interval
                .as_ref()
                .and_then(|t| self.write_interval("`defaults.write_interval`", t)),
        }
    }

    fn auth(&mut self, ctx: &str, v: &Spanned<String>, plugins: &BTreeMap<String, PluginConfig>) -> Option<String> {
        let name = v.get_ref();
        if name == "none" {
            return None;
        }
        if name == ACCOUNTS_AUTH {
            if !self.accounts_enabled {
                self.err(
                    v.span(),
                    format!("{ctx}: \"{ACCOUNTS_AUTH}\" needs an [accounts] table"),
                    Some("add [accounts] to keep users and cameras, or name an auth plugin".to_string()),
                );
            }
            return Some(name.clone());
        }
        let auth_plugins: Vec<&str> = plugins
            .values()
            .filter(|p| p.source.known_world().is_none_or(|w| w == PluginWorld::Auth))
            .map(|p| p.name.as_str())
            .collect();
        match plugins.get(name) {
            Some(p) if p.source.known_world().is_some_and(|w| w != PluginWorld::Auth) => {
                self.err(
                    v.span(),
                    format!("{ctx}: plugin \"{name}\" is not an auth plugin"),
                    Some(auth_help(&auth_plugins)),
                );
            }
            Some(_) => {}
            None => self.err(v.span(), format!("{ctx}: there is no plugin \"{name}\""), Some(auth_help(&auth_plugins))),
        }
        Some(name.clone())
    }

    fn accounts(&mut self, spec: &Spanned<AccountsSpec>) -> AccountsConfig {
        let spec = spec.get_ref();
        let registration = match spec.registration.as_ref().map(|r| (r.get_ref().as_str(), r)) {
            Some(("open", _)) => Registration::Open,
            None | Some(("admin", _)) => Registration::Admin,
            Some((other, r)) => {
                self.err(
                    r.span(),
                    format!("`accounts.registration`: \"{other}\" is not a registration policy"),
                    Some("write \"open\" (anyone may register) or \"admin\" (only an admin adds people)".into()),
                );
                Registration::Open
            }
        };
        let token_ttl = match &spec.token_ttl {
            None => DEFAULT_TOKEN_TTL,
            Some(v) => match parse_duration(v.get_ref()) {
                Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(366 * 86_400) => d,
                Ok(_) => {
                    self.err(v.span(), "`accounts.token_ttl`: between 1m and 366d", Some("e.g. \"24h\"".into()));
                    DEFAULT_TOKEN_TTL
                }
                Err(e) => {
                    self.err(v.span(), format!("`accounts.token_ttl`: {e}"), Some("e.g. \"24h\"".into()));
                    DEFAULT_TOKEN_TTL
                }
            },
        };
        // Checked against the routes once they are read (see `camera_template`).
        let cameras = spec.cameras.as_ref().and_then(|c| {
            let prefix = c.get_ref().strip_suffix("/*").and_then(|p| RouteName::parse(p).ok());
            if prefix.is_none() {
                self.err(
                    c.span(),
                    format!("`accounts.cameras`: \"{}\" is not a template name", c.get_ref()),
                    Some("name a template route of this file, e.g. \"cameras/*\"".into()),
                );
            }
            prefix.map(|p| RouteName::template(&p))
        });
        AccountsConfig { registration, token_ttl, cameras }
    }

    /// The accounts answer `/api/auth` and `/api/cameras`: no signaling plugin may take those paths from them.
    fn accounts_paths_free(&mut self, plugins: &BTreeMap<String, PluginConfig>) {
        const PATHS: [&str; 2] = ["/api/auth", "/api/cameras"];
        for (name, plugin) in plugins {
            let Some(mount) = &plugin.mount else { continue };
            for prefix in std::iter::once(mount.path.as_str()).chain(mount.http.as_deref()) {
                let prefix = prefix.trim_end_matches('/');
                let Some(taken) = PATHS.iter().find(|p| p.starts_with(prefix) || prefix.starts_with(**p)) else {
                    continue;
                };
                let at = self.plugin_positions.get(name).copied().unwrap_or((1, 1));
                self.errors.push(ConfigError::at_line_col(
                    self.file,
                    at,
                    format!("plugin \"{name}\": \"{prefix}\" overlaps {taken}, which the [accounts] answer"),
                    Some(format!("give the plugin another path (e.g. \"/signal{prefix}\"), or remove [accounts]")),
                ));
            }
        }
    }

    /// `accounts.cameras` names a template of the file that takes publishers and asks the accounts.
    fn camera_template(
        &mut self,
        spec: &Spanned<AccountsSpec>,
        accounts: &AccountsConfig,
        routes: &[Arc<RouteConfig>],
    ) {
        let (Some(name), Some(at)) = (&accounts.cameras, &spec.get_ref().cameras) else { return };
        let example = format!(
            "[[route]]\nname = \"{name}\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp\"]\nauth = \"{ACCOUNTS_AUTH}\""
        );
        match routes.iter().find(|r| &r.name == name) {
            None => self.err(
                at.span(),
                format!("`accounts.cameras`: there is no template route \"{name}\""),
                Some(format!("add it:\n{example}")),
            ),
            Some(t) if !matches!(t.from, Source::Publish { .. }) => self.err(
                at.span(),
                format!(
                    "`accounts.cameras`: template \"{name}\" does not take publishers (cameras publish with their keys)"
                ),
                Some("give it `from = \"rtmp\"`, \"whip\" or \"rtsp\"".into()),
            ),
            Some(t) if t.auth.as_deref() != Some(ACCOUNTS_AUTH) => self.err(
                at.span(),
                format!("`accounts.cameras`: template \"{name}\" must have `auth = \"{ACCOUNTS_AUTH}\"`"),
                Some(
                    "its publishers present their camera's key and viewers their login; the accounts decide both"
                        .into(),
                ),
            ),
            Some(_) => {}
        }
        // A route of a camera's name would take its publisher (exact names win over templates): only with the
        // accounts deciding.
        let prefix = format!("{}/", name.template_prefix().unwrap_or_default());
        for route in routes.iter().filter(|r| r.name.as_str().starts_with(&prefix) && &r.name != name) {
            if route.auth.as_deref() != Some(ACCOUNTS_AUTH) {
                self.err(
                    at.span(),
                    format!("`accounts.cameras`: route \"{}\" is under the cameras' prefix but not `auth = \"{ACCOUNTS_AUTH}\"`: it would take a camera's publisher and viewers", route.name),
                    Some(format!("rename it, or give it `auth = \"{ACCOUNTS_AUTH}\"`")),
                );
            }
        }
    }

    fn idle_timeout(&mut self, ctx: &str, v: &Spanned<String>) -> Option<Duration> {
        match parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    v.span(),
                    format!("{ctx}: {e}"),
                    Some("write a duration such as \"10s\" or \"2m\"".to_string()),
                );
                None
            }
        }
    }

    fn write_interval(&mut self, ctx: &str, v: &Spanned<String>) -> Option<Duration> {
        let help = Some("write a duration such as \"50ms\", or \"0ms\" to send every frame as it comes".to_string());
        match parse_duration(v.get_ref()) {
            Ok(d) if d > MAX_RTMP_WRITE_INTERVAL => {
                let max = MAX_RTMP_WRITE_INTERVAL.as_millis();
                self.err(v.span(), format!("{ctx}: at most {max}ms (players would wait for frames they need)"), help);
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(v.span(), format!("{ctx}: {e}"), help);
                None
            }
        }
    }

    /// `rtsp_transport` and `rtsp_quirks`, checked against retina's policy names.
    fn rtsp_options(&mut self, ctx: &str, spec: &RouteSpec, from: Option<&Source>) -> Option<RtspOptions> {
        let pulls_rtsp = matches!(from, Some(Source::Pull { url }) if url.0.scheme().starts_with("rtsp"));
        if !pulls_rtsp {
            for (key, span) in [
                ("rtsp_transport", spec.rtsp_transport.as_ref().map(Spanned::span)),
                ("rtsp_quirks", spec.rtsp_quirks.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.err(
                        span,
                        format!("{ctx}: `{key}` applies to rtsp:// sources only"),
                        Some(format!("remove `{key}`")),
                    );
                }
            }
            return None;
        }
        let mut o = RtspOptions::default();
        if let Some(t) = &spec.rtsp_transport {
            match t.get_ref().as_str() {
                "tcp" | "udp" => o.transport = t.get_ref().clone(),
                other => self.err(
                    t.span(),
                    format!("{ctx}: `rtsp_transport`: \"{other}\" is not a transport"),
                    Some("write \"tcp\" (interleaved, the default) or \"udp\"".to_string()),
                ),
            }
        }
        if let Some(q) = &spec.rtsp_quirks {
            let q = q.get_ref();
            use retina::client as rc;
            type Check = fn(&str) -> bool;
            /// (key, value as written, where it goes, validity check, the values allowed).
            type Field<'a> = (&'a str, &'a Option<Spanned<String>>, &'a mut String, Check, &'a str);
            let fields: [Field<'_>; 6] = [
                (
                    "teardown",
                    &q.teardown,
                    &mut o.teardown,
                    |v| v.parse::<rc::TeardownPolicy>().is_ok(),
                    "auto, always, never",
                ),
                (
                    "initial_timestamp",
                    &q.initial_timestamp,
                    &mut o.initial_timestamp,
                    |v| v.parse::<rc::InitialTimestampPolicy>().is_ok(),
                    "default, require, ignore, permissive",
                ),
                (
                    "initial_seq",
                    &q.initial_seq,
                    &mut o.initial_seq,
                    |v| v.parse::<rc::InitialSequenceNumberPolicy>().is_ok(),
                    "default, respect, ignore-suspicious-values, ignore",
                ),
                (
                    "unknown_rtcp_ssrc",
                    &q.unknown_rtcp_ssrc,
                    &mut o.unknown_rtcp_ssrc,
                    |v| v.parse::<rc::UnknownRtcpSsrcPolicy>().is_ok(),
                    "default, abort-session, drop-packets, process-packets",
                ),
                (
                    "unassigned_channel_data",
                    &q.unassigned_channel_data,
                    &mut o.unassigned_channel_data,
                    |v| v.parse::<rc::UnassignedChannelDataPolicy>().is_ok(),
                    "auto, assume-stale-session, error, ignore",
                ),
                (
                    "session_id",
                    &q.session_id,
                    &mut o.session_id,
                    |v| v.parse::<rc::SessionIdPolicy>().is_ok(),
                    "default, require-match, use-first",
                ),
            ];
            let mut errors = Vec::new();
            for (key, value, slot, valid, allowed) in fields {
                if let Some(v) = value {
                    if valid(v.get_ref()) {
                        *slot = v.get_ref().clone();
                    } else {
                        errors.push((
                            v.span(),
                            format!("{ctx}: `rtsp_quirks.{key}`: \"{}\" is not a policy", v.get_ref()),
                            format!("write one of {allowed}"),
                        ));
                    }
                }
            }
            for (span, message, help) in errors {
                self.err(span, message, Some(help));
            }
        }
        Some(o)
    }

    fn max_readers(&mut self, ctx: &str, v: &Spanned<i64>) -> Option<u32> {
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.err(
                    v.span(),
                    format!("{ctx} must be between 1 and {}", u32::MAX),
                    Some("leave it out for no limit".to_string()),
                );
                None
            }
        }
    }

    fn routes(
        &mut self,
        specs: Vec<Spanned<RouteSpec>>,
        defaults: &Defaults,
        plugins: &BTreeMap<String, PluginConfig>,
        server: &ServerConfig,
    ) -> Vec<Arc<RouteConfig>> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut routes = Vec::with_capacity(specs.len());
        for spec in specs {
            let spec = spec.into_inner();
            let raw_name = spec.name.get_ref().clone();
            let parsed = match raw_name.strip_suffix("/*") {
                Some(prefix) => RouteName::parse(prefix).map(|p| RouteName::template(&p)),
                None if raw_name == RouteName::CATCH_ALL => Ok(RouteName::catch_all()),
                None => RouteName::parse(&raw_name),
            };
            let name = match parsed {
                Ok(n) => n,
                Err(e) => {
                    self.err(
                        spec.name.span(),
                        format!("`name`: {e}"),
                        Some(
                            "use a name like \"front-door\" or \"cams/front-door\"; \"live/*\" is a template"
                                .to_string(),
                        ),
                    );
                    continue;
                }
            };
            let line = self.lines.line_col(spec.name.span().start).0;
            if let Some(first) = seen.insert(raw_name.clone(), line) {
                self.err(
                    spec.name.span(),
                    format!("route \"{raw_name}\" is defined twice (first on line {first})"),
                    Some("give each route its own name; the name is its path in every protocol".to_string()),
                );
                continue;
            }
            if let Some(route) = self.route(name, spec, defaults, plugins, server) {
                routes.push(Arc::new(route));
            }
        }
        routes
    }

    fn route(
        &mut self,
        name: RouteName,
        spec: RouteSpec,
        defaults: &Defaults,
        plugins: &BTreeMap<String, PluginConfig>,
        server: &ServerConfig,
    ) -> Option<RouteConfig> {
        let ctx = format!("route \"{name}\"");
        let errors_before = self.errors.len();
        let is_template = name.template_prefix().is_some();
        let mut template_from = None;
        let from = match self.expand_with(&format!("{ctx}: `from`"), &spec.from, true) {
            Some(s) if s.contains(TEMPLATE_CAPTURE) && !is_template => {
                self.err(
                    spec.from.span(),
                    format!(
                        "{ctx}: `from`: {TEMPLATE_CAPTURE} is the capture of a template route, and this is not one"
                    ),
                    Some(format!(
                        "name the route \"PREFIX/*\" to make a route per name under PREFIX, with {TEMPLATE_CAPTURE} \
                         the last segment of that name"
                    )),
                );
                None
            }
            // In the path only: the host a route is pulled from is the file's to choose, not a reader's.
            Some(s) if s.contains(TEMPLATE_CAPTURE) && !capture_in_path(&s) => {
                self.err(
                    spec.from.span(),
                    format!("{ctx}: `from`: {TEMPLATE_CAPTURE} may stand only in the URL's path"),
                    Some("write the host (and any credentials) in full, e.g. \"rtsp://nvr.local/ch${1}\"".into()),
                );
                None
            }
            Some(s) if s.contains(TEMPLATE_CAPTURE) => {
                // Checked with a capture in place: the segments `*` matches are valid in any URL.
                let source = self.parse_source(&ctx, &s.replace(TEMPLATE_CAPTURE, "capture"), &spec.from);
                template_from = Some(s);
                source
            }
            Some(s) => self.parse_source(&ctx, &s, &spec.from),
            None => None,
        };

        let to_specs = match (&spec.to, &defaults.to) {
            (Some(to), _) => Some((to.get_ref().clone(), to.span())),
            (None, Some(to)) => Some((to.get_ref().clone(), to.span())),
            (None, None) => None,
        };
        let mut to = Vec::new();
        match to_specs {
            None => self.err(
                spec.from.span(),
                format!("{ctx} has no `to`: nothing would read it"),
                Some("add `to = [\"whep\"]` (or set `to` in [defaults])".to_string()),
            ),
            Some((list, span)) if list.is_empty() => {
                self.err(span, format!("{ctx}: `to` is empty: nothing would read it"), Some(OUTPUTS_HELP.to_string()))
            }
            Some((list, _)) => {
                for entry in &list {
                    if let Some(output) = self.output(&ctx, &name, entry, from.as_ref(), plugins, server) {
                        if to.contains(&output) {
                            self.err(
                                entry.span(),
                                format!("{ctx}: `to` lists \"{output}\" twice"),
                                Some("remove one".to_string()),
                            );
                        } else {
                            to.push(output);
                        }
                    }
                }
            }
        }

        let auth = match &spec.auth {
            Some(a) => self.auth(&format!("{ctx}: `auth`"), a, plugins),
            None => defaults.auth.clone().flatten(),
        };
        let on_demand = match (&spec.on_demand, &from) {
            (Some(v), Some(Source::Publish { protocol })) if *v.get_ref() => {
                self.err(
                    v.span(),
                    format!(
                        "{ctx}: `on_demand` needs a source the router pulls, not {}",
                        match protocol {
                            PublishProtocol::Any => "publishers".to_string(),
                            p => format!("a {} publisher", p.as_str()),
                        }
                    ),
                    Some("remove `on_demand`: a publish route simply waits for its publisher".to_string()),
                );
                false
            }
            (Some(v), _) => *v.get_ref(),
            (None, Some(Source::Publish { .. })) => false,
            (None, _) => defaults.on_demand.unwrap_or(false),
        };
        let max_readers = match &spec.max_readers {
            Some(m) => self.max_readers(&format!("{ctx}: `max_readers`"), m),
            None => defaults.max_readers,
        };
        let idle_timeout = match &spec.idle_timeout {
            Some(t) => self.idle_timeout(&format!("{ctx}: `idle_timeout`"), t),
            None => defaults.idle_timeout,
        }
        .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        let rtsp = self.rtsp_options(&ctx, &spec, from.as_ref());
        let publishes = matches!(from, Some(Source::Publish { .. }));
        let publish_key = match &spec.publish_key {
            Some(k)
                if !matches!(
                    from,
                    Some(Source::Publish { protocol: PublishProtocol::Rtmp | PublishProtocol::Rtsp })
                ) =>
            {
                self.err(
                    k.span(),
                    format!("{ctx}: `publish_key` applies to `from = \"rtmp\"` and `from = \"rtsp\"` routes"),
                    Some("remove `publish_key`".to_string()),
                );
                None
            }
            Some(k) => match self.expand(&format!("{ctx}: `publish_key`"), k) {
                Some(v) if v.is_empty() => {
                    self.err(
                        k.span(),
                        format!("{ctx}: `publish_key` is empty"),
                        Some("leave it out to accept any key".to_string()),
                    );
                    None
                }
                v => v,
            },
            None => None,
        };
        let override_publisher = match &spec.override_publisher {
            Some(v) if !publishes => {
                self.err(
                    v.span(),
                    format!("{ctx}: `override_publisher` applies to routes that take publishers"),
                    Some("remove it".to_string()),
                );
                false
            }
            Some(v) => *v.get_ref(),
            None => false,
        };
        let write_interval = match &spec.write_interval {
            // A missing or broken `to` is reported already.
            Some(_) if to.is_empty() => None,
            Some(v) if !to.contains(&Output::Rtmp) && !to.contains(&Output::Rtsp) => {
                self.err(
                    v.span(),
                    format!("{ctx}: `write_interval` applies to routes with \"rtmp\" or \"rtsp\" in `to`"),
                    Some("remove it, or add \"rtmp\" or \"rtsp\" to `to`".to_string()),
                );
                None
            }
            Some(v) => self.write_interval(&format!("{ctx}: `write_interval`"), v),
            None => defaults.write_interval,
        }
        .unwrap_or(DEFAULT_WRITE_INTERVAL);
        if is_template && matches!(from, Some(Source::Pull { .. })) && !on_demand {
            self.err(
                spec.from.span(),
                format!("{ctx}: a template that pulls its source must be `on_demand`"),
                Some(
                    "add `on_demand = true`: its routes are made when a reader asks for one, and end when idle".into(),
                ),
            );
        }
        if self.errors.len() != errors_before {
            return None;
        }
        Some(RouteConfig {
            template: is_template.then_some(Template { from: template_from }),
            instance_of: None,
            name,
            from: from?,
            to,
            auth,
            on_demand,
            idle_timeout,
            max_readers,
            rtsp,
            publish_key,
            override_publisher,
            write_interval,
        })
    }

    /// `from`, `${VAR}` expanded into `s`; `v` is where it is in the file.
    fn parse_source(&mut self, ctx: &str, s: &str, v: &Spanned<String>) -> Option<Source> {
        match s {
            "demo" => return Some(Source::Demo),
            "whip" => {
                return Some(Source::Publish { protocol: PublishProtocol::Whip });
            }
            "rtmp" => {
                return Some(Source::Publish { protocol: PublishProtocol::Rtmp });
            }
            "rtsp" => {
                return Some(Source::Publish { protocol: PublishProtocol::Rtsp });
            }
            "publisher" => {
                return Some(Source::Publish { protocol: PublishProtocol::Any });
            }
            "whep" => {
                self.err(
                    v.span(),
                    format!("{ctx}: `from`: \"whep\" is a playback protocol, not a source"),
                    Some(format!("to let browsers play this route put \"whep\" in `to`; for `from` {SOURCES_HELP}")),
                );
                return None;
            }
            _ => {}
        }
        if !s.contains("://") {
            self.err(
                v.span(),
                format!("{ctx}: `from`: \"{}\" is not a source", v.get_ref()),
                Some(SOURCES_HELP.to_string()),
            );
            return None;
        }
        match Url::parse(s) {
            Ok(url)
                if matches!(url.scheme(), "rtsp" | "rtsps" | "rtmp" | "rtmps")
                    && url.host_str().is_some_and(|h| !h.is_empty()) =>
            {
                if !rtmp_path_complete(&url) {
                    self.err(
                        v.span(),
                        format!("{ctx}: `from`: \"{}\" names no stream to play", redact_url(&url)),
                        Some(RTMP_PATH_HELP.to_string()),
                    );
                    return None;
                }
                Some(Source::Pull { url: PullUrl(url) })
            }
            Ok(url) if matches!(url.scheme(), "rtsp" | "rtsps" | "rtmp" | "rtmps") => {
                self.err(
                    v.span(),
                    format!("{ctx}: `from`: \"{}\" has no host", redact_url(&url)),
                    Some("write the camera or server address, e.g. \"rtsp://192.168.1.10:554/stream1\"".to_string()),
                );
                None
            }
            Ok(url) => {
                self.err(
                    v.span(),
                    format!("{ctx}: `from`: cannot pull from {}:// URLs", url.scheme()),
                    Some(SOURCES_HELP.to_string()),
                );
                None
            }
            Err(e) => {
                self.err(v.span(), format!("{ctx}: `from`: not a valid URL ({e})"), Some(SOURCES_HELP.to_string()));
                None
            }
        }
    }

    fn output(
        &mut self,
        ctx: &str,
        name: &RouteName,
        v: &Spanned<String>,
        from: Option<&Source>,
        plugins: &BTreeMap<String, PluginConfig>,
        server: &ServerConfig,
    ) -> Option<Output> {
        let s = self.expand(&format!("{ctx}: `to`"), v)?;
        match s.as_str() {
            "whep" => return Some(Output::Whep),
            "hls" => return Some(Output::Hls),
            "rtsp" => return Some(Output::Rtsp),
            "rtmp" => return Some(Output::Rtmp),
            "whip" | "demo" => {
                self.err(
                    v.span(),
                    format!("{ctx}: `to`: \"{}\" is a source, not an output", v.get_ref()),
                    Some(format!("put it in `from`; {OUTPUTS_HELP}")),
                );
                return None;
            }
            _ => {}
        }
        if let Some(plugin) = s.strip_prefix("record:") {
            // Only plugins known to be sinks are suggested: a .wasm file's kind shows only when it loads, and
            // suggesting an auth plugin for recording sends the admin the wrong way.
            let named = |world: Option<PluginWorld>| -> Vec<&str> {
                plugins.values().filter(|p| p.source.known_world() == world).map(|p| p.name.as_str()).collect()
            };
            let (sinks, files) = (named(Some(PluginWorld::Sink)), named(None));
            let help = match (sinks.is_empty(), files.is_empty()) {
                (true, true) => "declare one first: [plugins.mp4] with source = \"builtin:record-mp4\"".to_string(),
                (true, false) => format!(
                    "declare one first: [plugins.mp4] with source = \"builtin:record-mp4\" (or name one of the \
                     .wasm plugins here if it is a sink: {})",
                    files.join(", ")
                ),
                (false, _) => format!("sink plugins here: {}", sinks.join(", ")),
            };
            return match plugins.get(plugin) {
                Some(p) if p.source.known_world().is_some_and(|w| w != PluginWorld::Sink) => {
                    self.err(
                        v.span(),
                        format!("{ctx}: `to`: plugin \"{plugin}\" cannot record: it is not a sink plugin"),
                        Some(help),
                    );
                    None
                }
                Some(_) => Some(Output::Record { plugin: plugin.to_string() }),
                None => {
                    self.err(
                        v.span(),
                        format!("{ctx}: `to`: there is no plugin \"{plugin}\" to record with"),
                        Some(help),
                    );
                    None
                }
            };
        }
        if !s.contains("://") {
            self.err(
                v.span(),
                format!("{ctx}: `to`: \"{}\" is not an output", v.get_ref()),
                Some(OUTPUTS_HELP.to_string()),
            );
            return None;
        }
        let url = match Url::parse(&s) {
            Ok(u)
                if matches!(u.scheme(), "rtmp" | "rtmps" | "rtsp" | "rtsps")
                    && u.host_str().is_some_and(|h| !h.is_empty()) =>
            {
                u
            }
            Ok(u) => {
                self.err(
                    v.span(),
                    format!("{ctx}: `to`: cannot push to \"{}\"", redact_push_url(&u)),
                    Some(OUTPUTS_HELP.to_string()),
                );
                return None;
            }
            Err(e) => {
                self.err(v.span(), format!("{ctx}: `to`: not a valid URL ({e})"), Some(OUTPUTS_HELP.to_string()));
                return None;
            }
        };
        if let Some(Source::Pull { url: pull }) = from
            && pull.0 == url
        {
            self.err(
                v.span(),
                format!("{ctx}: `to`: pushing to the URL this route pulls from would feed the route its own output"),
                Some("push to another server or path".to_string()),
            );
            return None;
        }
        if targets_self(&url, name, server) {
            self.err(
                v.span(),
                format!(
                    "{ctx}: `to`: \"{}\" is this route on this router: it would feed itself",
                    redact_push_url(&url)
                ),
                Some("to serve it to readers here, write \"rtmp\" or \"rtsp\" instead of a URL".to_string()),
            );
            return None;
        }
        if !rtmp_path_complete(&url) {
            self.err(
                v.span(),
                format!("{ctx}: `to`: \"{}\" names no stream to publish", redact_push_url(&url)),
                Some(RTMP_PATH_HELP.to_string()),
            );
            return None;
        }
        Some(Output::Push(url))
    }
}

fn auth_help(auth_plugins: &[&str]) -> String {
    if auth_plugins.is_empty() {
        "declare one first, e.g. [plugins.jwt] with source = \"builtin:auth-jwt\"; or write auth = \"none\"".to_string()
    } else {
        format!("auth plugins here: {}; or write auth = \"none\"", auth_plugins.join(", "))
    }
}

const TRUSTED_PROXIES_HELP: &str =
    "list your reverse proxies' addresses or ranges, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]";

const RTMP_PATH_HELP: &str = "RTMP URLs name an application and a stream: write rtmp://host[:port]/APP/STREAM, e.g. rtmp://example.com/live/cam1";

/// RTMP addresses a stream by application and stream name, both required; other schemes pass.
fn rtmp_path_complete(url: &Url) -> bool {
    if !matches!(url.scheme(), "rtmp" | "rtmps") {
        return true;
    }
    let mut parts = url.path().trim_start_matches('/').splitn(2, '/');
    let (app, stream) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    !app.is_empty() && (!stream.trim_matches('/').is_empty() || url.query().is_some())
}

/// Whether a push URL points at this very route on this router (loopback host, our port, our name).
fn targets_self(url: &Url, name: &RouteName, server: &ServerConfig) -> bool {
    let port = match url.scheme() {
        "rtmp" => server.rtmp.port(),
        "rtsp" => server.rtsp.port(),
        _ => return false,
    };
    // rtmp:// and rtsp:// are not "special" schemes to the URL standard, so IPv4 hosts arrive as domains.
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let local = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    let default_port = if url.scheme() == "rtmp" { 1935 } else { 554 };
    let path = url.path().trim_matches('/');
    local
        && url.port().unwrap_or(default_port) == port
        && (path == name.as_str() || path.starts_with(&format!("{name}/")))
}

/// Why a granted storage directory cannot be used, if it cannot: the storage treats every file under it as a
/// recording (retention deletes the oldest), so it must not hold the routes file, the data directory, or another
/// plugin's storage.
fn storage_conflict(dir: &Path, routes_dir: &Path, data_dir: &Path, others: &[(String, PathBuf)]) -> Option<String> {
    let dir = lexical_absolute(dir);
    if lexical_absolute(routes_dir).starts_with(&dir) {
        return Some(format!("({}) holds routes.toml: retention would delete it", dir.display()));
    }
    if lexical_absolute(data_dir).starts_with(&dir) {
        return Some(format!("({}) holds `server.data_dir`: retention would delete the database", dir.display()));
    }
    others.iter().find(|(_, other)| other.starts_with(&dir) || dir.starts_with(other)).map(|(name, other)| {
        format!(
            "({}) overlaps plugin \"{name}\"'s ({}): each would delete the other's files",
            dir.display(),
            other.display()
        )
    })
}

/// `path` made absolute against the working directory, with `.` and `..` resolved by name: grants are compared
/// before their directories exist.
fn lexical_absolute(path: &Path) -> PathBuf {
    let joined = std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::MAX_ROUTES;
    use crate::config::model::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "STUDIO_KEY" => Some("live_123".into()),
            "CAM_PASS" => Some("hunter2".into()),
            _ => None,
        }
    }

    fn check(text: &str) -> Result<RouteTable, String> {
        crate::config::parse(text, "routes.toml", &env).map_err(|e| e.to_string())
    }

    fn error(text: &str) -> String {
        check(text).expect_err("invalid")
    }

    #[test]
    fn storage_grants_keep_clear_of_the_config_the_data_and_each_other() {
        let grant = |name: &str, dir: &str| {
            format!(
                "[plugins.{name}]\nsource = \"builtin:record-mp4\"\ngrants = {{ storage = {{ dir = \"{dir}\" }} }}\n"
            )
        };
        let e = error(&grant("a", "."));
        assert!(e.contains("holds routes.toml: retention would delete it"), "{e}");
        let e = error(&grant("a", "sub/.."));
        assert!(e.contains("holds routes.toml"), "{e}");
        let e = error(&format!("[server]\ndata_dir = \"rec/data\"\n\n{}", grant("a", "rec")));
        assert!(e.contains("holds `server.data_dir`"), "{e}");
        let e = error(&format!("{}{}", grant("a", "rec"), grant("b", "rec/cam")));
        assert!(e.contains("overlaps plugin \"a\""), "{e}");
        check(&format!("{}{}", grant("a", "rec/a"), grant("b", "rec/b"))).expect("side by side is fine");
        check(&format!("[server]\ndata_dir = \"data\"\n\n{}", grant("a", "data/recordings"))).expect("inside data_dir");
    }

    #[test]
    fn a_full_file_validates_into_the_model() {
        let table = check(
            r#"
[server]
http = "127.0.0.1:9000"
webrtc = { udp = "0.0.0.0:9001", public_ips = ["203.0.113.7"], shards = 3 }

[defaults]
to = ["whep"]
auth = "jwt"
max_readers = 50

[plugins.jwt]
source = "builtin:auth-jwt"
config = { secret_env = "SLUICE_JWT_SECRET", issuer = "${STUDIO_KEY}" }
limits = { memory = "8MiB", call_timeout = "20ms" }

[plugins.mp4]
source = "builtin:record-mp4"
grants = { storage = { dir = "recordings", quota = "50GiB" } }

[[route]]
name = "frontdoor"
from = "rtsp://admin:${CAM_PASS}@192.168.1.10:554/stream1"
to = ["whep", "rtsp", "record:mp4"]
on_demand = true

[[route]]
name = "studio"
from = "rtmp"
to = ["whep", "rtmp://live.example.com/app/${STUDIO_KEY}"]
auth = "none"
"#,
        )
        .expect("valid");
        assert_eq!(table.server.http.to_string(), "127.0.0.1:9000");
        assert_eq!(table.server.webrtc.public_ips.len(), 1);
        assert_eq!((table.server.webrtc.shards, table.server.webrtc.shard_count()), (Some(3), 3));
        assert_eq!(table.plugins["jwt"].limits.memory_bytes, 8 << 20);
        assert_eq!(table.plugins["jwt"].config["issuer"], "live_123");
        let front = &table.routes[0];
        assert_eq!(front.auth.as_deref(), Some("jwt"), "inherited from [defaults]");
        assert_eq!(front.max_readers, Some(50));
        assert!(front.on_demand);
        assert_eq!(front.from.redacted(), "rtsp://admin:***@192.168.1.10:554/stream1");
        let studio = &table.routes[1];
        assert_eq!(studio.auth, None);
        assert_eq!(studio.to[1].to_string(), "rtmp://live.example.com/app/***", "stream keys are not shown");
        assert!(matches!(&studio.to[1], Output::Push(u) if u.path() == "/app/live_123"));
    }

    #[test]
    fn an_empty_file_is_a_valid_router_with_no_routes() {
        let table = check("").expect("valid");
        assert!(table.routes.is_empty());
        assert_eq!(table.server, ServerConfig::default());
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        assert_eq!(
            error("[[route]]\nname = \"a\"\nform = \"demo\"\nto = [\"whep\"]\n"),
            "routes.toml:3:1: unknown key `form`\n  help: did you mean `from`? Keys allowed here: name, from, to, auth, on_demand, idle_timeout, max_readers, rtsp_transport, rtsp_quirks, publish_key, override_publisher, write_interval"
        );
    }

    #[test]
    fn syntax_errors_point_at_the_spot() {
        let e = error("[[route]]\nname = \"a\nfrom = \"demo\"\n");
        assert!(e.starts_with("routes.toml:2:"), "{e}");
    }

    #[test]
    fn missing_and_mistyped_keys() {
        assert_eq!(
            error("[[route]]\nname = \"a\"\nto = [\"whep\"]\n"),
            "routes.toml:1:1: missing key `from`\n  help: add `from = ...` to this table"
        );
        assert_eq!(
            error("[[route]]\nname = \"a\"\nfrom = \"demo\"\nto = [\"whep\"]\nmax_readers = \"ten\"\n"),
            "routes.toml:5:15: `max_readers`: invalid type: string \"ten\", expected i64\n  help: write a whole number, without quotes"
        );
        assert_eq!(
            error("[[route]]\nname = \"a\"\nfrom = \"demo\"\nto = \"whep\"\n"),
            "routes.toml:4:6: `to`: invalid type: string \"whep\", expected a sequence\n  help: write a list in brackets, e.g. [\"whep\"]"
        );
    }

    #[test]
    fn duplicate_route_names() {
        assert_eq!(
            error(
                "[[route]]\nname = \"cam\"\nfrom = \"demo\"\nto = [\"whep\"]\n\n[[route]]\nname = \"cam\"\nfrom = \"demo\"\nto = [\"whep\"]\n"
            ),
            "routes.toml:7:8: route \"cam\" is defined twice (first on line 2)\n  help: give each route its own name; the name is its path in every protocol"
        );
    }

    #[test]
    fn a_file_over_the_route_cap_is_refused_at_the_first_route_too_many() {
        let text: String = (0..=MAX_ROUTES)
            .map(|i| format!("[[route]]\nname = \"r{i}\"\nfrom = \"demo\"\nto = [\"whep\"]\n"))
            .collect();
        let line = MAX_ROUTES * 4 + 1;
        assert_eq!(
            error(&text),
            format!(
                "routes.toml:{line}:1: more than 10000 routes (10001 in the file)\n  help: split the sites over several routers, or use fewer routes"
            )
        );
        // The cap itself is fine (and its duplicate-name check does not scan the file per route).
        let at_cap: String = text.lines().take(MAX_ROUTES * 4).map(|l| format!("{l}\n")).collect();
        assert_eq!(check(&at_cap).map(|t| t.routes.len()), Ok(MAX_ROUTES));
    }

    #[test]
    fn no_routes_on_purpose_is_told_apart_from_none_written() {
        let empty = check("").expect("an empty file is valid");
        assert!(empty.routes.is_empty() && !empty.routes_declared);
        let none = check("route = []\n").expect("valid");
        assert!(none.routes.is_empty() && none.routes_declared);
        assert!(check("[[route]]\nname = \"a\"\nfrom = \"demo\"\nto = [\"whep\"]\n").expect("valid").routes_declared);
    }

    #[test]
    fn hls_settings_are_read_and_checked() {
        let table = crate::config::parse(
            "[server.hls]\nsegment = \"2s\"\npart = \"300ms\"\nsegments = 5\n",
            "routes.toml",
            &|_| None,
        )
        .expect("valid");
        assert_eq!(
            table.server.hls,
            HlsConfig { segment: Duration::from_secs(2), part: Duration::from_millis(300), segments: 5 }
        );
        assert_eq!(crate::config::parse("", "routes.toml", &|_| None).expect("valid").server.hls, HlsConfig::default());
        let e = error("[server.hls]\npart = \"10ms\"\nsegment = \"10ms\"\nsegments = 2\n");
        assert!(e.contains("`server.hls.part` must be between 50ms and 5s"), "{e}");
        assert!(e.contains("`server.hls.segment` must be between 50ms and 60s"), "{e}");
        assert!(e.contains("`server.hls.segments` must be between 3 and 100"), "{e}");
        let e = error("[server.hls]\npart = \"2s\"\n");
        assert!(e.contains("`server.hls.part` (2s) is longer than `server.hls.segment` (1s)"), "{e}");
    }

    #[test]
    fn webrtc_shards_are_bounded_and_default_to_the_cores() {
        for bad in ["0", "-1", "65"] {
            let e = error(&format!("[server]\nwebrtc = {{ shards = {bad} }}\n"));
            assert!(e.contains("`server.webrtc.shards` must be between 1 and 64"), "{bad}: {e}");
        }
        let t = check("[server]\nwebrtc = { shards = 64 }\n").expect("valid");
        assert_eq!(t.server.webrtc.shard_count(), 64);
        let default = check("").expect("valid").server.webrtc;
        assert_eq!(default.shards, None);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(default.shard_count(), cores.min(64));
    }

    #[test]
    fn server_limits_are_read_and_checked() {
        let t = check(
            "[server.limits]\nconnections = 500\nconnections_per_ip = 20\nwebrtc_sessions_per_ip = 5\n\
             header_timeout = \"2s\"\nbody_timeout = \"500ms\"\n",
        )
        .expect("valid");
        let l = &t.server.limits;
        assert_eq!((l.connections, l.connections_per_ip, l.webrtc_sessions_per_ip), (Some(500), 20, 5));
        assert_eq!((l.header_timeout, l.body_timeout), (Duration::from_secs(2), Duration::from_millis(500)));
        assert_eq!(check("").expect("valid").server.limits, ServerLimits::default());
        assert_eq!(
            error("[server.limits]\nconnections_per_ip = 0\nheader_timeout = \"0s\"\n"),
            "routes.toml:2:22: `server.limits.connections_per_ip` must be between 1 and 4294967295\n  help: leave it out for the default\n\
             routes.toml:3:18: `server.limits.header_timeout` cannot be zero\n  help: write a duration such as \"10s\""
        );
        assert!(error("[server.limits]\nconection = 5\n").contains("conection"), "unknown keys are refused");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let t = check("[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]\n").expect("valid");
        let nets = &t.server.trusted_proxies;
        assert!(
            nets[0].contains("127.0.0.1".parse().expect("ip")) && !nets[0].contains("127.0.0.2".parse().expect("ip"))
        );
        assert!(
            nets[1].contains("10.200.3.4".parse().expect("ip")) && !nets[1].contains("11.0.0.1".parse().expect("ip"))
        );
        assert!(nets[1].contains("::ffff:10.0.0.9".parse().expect("ip")), "IPv4-mapped IPv6");
        assert!(nets[2].contains("fd12::1".parse().expect("ip")) && !nets[2].contains("fe80::1".parse().expect("ip")));
        assert!(IpNet::parse("0.0.0.0/0").expect("any").contains("203.0.113.9".parse().expect("ip")));
        assert!(error("[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n").contains("trusts every address"));
        assert!(error("[server.limits]\nbody_timeout = \"9999999999d\"\n").contains("at most 1h"));
        assert_eq!(
            error("[server]\ntrusted_proxies = [\"10.0.0.0/33\", \"proxy.lan\"]\n"),
            "routes.toml:2:20: `server.trusted_proxies`: \"10.0.0.0/33\": the prefix length must be 0 to 32\n  help: list your reverse proxies' addresses or ranges, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
             routes.toml:2:35: `server.trusted_proxies`: \"proxy.lan\" is not an IP address or range\n  help: list your reverse proxies' addresses or ranges, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]"
        );
    }

    #[test]
    fn rtmp_urls_must_name_a_stream() {
        let route = |from: &str, to: &str| format!("[[route]]\nname = \"r\"\nfrom = \"{from}\"\nto = [{to}]\n");
        assert_eq!(
            error(&route("rtmp://a.example/live", "\"whep\"")),
            "routes.toml:3:8: route \"r\": `from`: \"rtmp://a.example/live\" names no stream to play\n  help: RTMP URLs name an application and a stream: write rtmp://host[:port]/APP/STREAM, e.g. rtmp://example.com/live/cam1"
        );
        assert!(error(&route("rtmp://a.example/", "\"whep\"")).contains("names no stream to play"));
        assert!(
            error(&route("demo", "\"rtmp://b.example/app/\""))
                .contains("`to`: \"rtmp://b.example/app/\" names no stream to publish")
        );
        assert!(check(&route("rtmp://a.example/live/cam", "\"rtmp://b.example/app/key\"")).is_ok());
        assert!(check(&route("rtsp://a.example/", "\"whep\"")).is_ok(), "RTSP paths may be empty");
    }

    #[test]
    fn outputs_the_source_cannot_feed() {
        let route = |from: &str, to: &str| format!("[[route]]\nname = \"r\"\nfrom = \"{from}\"\nto = [{to}]\n");
        assert_eq!(
            error(&route("demo", "\"whip\"")),
            "routes.toml:4:7: route \"r\": `to`: \"whip\" is a source, not an output\n  help: put it in `from`; outputs are \"whep\", \"hls\", \"rtsp\", \"rtmp\", \"record:<plugin>\", or an rtmp:// or rtsp:// URL to push to"
        );
        assert_eq!(
            error(&route("rtmp://a.example/app/s", "\"rtmp://a.example/app/s\"")),
            "routes.toml:4:7: route \"r\": `to`: pushing to the URL this route pulls from would feed the route its own output\n  help: push to another server or path"
        );
        assert_eq!(
            error(&route("demo", "\"rtmp://127.0.0.1/r\"")),
            "routes.toml:4:7: route \"r\": `to`: \"rtmp://127.0.0.1/r\" is this route on this router: it would feed itself\n  help: to serve it to readers here, write \"rtmp\" or \"rtsp\" instead of a URL"
        );
        assert_eq!(
            error(&route("demo", "\"record:mp4\"")),
            "routes.toml:4:7: route \"r\": `to`: there is no plugin \"mp4\" to record with\n  help: declare one first: [plugins.mp4] with source = \"builtin:record-mp4\""
        );
        assert_eq!(
            error(&format!("[plugins.jwt]\nsource = \"builtin:auth-jwt\"\n{}", route("demo", "\"record:jwt\""))),
            "routes.toml:6:7: route \"r\": `to`: plugin \"jwt\" cannot record: it is not a sink plugin\n  help: declare one first: [plugins.mp4] with source = \"builtin:record-mp4\""
        );
        assert_eq!(
            error(&route("demo", "")),
            "routes.toml:4:6: route \"r\": `to` is empty: nothing would read it\n  help: outputs are \"whep\", \"hls\", \"rtsp\", \"rtmp\", \"record:<plugin>\", or an rtmp:// or rtsp:// URL to push to"
        );
        assert_eq!(
            error(&route("demo", "\"whep\", \"whep\"")),
            "routes.toml:4:15: route \"r\": `to` lists \"whep\" twice\n  help: remove one"
        );
        assert_eq!(
            error(&route("demo", "\"dash\"")),
            "routes.toml:4:7: route \"r\": `to`: \"dash\" is not an output\n  help: outputs are \"whep\", \"hls\", \"rtsp\", \"rtmp\", \"record:<plugin>\", or an rtmp:// or rtsp:// URL to push to"
        );
    }

    #[test]
    fn bad_sources() {
        let route = |from: &str| format!("[[route]]\nname = \"r\"\nfrom = \"{from}\"\nto = [\"whep\"]\n");
        assert_eq!(
            error(&route("whep")),
            "routes.toml:3:8: route \"r\": `from`: \"whep\" is a playback protocol, not a source\n  help: to let browsers play this route put \"whep\" in `to`; for `from` write \"demo\"; \"whip\", \"rtmp\" or \"rtsp\" to take a publisher of that protocol, \"publisher\" for any; or an rtsp:// or rtmp:// URL to pull from"
        );
        assert_eq!(
            error(&route("http://cam/x")),
            "routes.toml:3:8: route \"r\": `from`: cannot pull from http:// URLs\n  help: write \"demo\"; \"whip\", \"rtmp\" or \"rtsp\" to take a publisher of that protocol, \"publisher\" for any; or an rtsp:// or rtmp:// URL to pull from"
        );
        assert_eq!(
            error(&route("rtsp://")),
            "routes.toml:3:8: route \"r\": `from`: \"rtsp://\" has no host\n  help: write the camera or server address, e.g. \"rtsp://192.168.1.10:554/stream1\""
        );
    }

    #[test]
    fn addresses_that_do_not_parse() {
        assert_eq!(
            error("[server]\nhttp = \"localhost:8889\"\n"),
            "routes.toml:2:8: `server.http`: \"localhost:8889\" is not an IP address and port\n  help: write IP:PORT, e.g. \"0.0.0.0:8889\" for every interface or \"127.0.0.1:8889\" for this machine only"
        );
        assert_eq!(
            error("[server]\nrtsp = \"0.0.0.0:8889\"\n"),
            "routes.toml:2:8: `server.rtsp` uses port 8889 which `server.http` already uses\n  help: give each listener its own port"
        );
    }

    #[test]
    fn unset_environment_variables() {
        assert_eq!(
            error("[[route]]\nname = \"s\"\nfrom = \"rtmp\"\nto = [\"rtmp://x.example/app/${NOPE}\"]\n"),
            "routes.toml:4:7: route \"s\": `to`: environment variable NOPE is not set\n  help: export it before starting sluice, or write `$${` for a literal `${`"
        );
    }

    #[test]
    fn auth_must_name_an_auth_plugin() {
        assert_eq!(
            error("[[route]]\nname = \"s\"\nfrom = \"demo\"\nto = [\"whep\"]\nauth = \"jtw\"\n"),
            "routes.toml:5:8: route \"s\": `auth`: there is no plugin \"jtw\"\n  help: declare one first, e.g. [plugins.jwt] with source = \"builtin:auth-jwt\"; or write auth = \"none\""
        );
        assert_eq!(
            error("[plugins.mp4]\nsource = \"builtin:record-mp4\"\n[defaults]\nauth = \"mp4\"\n"),
            "routes.toml:4:8: `defaults.auth`: plugin \"mp4\" is not an auth plugin\n  help: declare one first, e.g. [plugins.jwt] with source = \"builtin:auth-jwt\"; or write auth = \"none\""
        );
    }

    #[test]
    fn plugin_mistakes() {
        assert_eq!(
            error("[plugins.x]\nsource = \"builtin:auth-jwk\"\n"),
            "routes.toml:2:10: plugin \"x\": `source`: there is no built-in plugin \"auth-jwk\"\n  help: built-ins are builtin:auth-jwt, builtin:auth-users, builtin:record-mp4, builtin:signal-rooms, builtin:signal-cameras, builtin:signal-live"
        );
        assert_eq!(
            error("[plugins.x]\nsource = \"plugins/x.wasm\"\n"),
            "routes.toml:2:10: plugin \"x\": `source`: plugins/x.wasm does not exist\n  help: paths are relative to the directory of the routes file"
        );
        assert_eq!(
            error("[plugins.x]\nsource = \"builtin:auth-jwt\"\nlimits = { memory = \"lots\" }\n"),
            "routes.toml:3:21: plugin \"x\": `limits.memory`: \"lots\" is not a size\n  help: write a size such as \"16MiB\""
        );
    }

    #[test]
    fn signaling_mounts() {
        let table = check(
            "[plugins.rooms]\nsource = \"builtin:signal-rooms\"\nmount = \"/socket.io\"\nhttp = \"/api/rooms/\"\nauth = \"jwt\"\n\n[plugins.jwt]\nsource = \"builtin:auth-jwt\"\nconfig = { secret = \"s\" }\n\n[plugins.live]\nsource = \"builtin:signal-live\"\nmount = \"/ws/live\"\n",
        )
        .expect("valid");
        let rooms = table.plugins["rooms"].mount.as_ref().expect("mounted");
        assert_eq!(
            (rooms.path.as_str(), rooms.transport, rooms.http.as_deref(), rooms.auth.as_deref()),
            ("/socket.io/", SignalTransport::SocketIo, Some("/api/rooms"), Some("jwt"))
        );
        assert_eq!(table.plugins["live"].mount.as_ref().map(|m| m.transport), Some(SignalTransport::WebSocket));
        assert_eq!(
            error("[plugins.rooms]\nsource = \"builtin:signal-rooms\"\n"),
            "routes.toml:1:1: plugin \"rooms\": a signaling plugin needs `mount`, the path its clients connect to\n  help: add mount = \"/socket.io/\" (or \"/ws/NAME\" for a plain WebSocket plugin)"
        );
        assert_eq!(
            error("[plugins.a]\nsource = \"builtin:auth-jwt\"\nmount = \"/x\"\n"),
            "routes.toml:3:9: plugin \"a\": only signaling plugins are mounted (`mount`, `transport`)\n  help: remove the key"
        );
        assert_eq!(
            error("[plugins.r]\nsource = \"builtin:signal-rooms\"\nmount = \"/v1/io\"\n"),
            "routes.toml:3:9: plugin \"r\": `mount` \"/v1/io\" is taken by the router (/v1, /metrics, /healthz)\n  help: pick another path, e.g. \"/socket.io/\""
        );
        assert_eq!(
            error("[plugins.r]\nsource = \"builtin:signal-rooms\"\nmount = \"/io\"\ntransport = \"sse\"\n"),
            "routes.toml:4:13: plugin \"r\": `transport` \"sse\" is not one the router speaks\n  help: write \"socket.io\" or \"websocket\""
        );
        assert_eq!(
            error(
                "[plugins.a]\nsource = \"builtin:signal-rooms\"\nmount = \"/io\"\n[plugins.b]\nsource = \"builtin:signal-live\"\nmount = \"/io/live\"\n"
            ),
            "routes.toml:6:9: plugin \"b\": `mount` \"/io/live/\" lies under plugin \"a\"'s mount \"/io/\"\n  help: give every signaling plugin a path of its own"
        );
        assert_eq!(
            error("[plugins.a]\nsource = \"builtin:signal-rooms\"\nmount = \"/io\"\nauth = \"nobody\"\n"),
            "routes.toml:4:8: plugin \"a\": `auth`: there is no plugin \"nobody\"\n  help: declare one first, e.g. [plugins.jwt] with source = \"builtin:auth-jwt\"; or write auth = \"none\""
        );
    }

    #[test]
    fn rtsp_options_are_checked_against_retinas_policies() {
        let table = check("[[route]]\nname = \"cam\"\nfrom = \"rtsp://10.0.0.2/s\"\nto = [\"whep\"]\nrtsp_transport = \"udp\"\nrtsp_quirks = { teardown = \"always\", initial_seq = \"ignore\" }\nidle_timeout = \"3s\"\n").expect("valid");
        let rtsp = table.routes[0].rtsp.as_ref().expect("rtsp options");
        assert_eq!(
            (rtsp.transport.as_str(), rtsp.teardown.as_str(), rtsp.initial_seq.as_str()),
            ("udp", "always", "ignore")
        );
        assert_eq!(table.routes[0].idle_timeout, std::time::Duration::from_secs(3));
        assert_eq!(
            error(
                "[[route]]\nname = \"cam\"\nfrom = \"rtsp://10.0.0.2/s\"\nto = [\"whep\"]\nrtsp_quirks = { teardown = \"sometimes\" }\n"
            ),
            "routes.toml:5:28: route \"cam\": `rtsp_quirks.teardown`: \"sometimes\" is not a policy\n  help: write one of auto, always, never"
        );
        assert_eq!(
            error("[[route]]\nname = \"d\"\nfrom = \"demo\"\nto = [\"whep\"]\nrtsp_transport = \"udp\"\n"),
            "routes.toml:5:18: route \"d\": `rtsp_transport` applies to rtsp:// sources only\n  help: remove `rtsp_transport`"
        );
    }

    #[test]
    fn write_interval_defaults_inherits_and_is_bounded() {
        use std::time::Duration;
        let route = "[[route]]\nname = \"r\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\n";
        assert_eq!(check(route).expect("valid").routes[0].write_interval, DEFAULT_WRITE_INTERVAL);
        let table = check(&format!("[defaults]\nwrite_interval = \"0ms\"\n{route}")).expect("valid");
        assert_eq!(table.routes[0].write_interval, Duration::ZERO, "from [defaults]");
        let table = check(&format!("[defaults]\nwrite_interval = \"0ms\"\n{route}write_interval = \"120ms\"\n"))
            .expect("valid");
        assert_eq!(table.routes[0].write_interval, Duration::from_millis(120), "the route's own wins");
        let table = check(&format!("{route}rtmp_write_interval = \"80ms\"\n")).expect("the old name still reads");
        assert_eq!(table.routes[0].write_interval, Duration::from_millis(80));
        assert_eq!(
            error(&format!("{route}write_interval = \"2s\"\n")),
            "routes.toml:5:18: route \"r\": `write_interval`: at most 1000ms (players would wait for frames they need)\n  help: write a duration such as \"50ms\", or \"0ms\" to send every frame as it comes"
        );
        assert_eq!(
            error("[[route]]\nname = \"r\"\nfrom = \"demo\"\nto = [\"whep\"]\nwrite_interval = \"10ms\"\n"),
            "routes.toml:5:18: route \"r\": `write_interval` applies to routes with \"rtmp\" or \"rtsp\" in `to`\n  help: remove it, or add \"rtmp\" or \"rtsp\" to `to`"
        );
    }

    #[test]
    fn route_names_and_numbers() {
        assert_eq!(
            error("[[route]]\nname = \"front door\"\nfrom = \"demo\"\nto = [\"whep\"]\n"),
            "routes.toml:2:8: `name`: route name \"front door\" contains ' '; names use letters, digits, '-', '_' and '.' (and '/' between segments)\n  help: use a name like \"front-door\" or \"cams/front-door\"; \"live/*\" is a template"
        );
        assert_eq!(
            error("[[route]]\nname = \"v1\"\nfrom = \"demo\"\nto = [\"whep\"]\n"),
            "routes.toml:2:8: `name`: route name \"v1\" is reserved for the router's own HTTP paths\n  help: use a name like \"front-door\" or \"cams/front-door\"; \"live/*\" is a template"
        );
        assert_eq!(
            error("[[route]]\nname = \"r\"\nfrom = \"demo\"\nto = [\"whep\"]\nmax_readers = 0\n"),
            "routes.toml:5:15: route \"r\": `max_readers` must be between 1 and 4294967295\n  help: leave it out for no limit"
        );
        assert_eq!(
            error("[[route]]\nname = \"r\"\nfrom = \"whip\"\nto = [\"whep\"]\non_demand = true\n"),
            "routes.toml:5:13: route \"r\": `on_demand` needs a source the router pulls, not a whip publisher\n  help: remove `on_demand`: a publish route simply waits for its publisher"
        );
    }

    #[test]
    fn the_catch_all_template_makes_one_segment_names_no_other_route_has() {
        let table = check(
            "[[route]]\nname = \"door\"\nfrom = \"whip\"\nto = [\"whep\"]\n\n\
             [[route]]\nname = \"live/*\"\nfrom = \"rtmp\"\nto = [\"whep\"]\n\n\
             [[route]]\nname = \"*\"\nfrom = \"publisher\"\nto = [\"whep\", \"rtsp\"]\n",
        )
        .expect("valid");
        let catch_all = &table.routes[2];
        assert!(catch_all.is_template());
        assert_eq!(catch_all.name.template_prefix(), Some(""));
        assert_eq!(table.template_for("mystream").map(|t| t.name.as_str()), Some("*"));
        assert_eq!(table.template_for("live/cam").map(|t| t.name.as_str()), Some("live/*"));
        assert!(table.template_for("other/cam").is_none(), "`*` is one segment, like every template's");
        for name in ["v1", "api", "metrics", "whep", ".hidden", ""] {
            assert!(table.template_for(name).is_none(), "{name:?} is not a name it makes");
        }
        let made = catch_all.instantiate("mystream").expect("made");
        assert_eq!(made.name.as_str(), "mystream");
        assert_eq!(made.instance_of.as_ref().map(|n| n.as_str()), Some("*"));
        // The capture of a pulling catch-all is the whole name.
        let table =
            check("[[route]]\nname = \"*\"\nfrom = \"rtsp://10.0.0.9/${1}\"\non_demand = true\nto = [\"whep\"]\n")
                .expect("valid");
        let made = table.routes[0].instantiate("ch7").expect("made");
        assert_eq!(made.from.redacted(), "rtsp://10.0.0.9/ch7");
    }

    #[test]
    fn names_with_segments_and_templates() {
        let table = check(
            "[[route]]\nname = \"cams/door\"\nfrom = \"whip\"\nto = [\"whep\"]\n\n\
             [[route]]\nname = \"cams/*\"\nfrom = \"rtsp://admin:${CAM_PASS}@10.0.0.9/${1}\"\non_demand = true\nto = [\"whep\"]\n",
        )
        .expect("valid");
        assert_eq!(table.routes[0].name.as_str(), "cams/door");
        assert!(!table.routes[0].is_template());
        let template = &table.routes[1];
        assert!(template.is_template());
        assert_eq!(table.template_for("cams/yard").map(|t| t.name.as_str()), Some("cams/*"));
        assert!(table.template_for("cams/a/b").is_none(), "`*` is one segment");
        assert!(table.template_for("cams/whep").is_none(), "not a name");
        assert!(table.template_for("other/yard").is_none());
        let made = template.instantiate("cams/yard").expect("made");
        assert_eq!(made.name.as_str(), "cams/yard");
        assert_eq!(made.instance_of.as_ref().map(|n| n.as_str()), Some("cams/*"));
        assert_eq!(
            made.from.redacted(),
            "rtsp://admin:***@10.0.0.9/yard",
            "the capture and the variable both filled in"
        );
        assert!(made.on_demand && !made.is_template());

        let route =
            |name: &str, from: &str| format!("[[route]]\nname = \"{name}\"\nfrom = \"{from}\"\nto = [\"whep\"]\n");
        assert_eq!(
            error(&route("cams//door", "whip")),
            "routes.toml:2:8: `name`: route name \"cams//door\" has an empty segment; segments are separated by one '/', with none at either end\n  help: use a name like \"front-door\" or \"cams/front-door\"; \"live/*\" is a template"
        );
        assert!(error(&route("cams/whep", "whip")).contains("names an endpoint of the route before it"));
        assert!(error(&route("*/x", "whip")).contains("contains '*'"));
        assert!(error(&route("cams/*/x", "whip")).contains("contains '*'"));
        assert_eq!(
            error(&route("door", "rtsp://10.0.0.9/${1}")),
            "routes.toml:3:8: route \"door\": `from`: ${1} is the capture of a template route, and this is not one\n  help: name the route \"PREFIX/*\" to make a route per name under PREFIX, with ${1} the last segment of that name"
        );
        assert!(error(&route("cams/*", "rtsp://${1}.cams.local/s")).contains("may stand only in the URL's path"));
        assert!(error(&route("cams/*", "rtsp://u:${1}@cams.local/s")).contains("may stand only in the URL's path"));
        assert!(
            error("[[route]]\nname = \"cams/*\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp://yt/live/${1}\"]\n")
                .contains("is a template's capture, valid only in the `from` of a template route")
        );
        assert_eq!(
            error(&route("cams/*", "rtsp://10.0.0.9/${1}")),
            "routes.toml:3:8: route \"cams/*\": a template that pulls its source must be `on_demand`\n  help: add `on_demand = true`: its routes are made when a reader asks for one, and end when idle"
        );
        assert!(error(&format!("{}\n{}", route("cams/*", "whip"), route("cams/*", "rtmp"))).contains("defined twice"));
    }

    #[test]
    fn a_bad_inherited_default_is_reported_once_where_it_is_written() {
        assert_eq!(
            error(
                "[defaults]\nto = [\"dash\"]\n\n[[route]]\nname = \"a\"\nfrom = \"demo\"\n\n[[route]]\nname = \"b\"\nfrom = \"demo\"\n"
            ),
            "routes.toml:2:7: route \"a\": `to`: \"dash\" is not an output\n  help: outputs are \"whep\", \"hls\", \"rtsp\", \"rtmp\", \"record:<plugin>\", or an rtmp:// or rtsp:// URL to push to"
        );
    }

    #[test]
    fn errors_quote_values_as_written_not_expanded_secrets() {
        let e = error("[[route]]\nname = \"a\"\nfrom = \"${CAM_PASS}\"\nto = [\"whep\"]\n");
        assert_eq!(
            e,
            "routes.toml:3:8: route \"a\": `from`: \"${CAM_PASS}\" is not a source\n  help: write \"demo\"; \"whip\", \"rtmp\" or \"rtsp\" to take a publisher of that protocol, \"publisher\" for any; or an rtsp:// or rtmp:// URL to pull from"
        );
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn every_error_in_the_file_is_reported_in_order() {
        let e = error(
            "[[route]]\nname = \"a\"\nfrom = \"nope\"\nto = [\"whep\"]\n[[route]]\nname = \"b\"\nfrom = \"demo\"\nto = [\"dash\"]\n",
        );
        let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("routes.toml")).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("routes.toml:3:8:") && lines[1].starts_with("routes.toml:8:7:"), "{e}");
    }
}
