//! The validated configuration the router runs on. Only [`super::validate`] builds these.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use url::Url;

/// A route's name: its path in every protocol (`/NAME/whep`, `rtsp://host/NAME`, `rtmp://host/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RouteName(Arc<str>);

impl RouteName {
    /// Names that would shadow the router's own HTTP paths.
    pub const RESERVED: [&'static str; 7] = ["v1", "api", "metrics", "healthz", "assets", "static", "web"];

    /// Path segments after the first that would make the name's HTTP paths ambiguous (`/NAME/whep` is a route's
    /// WHEP endpoint, not a route whose last segment is "whep").
    pub const RESERVED_SEGMENTS: [&'static str; 3] = ["whip", "whep", "publish"];

    /// The longest name: room for a prefix, a user and a UUID (`cameras/alice/4f0c...`).
    pub const MAX_LEN: usize = 128;

    /// Checks the characters a name may use; the caller reports the error with its position. A name is one or
    /// more segments separated by '/' (`door`, `live/cam1`).
    pub fn parse(name: &str) -> Result<RouteName, String> {
        if name.is_empty() {
            return Err("a route name cannot be empty".into());
        }
        if name.len() > Self::MAX_LEN {
            return Err(format!("route name \"{name}\" is longer than {} characters", Self::MAX_LEN));
        }
        for (i, segment) in name.split('/').enumerate() {
            if segment.is_empty() {
                return Err(format!(
                    "route name \"{name}\" has an empty segment; segments are separated by one '/', with none at either end"
                ));
            }
            Self::check_segment(name, segment)?;
            if i == 0 && Self::RESERVED.contains(&segment) {
                return Err(format!("route name \"{name}\" is reserved for the router's own HTTP paths"));
            }
            if i > 0 && (Self::RESERVED_SEGMENTS.contains(&segment) || Self::is_hls_file(segment)) {
                return Err(format!(
                    "route name \"{name}\" ends a segment with \"{segment}\", which names an endpoint of the route before it"
                ));
            }
        }
        Ok(RouteName(name.into()))
    }

    /// Whether a last path segment names one of a route's HLS files (`index.m3u8`, `seg12.mp4`), which no
    /// segment of a name after the first may look like.
    pub fn is_hls_file(segment: &str) -> bool {
        segment.ends_with(".m3u8") || segment.ends_with(".mp4")
    }

    /// Whether `segment` could be one segment of a name (what a template's `*` matches).
    pub fn is_segment(segment: &str) -> bool {
        !segment.is_empty()
            && !Self::RESERVED_SEGMENTS.contains(&segment)
            && !Self::is_hls_file(segment)
            && Self::check_segment(segment, segment).is_ok()
    }

    fn check_segment(name: &str, segment: &str) -> Result<(), String> {
        if let Some(c) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
            return Err(format!(
                "route name \"{name}\" contains {c:?}; names use letters, digits, '-', '_' and '.' (and '/' between segments)"
            ));
        }
        if segment.starts_with('.') {
            return Err(format!("route name \"{name}\" has a segment starting with '.'"));
        }
        Ok(())
    }

    /// A template's name, `PREFIX/*` (the prefix already checked as a name).
    pub fn template(prefix: &RouteName) -> RouteName {
        RouteName(format!("{prefix}/*").into())
    }

    /// The template of every one-segment name no other route has (MediaMTX's `all_others`): `*`.
    pub fn catch_all() -> RouteName {
        RouteName(Self::CATCH_ALL.into())
    }

    pub const CATCH_ALL: &'static str = "*";

    /// For a template's name, the prefix its instances start with (`live` for `live/*`, "" for `*`).
    pub fn template_prefix(&self) -> Option<&str> {
        if &*self.0 == Self::CATCH_ALL {
            return Some("");
        }
        self.0.strip_suffix("/*")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RouteTable {
    /// The template route `name` would be made from (`live/*` for `live/cam1`, `*` for `cam1`): the one whose
    /// prefix is all of `name` but its last segment. Exact routes are looked up first by the caller; they win.
    pub fn template_for(&self, name: &str) -> Option<&Arc<RouteConfig>> {
        // A one-segment name can only come from the catch-all `*`, and never one of the router's own paths.
        let (prefix, last) = match name.rsplit_once('/') {
            // "/cam" is no name.
            Some(("", _)) => return None,
            Some(split) => split,
            None => ("", name),
        };
        if !RouteName::is_segment(last) || (prefix.is_empty() && RouteName::RESERVED.contains(&last)) {
            return None;
        }
        self.routes.iter().find(|r| r.name.template_prefix() == Some(prefix))
    }
}

/// The whole file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTable {
    pub server: ServerConfig,
    pub plugins: BTreeMap<String, PluginConfig>,
    /// What anyone may do on routes whose `auth` is "none" (`[defaults] anonymous`).
    pub anonymous: Vec<AnonymousAction>,
    /// In file order. Templates (`name = "live/*"`) are among them: they run nothing themselves, their instances
    /// are made when first published to (see [`RouteConfig::template`]).
    pub routes: Vec<Arc<RouteConfig>>,
    /// Whether the file has a `route` key (`[[route]]` tables, or `route = []` for none on purpose).
    pub routes_declared: bool,
    /// `[accounts]`: people, their cameras and sessions; `None` when the file has no such table.
    pub accounts: Option<AccountsConfig>,
    /// Where each plugin's `config` (or its table, without one) is in the file, (line, column): errors found when
    /// the plugin loads point there. Kept apart from [`PluginConfig`] so moving a plugin does not reload it.
    pub plugin_positions: BTreeMap<String, (usize, usize)>,
}

/// `[accounts]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountsConfig {
    pub registration: Registration,
    /// How long a login's token is valid.
    #[serde(serialize_with = "serialize_duration_ms")]
    pub token_ttl: Duration,
    /// The template each camera's route is made from (`cameras/*`: camera 7 is route `cameras/7`).
    pub cameras: Option<RouteName>,
}

/// Logins last a day unless `accounts.token_ttl` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// `auth = "accounts"`: the route (or the API) is decided by the accounts, not by a plugin.
pub const ACCOUNTS_AUTH: &str = "accounts";

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone; the first account is the admin.
    Open,
    /// Only an admin, once there is one (the first account, made by anyone, is the admin).
    Admin,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    pub http: SocketAddr,
    pub rtsp: SocketAddr,
    pub rtmp: SocketAddr,
    /// Where MediaMTX's read-only v3 API answers (for dashboards written for MediaMTX); `None`: off.
    pub mediamtx_api: Option<SocketAddr>,
    /// Where everything the HTTP listener serves is served over TLS too; `None`: off.
    pub https: Option<SocketAddr>,
    /// The certificate files for `https`; `None`: a self-signed certificate made in `data_dir/tls`.
    pub tls: Option<TlsFiles>,
    /// Whether the HTTP listener sends browsers to `https` (308), but for /healthz and /metrics.
    pub https_redirect: bool,
    pub webrtc: WebrtcConfig,
    pub data_dir: PathBuf,
    /// The auth plugin guarding the REST API (`/v1`); `None` leaves it open.
    pub api_auth: Option<String>,
    pub limits: ServerLimits,
    pub hls: HlsConfig,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a request from one of these is taken to come from the
    /// client the header names (for auth, the failure limit and the WebRTC sessions cap).
    pub trusted_proxies: Vec<IpNet>,
}

/// `[server.hls]`: how every route's LL-HLS output is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HlsConfig {
    /// A segment ends at the first keyframe at least this long after its start.
    #[serde(serialize_with = "serialize_duration_ms")]
    pub segment: Duration,
    /// The longest a part lasts (PART-TARGET).
    #[serde(serialize_with = "serialize_duration_ms")]
    pub part: Duration,
    /// Complete segments a playlist lists.
    pub segments: u32,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig { segment: Duration::from_secs(1), part: Duration::from_millis(200), segments: 7 }
    }
}

/// A certificate chain and its key, PEM files (relative paths already joined to the routes file's directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An address range, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("\"{s}\" is not an IP address or range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("\"{s}\": the prefix length must be 0 to {max}")),
            },
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[server.limits]`: what one client, and all clients together, may hold open and how long they may take. Read
/// at each new connection or session, so a reload changes them for what comes next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerLimits {
    /// TCP connections on every listener together; `None`: the open-file limit less a reserve for files,
    /// recordings and media.
    pub connections: Option<u64>,
    /// TCP connections one client address may hold (IPv6: one /64).
    pub connections_per_ip: u32,
    /// WHIP and WHEP sessions one client address may hold.
    pub webrtc_sessions_per_ip: u32,
    /// How long a client may take to send a request's headers, and how long an idle keep-alive connection stays.
    #[serde(serialize_with = "serialize_duration_ms")]
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    #[serde(serialize_with = "serialize_duration_ms")]
    pub body_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections: None,
            connections_per_ip: 256,
            webrtc_sessions_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebrtcConfig {
    pub udp: SocketAddr,
    pub public_ips: Vec<IpAddr>,
    /// STUN/TURN servers advertised to WHIP/WHEP clients (Link headers) and to the browser pages.
    pub ice_servers: Vec<IceServer>,
    /// Threads the WebRTC peers are spread over, all on the one UDP port; `None`: one per core the router may use.
    pub shards: Option<usize>,
}

impl WebrtcConfig {
    /// At most this many shards: the shard is coded in two hex digits of every session's ICE ufrag and id.
    pub const MAX_SHARDS: usize = 64;

    /// The shard count to run: the setting, or the cores this process may run on (affinity and cgroup limits
    /// included, so a router pinned to one core runs one shard).
    pub fn shard_count(&self) -> usize {
        self.shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
            .clamp(1, Self::MAX_SHARDS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URL.
    pub url: String,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub credential: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let any = IpAddr::from([0, 0, 0, 0]);
        ServerConfig {
            http: SocketAddr::new(any, 8889),
            rtsp: SocketAddr::new(any, 8554),
            rtmp: SocketAddr::new(any, 1935),
            mediamtx_api: None,
            https: None,
            tls: None,
            https_redirect: false,
            webrtc: WebrtcConfig {
                udp: SocketAddr::new(any, 8189),
                public_ips: Vec::new(),
                ice_servers: Vec::new(),
                shards: None,
            },
            data_dir: PathBuf::from("data"),
            api_auth: None,
            limits: ServerLimits::default(),
            hls: HlsConfig::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// A `[plugins.NAME]` table. Loaded by the plugin host; validated here so `sluice check` catches mistakes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginConfig {
    pub name: String,
    pub source: PluginSource,
    /// Handed to the plugin as JSON at init, `${VAR}` already expanded.
    pub config: serde_json::Value,
    pub limits: PluginLimits,
    pub grants: PluginGrants,
    /// Signaling plugins: where their clients connect.
    pub mount: Option<Mount>,
}

/// Where a signaling plugin's clients connect, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// An HTTP path prefix, e.g. "/socket.io/" (always ends with '/').
    pub path: String,
    pub transport: SignalTransport,
    /// An HTTP path prefix whose requests go to the plugin's `on-http` (an app's REST calls), e.g. "/api/rooms".
    pub http: Option<String>,
    /// The auth plugin asked (action `read`, protocol `http`, route "") when a client connects; its identity
    /// reaches the plugin.
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SignalTransport {
    #[serde(rename = "socket.io")]
    SocketIo,
    #[serde(rename = "websocket")]
    WebSocket,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginSource {
    Builtin(BuiltinPlugin),
    File(PathBuf),
}

/// The plugins compiled into the router, and the world each implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BuiltinPlugin {
    #[serde(rename = "auth-jwt")]
    AuthJwt,
    #[serde(rename = "auth-users")]
    AuthUsers,
    #[serde(rename = "record-mp4")]
    RecordMp4,
    #[serde(rename = "signal-rooms")]
    SignalRooms,
    #[serde(rename = "signal-cameras")]
    SignalCameras,
    #[serde(rename = "signal-live")]
    SignalLive,
}

impl BuiltinPlugin {
    pub const ALL: [BuiltinPlugin; 6] = [
        BuiltinPlugin::AuthJwt,
        BuiltinPlugin::AuthUsers,
        BuiltinPlugin::RecordMp4,
        BuiltinPlugin::SignalRooms,
        BuiltinPlugin::SignalCameras,
        BuiltinPlugin::SignalLive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinPlugin::AuthJwt => "auth-jwt",
            BuiltinPlugin::AuthUsers => "auth-users",
            BuiltinPlugin::RecordMp4 => "record-mp4",
            BuiltinPlugin::SignalRooms => "signal-rooms",
            BuiltinPlugin::SignalCameras => "signal-cameras",
            BuiltinPlugin::SignalLive => "signal-live",
        }
    }

    /// Limits when routes.toml sets none: password hashing (argon2, 19 MiB per check) needs more than the usual.
    pub fn default_limits(self) -> PluginLimits {
        match self {
            BuiltinPlugin::AuthUsers => {
                PluginLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_millis(1000) }
            }
            // A write may flush a part of a high-bitrate stream to a slow disk: room for a few MB and a stall.
            BuiltinPlugin::RecordMp4 => {
                PluginLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_millis(2000) }
            }
            _ => PluginLimits::default(),
        }
    }

    pub fn world(self) -> PluginWorld {
        match self {
            BuiltinPlugin::AuthJwt | BuiltinPlugin::AuthUsers => PluginWorld::Auth,
            BuiltinPlugin::RecordMp4 => PluginWorld::Sink,
            BuiltinPlugin::SignalRooms | BuiltinPlugin::SignalCameras | BuiltinPlugin::SignalLive => {
                PluginWorld::Signaling
            }
        }
    }

    /// The transport a built-in signaling plugin speaks unless routes.toml says otherwise.
    pub fn default_transport(self) -> SignalTransport {
        match self {
            BuiltinPlugin::SignalLive => SignalTransport::WebSocket,
            _ => SignalTransport::SocketIo,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginWorld {
    Auth,
    Sink,
    Signaling,
}

impl PluginWorld {
    /// "an auth plugin", "a sink plugin", "a signaling plugin": for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            PluginWorld::Auth => "an auth plugin",
            PluginWorld::Sink => "a sink plugin",
            PluginWorld::Signaling => "a signaling plugin",
        }
    }
}

impl PluginSource {
    /// Limits when routes.toml sets none (see [`BuiltinPlugin::default_limits`]).
    pub fn default_limits(&self) -> PluginLimits {
        match self {
            PluginSource::Builtin(b) => b.default_limits(),
            PluginSource::File(_) => PluginLimits::default(),
        }
    }

    /// The world this plugin implements, when known without loading it.
    pub fn known_world(&self) -> Option<PluginWorld> {
        match self {
            PluginSource::Builtin(b) => Some(b.world()),
            PluginSource::File(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginLimits {
    pub memory_bytes: u64,
    #[serde(serialize_with = "serialize_duration_ms")]
    pub call_timeout: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits { memory_bytes: 16 << 20, call_timeout: Duration::from_millis(50) }
    }
}

fn serialize_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PluginGrants {
    pub storage: Option<StorageGrant>,
    /// Environment variables the plugin may read (e.g. a key); it sees no others.
    pub env: Vec<String>,
}

/// An action a client may take on a route, as `[defaults] anonymous` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousAction {
    Publish,
    Read,
    Playback,
}

impl AnonymousAction {
    pub const ALL: [AnonymousAction; 3] = [AnonymousAction::Publish, AnonymousAction::Read, AnonymousAction::Playback];

    pub fn name(self) -> &'static str {
        match self {
            AnonymousAction::Publish => "publish",
            AnonymousAction::Read => "read",
            AnonymousAction::Playback => "playback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageGrant {
    /// Relative to the routes file's directory, like plugin files.
    pub dir: PathBuf,
    /// Oldest files are deleted to stay below it; writes past it fail.
    pub quota_bytes: Option<u64>,
    /// Files older than this are deleted.
    #[serde(serialize_with = "serialize_option_duration_s")]
    pub max_age: Option<Duration>,
}

fn serialize_option_duration_s<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// One `[[route]]` with `[defaults]` applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    pub name: RouteName,
    pub from: Source,
    pub to: Vec<Output>,
    /// The auth plugin deciding who may publish and read; `None` means the route is open.
    pub auth: Option<String>,
    /// Run the source only while somebody reads.
    pub on_demand: bool,
    /// How long an on-demand source keeps running after its last reader left.
    #[serde(serialize_with = "serialize_duration_ms")]
    pub idle_timeout: Duration,
    pub max_readers: Option<u32>,
    /// Options for `rtsp://` pull sources; `None` for other sources.
    pub rtsp: Option<RtspOptions>,
    /// The stream key RTMP publishers must present (OBS "Stream Key", or `?key=`); `None` accepts any.
    #[serde(skip_serializing)]
    pub publish_key: Option<String>,
    /// A new publisher replaces the current one instead of being refused.
    pub override_publisher: bool,
    /// For a template (`name = "PREFIX/*"`): how to make a route from it. `None` for a route.
    #[serde(skip_serializing)]
    pub template: Option<Template>,
    /// For a route made from a template: the template's name (`live/*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_of: Option<RouteName>,
    /// RTMP players are written to at most this often: frames that arrive in between go out together, in one
    /// system call per player. Zero writes every frame as it arrives.
    #[serde(serialize_with = "serialize_duration_ms")]
    pub write_interval: Duration,
}

/// What a template route knows beyond a route's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    /// `from` as written (after `${VAR}`), when it uses the capture `${1}`: the segment `*` matched goes there.
    pub from: Option<String>,
}

/// The capture a template's `from` may use: the last segment of the instance's name.
pub const TEMPLATE_CAPTURE: &str = "${1}";

impl RouteConfig {
    /// Whether this is a template (runs nothing; its instances do).
    pub fn is_template(&self) -> bool {
        self.template.is_some()
    }

    /// The route template `self` makes for `name` (which [`RouteTable::template_for`] matched to it).
    pub fn instantiate(&self, name: &str) -> Result<RouteConfig, String> {
        let Some(template) = &self.template else { return Err(format!("route \"{}\" is not a template", self.name)) };
        let name = RouteName::parse(name)?;
        let capture = name.as_str().rsplit('/').next().unwrap_or_default().to_string();
        let from = match &template.from {
            None => self.from.clone(),
            Some(from) => {
                let url = from.replace(TEMPLATE_CAPTURE, &capture);
                let url = Url::parse(&url).map_err(|e| format!("`from` made for \"{name}\" is not a URL ({e})"))?;
                Source::Pull { url: PullUrl(url) }
            }
        };
        Ok(RouteConfig { name, from, template: None, instance_of: Some(self.name.clone()), ..self.clone() })
    }
}

/// How to pull an RTSP camera: transport and camera quirks (retina's named policies, validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RtspOptions {
    /// "tcp" (interleaved, the default: works through NAT and firewalls) or "udp".
    pub transport: String,
    pub teardown: String,
    pub initial_timestamp: String,
    pub initial_seq: String,
    pub unknown_rtcp_ssrc: String,
    pub unassigned_channel_data: String,
    pub session_id: String,
}

impl Default for RtspOptions {
    fn default() -> Self {
        RtspOptions {
            transport: "tcp".into(),
            teardown: "auto".into(),
            initial_timestamp: "default".into(),
            initial_seq: "default".into(),
            unknown_rtcp_ssrc: "default".into(),
            unassigned_channel_data: "auto".into(),
            session_id: "default".into(),
        }
    }
}

/// On-demand sources linger this long after their last reader unless the route says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Players buffer a second or more before they start; 50 ms more is not noticed, and halves the writes of a
/// 30 fps stream (a third with audio).
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_millis(50);
/// Longer would keep frames from players for a good part of what they buffer.
pub const MAX_RTMP_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Where a route's media comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The looped clip shipped in the binary.
    Demo,
    /// A publisher connects to the router with this protocol.
    Publish { protocol: PublishProtocol },
    /// The router connects out and pulls.
    Pull { url: PullUrl },
}

impl Source {
    /// For logs and the API: the source with any URL password hidden.
    pub fn redacted(&self) -> String {
        match self {
            Source::Demo => "demo".into(),
            Source::Publish { protocol } => protocol.as_str().into(),
            Source::Pull { url } => redact_url(&url.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishProtocol {
    Whip,
    Rtmp,
    Rtsp,
    /// `from = "publisher"`: a publisher of any protocol the router takes (a camera pushing RTMP today and WHIP
    /// tomorrow keeps its route).
    #[serde(rename = "publisher")]
    Any,
}

impl PublishProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishProtocol::Whip => "whip",
            PublishProtocol::Rtmp => "rtmp",
            PublishProtocol::Rtsp => "rtsp",
            PublishProtocol::Any => "publisher",
        }
    }
}

impl Source {
    /// Whether a publisher using `protocol` may publish into a route with this source.
    pub fn takes(&self, protocol: PublishProtocol) -> bool {
        matches!(self, Source::Publish { protocol: p } if *p == protocol || *p == PublishProtocol::Any)
    }
}

/// An `rtsp://`, `rtsps://`, `rtmp://` or `rtmps://` URL (scheme checked at validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullUrl(pub Url);

impl Serialize for PullUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

/// Where a route's media goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Readers may play over WHEP.
    Whep,
    /// Readers may play over (LL-)HLS: `/{route}/index.m3u8`.
    Hls,
    /// Readers may play over RTSP.
    Rtsp,
    /// Readers may play over RTMP.
    Rtmp,
    /// Recorded by the named sink plugin.
    Record { plugin: String },
    /// Pushed by the router to another server.
    Push(Url),
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Whep => f.write_str("whep"),
            Output::Hls => f.write_str("hls"),
            Output::Rtsp => f.write_str("rtsp"),
            Output::Rtmp => f.write_str("rtmp"),
            Output::Record { plugin } => write!(f, "record:{plugin}"),
            Output::Push(url) => f.write_str(&redact_push_url(url)),
        }
    }
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Hides the password of `user:pass@` URLs and every query value (`?token=...`, `?key=...`).
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    mask_query(&mut u);
    u.to_string()
}

fn mask_query(u: &mut Url) {
    if let Some(q) = u.query() {
        let masked: Vec<String> = url::form_urlencoded::parse(q.as_bytes()).map(|(k, _)| format!("{k}=***")).collect();
        u.set_query(Some(&masked.join("&")));
    }
}

/// Push targets carry their secret in the path (`rtmp://host/app/STREAM_KEY`): hide the key as well.
pub fn redact_push_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    mask_query(&mut u);
    if u.scheme().starts_with("rtmp") {
        let segments: Vec<&str> = u.path().split('/').filter(|s| !s.is_empty()).collect();
        if segments.len() >= 2 {
            let path = format!("/{}/***", segments[..segments.len() - 1].join("/"));
            u.set_path(&path);
        }
    }
    u.to_string()
}
