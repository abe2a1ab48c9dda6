//! `GET /metrics` in the Prometheus text format, every name prefixed `sluice_`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use futures_util::future::join_all;

use super::AppState;
use crate::route::{RouteSnapshot, RouteState};
use crate::webrtc::session::RoleKind;
use crate::webrtc::{SessionInfo, ShardLoad, ShardStats};

/// (name, Prometheus type, help, value of one route).
type Series = (&'static str, &'static str, &'static str, fn(&RouteSnapshot) -> f64);

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let dir = state.runtime.directory();
    let snapshots = join_all(dir.routes.iter().map(|(c, h)| async move { (c.name.clone(), h.snapshot().await) })).await;
    let mut out = String::with_capacity(4096 + snapshots.len() * 1024);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP sluice_{name} {help}\n# TYPE sluice_{name} {kind}");
    };
    family(&mut out, "build_info", "gauge", "Version of the running router.");
    let _ = writeln!(out, "sluice_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    family(&mut out, "uptime_seconds", "gauge", "Seconds since the router started.");
    let _ = writeln!(out, "sluice_uptime_seconds {:.3}", state.started.elapsed().as_secs_f64());
    family(
        &mut out,
        "config_valid",
        "gauge",
        "1 if the routes file on disk is valid, 0 if the last reload was rejected.",
    );
    let _ = writeln!(out, "sluice_config_valid {}", u8::from(dir.config_error.is_none()));
    family(&mut out, "config_reloads_total", "counter", "Reloads of the routes file by result.");
    let _ = writeln!(out, "sluice_config_reloads_total{{result=\"applied\"}} {}", dir.reloads_applied);
    let _ = writeln!(out, "sluice_config_reloads_total{{result=\"rejected\"}} {}", dir.reloads_rejected);
    family(&mut out, "connections", "gauge", "TCP connections open on every listener (HTTP, RTMP).");
    let _ = writeln!(out, "sluice_connections {}", state.connections.open());
    family(&mut out, "connections_max", "gauge", "The cap on TCP connections (`server.limits.connections`).");
    let _ = writeln!(out, "sluice_connections_max {}", state.connections.cap(&dir.table.server.limits));
    family(&mut out, "connections_refused_total", "counter", "TCP connections refused, by the cap they hit.");
    let (total, per_address) = state.connections.refused();
    let _ = writeln!(out, "sluice_connections_refused_total{{limit=\"total\"}} {total}");
    let _ = writeln!(out, "sluice_connections_refused_total{{limit=\"per_address\"}} {per_address}");
    family(&mut out, "signaling_clients", "gauge", "Clients connected to each signaling mount.");
    for (plugin, path, clients) in state.signaling.stats() {
        let _ = writeln!(out, "sluice_signaling_clients{{plugin=\"{plugin}\",mount=\"{path}\"}} {clients}");
    }
    family(&mut out, "routes", "gauge", "Routes configured.");
    let _ = writeln!(out, "sluice_routes {}", dir.routes.len());
    plugin_metrics(&mut out, &dir.plugins);

    let live: Vec<(&str, &RouteSnapshot)> =
        snapshots.iter().filter_map(|(n, s)| s.as_ref().ok().map(|s| (n.as_str(), s))).collect();
    family(&mut out, "route_state", "gauge", "1 for the state each route is in.");
    for (name, s) in &live {
        for st in RouteState::ALL {
            let _ = writeln!(
                out,
                "sluice_route_state{{route=\"{name}\",state=\"{}\"}} {}",
                st.as_str(),
                u8::from(s.state == st)
            );
        }
    }
    let series: [Series; 11] = [
        ("route_reconnects_total", "counter", "Times the source lost or could not reach its peer and retried.", |s| {
            s.reconnects as f64
        }),
        ("route_readers", "gauge", "Readers attached to the route.", |s| s.reader_count as f64),
        ("route_frames_in_total", "counter", "Frames received from the source.", |s| s.frames_in as f64),
        ("route_bytes_in_total", "counter", "Payload bytes received from the source.", |s| s.bytes_in as f64),
        ("route_frames_out_total", "counter", "Frames queued to readers (summed over readers).", |s| {
            s.frames_out as f64
        }),
        ("route_bytes_out_total", "counter", "Payload bytes queued to readers (summed over readers).", |s| {
            s.bytes_out as f64
        }),
        ("route_frames_dropped_total", "counter", "Frames slow readers lost (dropped to the next keyframe).", |s| {
            s.frames_dropped as f64
        }),
        ("route_bitrate_in_bps", "gauge", "Source bitrate over the last second.", |s| s.bitrate_in_bps as f64),
        ("route_bitrate_out_bps", "gauge", "Bitrate to all readers over the last second.", |s| {
            s.bitrate_out_bps as f64
        }),
        ("route_uptime_seconds", "gauge", "Seconds since the route went live (0 when not live).", |s| {
            s.uptime_seconds.unwrap_or(0.0)
        }),
        ("route_source_starts_total", "counter", "Times the route's source was started (restarts included).", |s| {
            s.source_starts as f64
        }),
    ];
    for (name, kind, help, value) in series {
        family(&mut out, name, kind, help);
        for (route, s) in &live {
            let _ = writeln!(out, "sluice_{name}{{route=\"{route}\"}} {}", value(s));
        }
    }
    webrtc_metrics(&mut out, &state.webrtc.stats().await, &family);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// (name, Prometheus type, help, value of one session).
type SessionSeries = (&'static str, &'static str, &'static str, fn(&SessionInfo) -> Option<f64>);

fn webrtc_metrics(out: &mut String, stats: &ShardStats, family: &impl Fn(&mut String, &str, &str, &str)) {
    family(out, "webrtc_sessions", "gauge", "WebRTC sessions by role.");
    for role in [RoleKind::Viewer, RoleKind::Publisher] {
        let n = stats.sessions.iter().filter(|s| s.role == role).count();
        let _ = writeln!(out, "sluice_webrtc_sessions{{role=\"{}\"}} {n}", role_label(role));
    }
    family(
        out,
        "webrtc_frame_latency_seconds",
        "histogram",
        "From a frame's arrival at the router to its first packet leaving for a WHEP viewer.",
    );
    for (count, le) in stats.frame_latency.buckets.iter().zip(crate::webrtc::shard::LATENCY_BUCKETS) {
        let _ = writeln!(out, "sluice_webrtc_frame_latency_seconds_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "sluice_webrtc_frame_latency_seconds_bucket{{le=\"+Inf\"}} {}", stats.frame_latency.count);
    let _ = writeln!(out, "sluice_webrtc_frame_latency_seconds_sum {}", stats.frame_latency.sum_seconds);
    let _ = writeln!(out, "sluice_webrtc_frame_latency_seconds_count {}", stats.frame_latency.count);
    family(out, "webrtc_datagrams_sent_total", "counter", "UDP datagrams sent by the WebRTC socket.");
    let _ = writeln!(out, "sluice_webrtc_datagrams_sent_total {}", stats.datagrams_sent);
    family(out, "webrtc_send_calls_total", "counter", "Send system calls (GSO batches several datagrams in one).");
    let _ = writeln!(out, "sluice_webrtc_send_calls_total {}", stats.send_calls);
    family(out, "webrtc_send_errors_total", "counter", "Datagrams dropped because the socket buffer was full.");
    let _ = writeln!(out, "sluice_webrtc_send_errors_total {}", stats.send_errors);
    /// (name, Prometheus type, help, value of one shard).
    type ShardSeries = (&'static str, &'static str, &'static str, fn(&ShardLoad) -> u64);
    let per_shard: [ShardSeries; 5] = [
        ("webrtc_shard_sessions", "gauge", "WebRTC sessions living on each shard (thread).", |s| s.sessions as u64),
        ("webrtc_shard_datagrams_received_total", "counter", "Datagrams each shard's socket received.", |s| {
            s.datagrams_received
        }),
        ("webrtc_shard_datagrams_sent_total", "counter", "Datagrams each shard sent.", |s| s.datagrams_sent),
        (
            "webrtc_shard_datagrams_forwarded_total",
            "counter",
            "Datagrams a shard's socket received for peers of another shard and passed on to it.",
            |s| s.datagrams_forwarded,
        ),
        (
            "webrtc_shard_forward_drops_total",
            "counter",
            "Datagrams for another shard dropped because its queue was full.",
            |s| s.forward_drops,
        ),
    ];
    for (name, kind, help, value) in per_shard {
        family(out, name, kind, help);
        for s in &stats.shards {
            let _ = writeln!(out, "sluice_{name}{{shard=\"{}\"}} {}", s.shard, value(s));
        }
    }
    let series: [SessionSeries; 9] = [
        ("webrtc_session_bytes_sent_total", "counter", "Bytes sent to the peer (SRTP, RTCP, STUN, DTLS).", |s| {
            Some(s.stats.bytes_sent as f64)
        }),
        ("webrtc_session_bytes_received_total", "counter", "Media payload bytes received from the peer.", |s| {
            Some(s.stats.bytes_received as f64)
        }),
        ("webrtc_session_packets_sent_total", "counter", "RTP packets sent.", |s| Some(s.stats.packets_sent as f64)),
        ("webrtc_session_frames_received_total", "counter", "Media frames received from a publisher.", |s| {
            Some(s.stats.frames_received as f64)
        }),
        ("webrtc_session_nacks_total", "counter", "NACKs (retransmission requests) seen.", |s| {
            Some(s.stats.nacks as f64)
        }),
        ("webrtc_session_plis_total", "counter", "Picture loss indications from the viewer.", |s| {
            Some(s.stats.plis as f64)
        }),
        ("webrtc_session_firs_total", "counter", "Full intra requests from the viewer.", |s| Some(s.stats.firs as f64)),
        ("webrtc_session_loss_ratio", "gauge", "Fraction of packets lost, as last reported.", |s| {
            s.stats.loss.map(f64::from)
        }),
        ("webrtc_session_rtt_seconds", "gauge", "Round-trip time, as last measured.", |s| {
            s.stats.rtt_ms.map(|ms| ms / 1000.0)
        }),
    ];
    for (name, kind, help, value) in series {
        family(out, name, kind, help);
        for s in &stats.sessions {
            if let Some(v) = value(s) {
                let _ = writeln!(
                    out,
                    "sluice_{name}{{route=\"{}\",session=\"{}\",role=\"{}\"}} {v}",
                    s.route,
                    &s.id[..8.min(s.id.len())],
                    role_label(s.role)
                );
            }
        }
    }
}

fn role_label(role: RoleKind) -> &'static str {
    match role {
        RoleKind::Viewer => "viewer",
        RoleKind::Publisher => "publisher",
    }
}

/// Per loaded plugin: calls, failures by kind (each failure recycles an instance), instantiations, time inside.
fn plugin_metrics(out: &mut String, plugins: &crate::plugin::Plugins) {
    use crate::plugin::PluginStats;
    /// (name, help, value of one plugin's stats).
    type PluginSeries = (&'static str, &'static str, fn(&PluginStats) -> f64);
    let series: [PluginSeries; 4] = [
        ("plugin_calls_total", "Calls into each plugin.", |s| PluginStats::get(&s.calls) as f64),
        ("plugin_instances_recycled_total", "Plugin instances thrown away after a failure.", |s| {
            PluginStats::get(&s.recycled) as f64
        }),
        ("plugin_instantiations_total", "Plugin instances created from the pre-instantiated component.", |s| {
            PluginStats::get(&s.instantiations) as f64
        }),
        ("plugin_call_seconds_total", "Time spent inside each plugin's calls.", |s| {
            PluginStats::get(&s.call_nanos) as f64 / 1e9
        }),
    ];
    for (family, help, value) in series {
        let _ = writeln!(out, "# HELP sluice_{family} {help}\n# TYPE sluice_{family} counter");
        for (name, p) in plugins.iter() {
            let _ = writeln!(out, "sluice_{family}{{plugin=\"{name}\"}} {}", value(p.plugin.stats()));
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_plugin_failures_total Plugin calls that trapped, timed out or ran out of memory; each \
         recycled its instance.\n# TYPE sluice_plugin_failures_total counter"
    );
    for (name, p) in plugins.iter() {
        let s = p.plugin.stats();
        for (kind, counter) in [
            ("timeout", &s.timeouts),
            ("out_of_memory", &s.out_of_memory),
            ("trap", &s.traps),
            ("instantiate", &s.instantiate_failures),
        ] {
            let _ = writeln!(
                out,
                "sluice_plugin_failures_total{{plugin=\"{name}\",kind=\"{kind}\"}} {}",
                PluginStats::get(counter)
            );
        }
    }
}
