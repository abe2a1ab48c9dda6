//! Why a MediaMTX setting was not converted, or `None` when it was (or sits at a default that means nothing to
//! Sluice either way).

use yaml_rust2::Yaml;

use super::values::{Section, boolean, is_empty, text};

/// Settings whose value is MediaMTX's default, which mean nothing to Sluice either way.
const QUIET_DEFAULTS: &[(&str, &str)] = &[
    ("logLevel", "info"),
    ("logDestinations", "stdout"),
    ("logFile", "mediamtx.log"),
    ("sysLogPrefix", "mediamtx"),
    ("readTimeout", "10s"),
    ("writeTimeout", "10s"),
    ("writeQueueSize", "512"),
    ("udpMaxPayloadSize", "1472"),
    ("udpReadBufferSize", "0"),
    ("authHTTPExclude", "{...},{...},{...}"),
    ("authJWTClaimKey", "mediamtx_permissions"),
    ("authJWTExclude", ""),
    ("authJWTInHTTPQuery", "true"),
    ("apiAllowOrigin", "*"),
    ("rtspAuthMethods", "basic"),
    ("authMethods", "basic"),
    ("protocols", "udp,multicast,tcp"),
    ("encryption", "no"),
    ("rtmpEncryption", "no"),
    ("webrtcEncryption", "false"),
    ("webrtcAllowOrigin", "*"),
    ("webrtcIPsFromInterfaces", "true"),
    ("webrtcHandshakeTimeout", "10s"),
    ("webrtcTrackGatherTimeout", "2s"),
    ("webrtcSTUNGatherTimeout", "5s"),
    ("sourceOnDemandStartTimeout", "10s"),
    ("runOnDemandStartTimeout", "10s"),
    ("runOnDemandCloseAfter", "10s"),
    ("recordMaxPartSize", "50M"),
    ("rtspRangeType", ""),
    ("rtspUDPReadBufferSize", "0"),
    ("rtspAnyPort", "false"),
    ("hlsAddress", ":8888"),
    ("hlsEncryption", "false"),
    ("hlsAllowOrigin", "*"),
    ("hlsAlwaysRemux", "false"),
    ("hlsVariant", "lowLatency"),
    ("hlsMuxerCloseAfter", "60s"),
];

pub fn quiet_default(key: &str, v: &Yaml) -> bool {
    let t = text(v);
    is_empty(v)
        || QUIET_DEFAULTS.iter().any(|(k, d)| *k == key && (t == *d || boolean(v).is_some_and(|b| b.to_string() == *d)))
}

const HOOKS: &str = "Sluice runs no commands on events: a plugin (sdk/) can react to clients, and /v1 and /metrics \
                     show what runs";

/// Why a global setting was not converted; `None` for converted ones and those at MediaMTX's default.
pub fn global_reason(key: &str, v: &Yaml, g: &Section) -> Option<String> {
    let converted = [
        "webrtc",
        "webrtcDisable",
        "rtsp",
        "rtspDisable",
        "rtmp",
        "rtmpDisable",
        "webrtcAddress",
        "rtspAddress",
        "rtmpAddress",
        "api",
        "apiAddress",
        "webrtcLocalUDPAddress",
        "webrtcICEUDPMuxAddress",
        "webrtcAdditionalHosts",
        "webrtcICEHostNAT1To1IPs",
        "webrtcICEServers2",
        "webrtcICEServers",
        "webrtcTrustedProxies",
        "hlsTrustedProxies",
        "apiTrustedProxies",
        "playbackTrustedProxies",
        "authMethod",
        "authInternalUsers",
        "authJWTClaimKey",
        "authJWTJWKS",
        "authJWTIssuer",
        "authJWTAudience",
        "externalAuthenticationURL",
        "paths",
        "pathDefaults",
        "hls",
        "hlsDisable",
        "hlsSegmentDuration",
        "hlsPartDuration",
        "hlsSegmentCount",
        "srt",
    ];
    if converted.contains(&key) || quiet_default(key, v) {
        return None;
    }
    let on = |k: &str| g.get(k).and_then(boolean).unwrap_or(false);
    let reason = match key {
        "logLevel" | "logDestinations" | "logFile" | "sysLogPrefix" => {
            "Sluice logs to standard error: RUST_LOG sets the level (RUST_LOG=debug), --log-format json the format"
        }
        "readTimeout" | "writeTimeout" | "writeQueueSize" | "udpMaxPayloadSize" | "udpReadBufferSize" => {
            "Sluice has its own: [server.limits] for clients' timeouts, and a slow reader skips to the next keyframe"
        }
        "runOnConnectRestart" => return None,
        "runOnConnect" | "runOnDisconnect" => HOOKS,
        "authHTTPAddress" | "authHTTPExclude" => "see authMethod",
        k if k.starts_with("authJWT") => "auth-jwt takes tokens from Bearer, ?token= and Basic passwords alike",
        k if k.starts_with("api") => "the v3 API is served over plain HTTP to any origin",
        "metrics" => "Sluice serves Prometheus metrics at /metrics on its HTTP listener",
        "pprof" => "there is no profiler endpoint",
        "playback" => {
            "recordings are listed and served by /v1/recordings on the HTTP listener (and /v3/recordings/list)"
        }
        k if k.starts_with("metrics") || k.starts_with("pprof") || k.starts_with("playback") => return None,
        "protocols" => "Sluice's RTSP offers TCP and UDP unicast, always; no multicast",
        "encryption" => "RTSPS is not served: put a TLS proxy in front, or use RTSP",
        "rtspsAddress" | "serverKey" | "serverCert" | "rtspServerKey" | "rtspServerCert" if !on("encryption") => {
            return None;
        }
        "rtspsAddress" | "serverKey" | "serverCert" | "rtspServerKey" | "rtspServerCert" => "see encryption",
        "rtspAuthMethods" | "authMethods" => "Sluice's RTSP asks for Basic credentials (Digest is not offered)",
        "rtpAddress" | "rtcpAddress" | "srtpAddress" | "srtcpAddress" => {
            "Sluice gives each RTSP stream over UDP its own port pair: open UDP to the router, or have players use TCP"
        }
        k if k.starts_with("multicast") => return None,
        "rtmpEncryption" => "RTMPS is not served: put a TLS proxy in front, or use RTMP",
        "rtmpsAddress" | "rtmpServerKey" | "rtmpServerCert" => return None,
        "webrtcEncryption" | "webrtcServerKey" | "webrtcServerCert" => return None,
        "webrtcAllowOrigin" => "WHIP and WHEP answer every origin (Access-Control-Allow-Origin: *)",
        "webrtcLocalTCPAddress" | "webrtcICETCPMuxAddress" => {
            "ICE over TCP is not offered: WebRTC uses its one UDP port"
        }
        "webrtcIPsFromInterfaces" | "webrtcIPsFromInterfacesList" => {
            "Sluice advertises every interface's address (and `public_ips` first)"
        }
        k if k.starts_with("webrtc") => "Sluice's own WebRTC timeouts apply",
        "hlsAddress" => "HLS is served on the HTTP listener: http://HOST:8889/PATH/index.m3u8",
        "hlsEncryption" | "hlsServerKey" | "hlsServerCert" => "HLS is served over `https` too when it is set",
        "hlsAllowOrigin" => "HLS answers every origin (Access-Control-Allow-Origin: *)",
        "hlsAlwaysRemux" => "a route's HLS muxer starts with its first viewer",
        "hlsVariant" => "HLS is always LL-HLS with fMP4 parts; plain.m3u8 lists complete segments only (no MPEG-TS)",
        "hlsMuxerCloseAfter" => "a route's HLS muxer stops 30 s after its last viewer",
        k if k.starts_with("hls") || k.starts_with("srt") => return None,
        _ => "not a setting this importer knows: set its Sluice equivalent by hand, if there is one",
    };
    Some(reason.to_string())
}

/// Why a path setting was not converted; `None` for converted ones and those at MediaMTX's default.
pub fn path_reason(key: &str, v: &Yaml) -> Option<String> {
    let converted = [
        "source",
        "sourceOnDemand",
        "sourceOnDemandCloseAfter",
        "maxReaders",
        "overridePublisher",
        "disablePublisherOverride",
        "record",
        "recordPath",
        "recordPartDuration",
        "recordSegmentDuration",
        "recordDeleteAfter",
        "readIPs",
        "publishIPs",
        "readUser",
        "readPass",
        "publishUser",
        "publishPass",
        "sourceFingerprint",
        "sourceRedirect",
    ];
    if converted.contains(&key) || key.starts_with("rpiCamera") || quiet_default(key, v) {
        return None;
    }
    let reason = match key {
        "rtspTransport" | "sourceProtocol" => match text(v).as_str() {
            "udp" | "tcp" | "automatic" => return None,
            _ => "pulled over TCP: multicast is not supported",
        },
        "recordFormat" => match text(v).as_str() {
            "fmp4" => return None,
            _ => "recorded as fragmented MP4 (Sluice's recorder writes MP4 only)",
        },
        "recordMaxPartSize" => "the recorder cuts parts by duration only",
        // The hook itself is reported.
        k if k.starts_with("runOn") && k.ends_with("Restart") => return None,
        k if k.starts_with("runOn") => HOOKS,
        "sourceOnDemandStartTimeout" => "Sluice's own wait for a source applies",
        "fallback" => "no fallback stream: readers of a route without a source wait for one",
        "useAbsoluteTimestamp" => "timestamps are the source's own, and RTCP sender reports carry wall-clock time",
        "rtspAnyPort" | "sourceAnyPortEnable" => "UDP from other ports is not accepted: use TCP (the default)",
        "rtspRangeType" | "rtspRangeStart" => "pulls always start live",
        "rtspUDPReadBufferSize" => "Sluice's own UDP buffers apply",
        "srtReadPassphrase" | "srtPublishPassphrase" => "SRT is not served",
        _ => "not a path setting this importer knows: set its Sluice equivalent by hand, if there is one",
    };
    Some(reason.to_string())
}
