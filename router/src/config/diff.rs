//! Route-by-route comparison of two tables: what a reload must touch, and nothing more.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::model::{RouteConfig, RouteName, RouteTable, ServerConfig};

/// How a route that exists in both tables changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteChange {
    /// `to`, `auth`, `on_demand` or `max_readers` changed: applied in place, the source keeps running.
    Settings,
    /// `from` changed: the new source starts in place of the old; readers stay and resume at its first keyframe.
    Source,
}

#[derive(Debug, Default, Clone)]
pub struct TableDiff {
    pub added: Vec<Arc<RouteConfig>>,
    pub removed: Vec<RouteName>,
    pub changed: Vec<(Arc<RouteConfig>, RouteChange)>,
    pub unchanged: usize,
    /// Whether `[plugins]` changed (the plugin host reloads those plugins).
    pub plugins_changed: bool,
}

pub fn diff(old: &RouteTable, new: &RouteTable) -> TableDiff {
    let mut d = TableDiff::default();
    let old_routes: HashMap<&RouteName, &Arc<RouteConfig>> = old.routes.iter().map(|r| (&r.name, r)).collect();
    let new_names: std::collections::HashSet<&RouteName> = new.routes.iter().map(|r| &r.name).collect();
    for route in &new.routes {
        match old_routes.get(&route.name) {
            None => d.added.push(Arc::clone(route)),
            Some(old) if ***old == **route => d.unchanged += 1,
            Some(old) => {
                let change = if old.from != route.from { RouteChange::Source } else { RouteChange::Settings };
                d.changed.push((Arc::clone(route), change));
            }
        }
    }
    d.removed = old.routes.iter().filter(|r| !new_names.contains(&r.name)).map(|r| r.name.clone()).collect();
    d.plugins_changed = old.plugins != new.plugins;
    d
}

/// The `[server]` keys whose change takes a restart (listeners and the data directory are set up once); the
/// others (`api_auth`, `limits`) apply at once. Compare with the server as it started, not the previous file, so
/// a change reverted is no longer reported.
pub fn restart_keys(running: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let (o, n) = (running, new);
    [
        ("server.http", o.http != n.http),
        ("server.rtsp", o.rtsp != n.rtsp),
        ("server.rtmp", o.rtmp != n.rtmp),
        ("server.mediamtx_api", o.mediamtx_api != n.mediamtx_api),
        ("server.https", o.https != n.https || o.https_redirect != n.https_redirect),
        // The files' contents reload by themselves; which files, at a restart.
        ("server.tls", o.tls != n.tls),
        ("server.webrtc", o.webrtc != n.webrtc),
        ("server.data_dir", o.data_dir != n.data_dir),
        ("server.hls", o.hls != n.hls),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> RouteTable {
        crate::config::parse(text, "t.toml", &|_| None).expect("valid")
    }

    #[test]
    fn classifies_every_route() {
        let old = table(
            r#"
            [[route]]
            name = "same"
            from = "demo"
            to = ["whep"]
            [[route]]
            name = "settings"
            from = "demo"
            to = ["whep"]
            [[route]]
            name = "source"
            from = "demo"
            to = ["whep"]
            [[route]]
            name = "gone"
            from = "demo"
            to = ["whep"]
            "#,
        );
        let new = table(
            r#"
            [[route]]
            name = "source"
            from = "rtsp://cam/1"
            to = ["whep"]
            [[route]]
            name = "same"
            from = "demo"
            to = ["whep"]
            [[route]]
            name = "settings"
            from = "demo"
            to = ["whep", "rtsp"]
            [[route]]
            name = "new"
            from = "demo"
            to = ["whep"]
            "#,
        );
        let d = diff(&old, &new);
        assert_eq!(d.unchanged, 1, "moving a route in the file is not a change");
        assert_eq!(d.added.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(d.removed.iter().map(RouteName::as_str).collect::<Vec<_>>(), ["gone"]);
        let changed: Vec<(&str, RouteChange)> = d.changed.iter().map(|(r, c)| (r.name.as_str(), *c)).collect();
        assert_eq!(changed, [("source", RouteChange::Source), ("settings", RouteChange::Settings)]);
        assert!(restart_keys(&old.server, &new.server).is_empty());
    }

    #[test]
    fn server_changes_need_a_restart() {
        let old = table("[server]\nhttp = \"127.0.0.1:8000\"\n");
        let new = table("[server]\nhttp = \"127.0.0.1:8001\"\n");
        assert_eq!(restart_keys(&old.server, &new.server), ["server.http"]);
    }
}
