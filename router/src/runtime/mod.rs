//! Builds routes from the route table and keeps them in step with routes.toml.
//!
//! The [`Runtime`] actor owns the running routes ([`RouteSet`]). Reload requests (file watcher, SIGHUP,
//! `POST /v1/reload`) reach it over one channel, so reloads never interleave. A reload reads and validates the
//! whole file first; an invalid file changes nothing but the reported error. A valid one is diffed route by route
//! and only the routes that changed are touched. After each reload the runtime publishes a new [`Directory`]
//! (routes + status) on a `watch` channel, which is what the HTTP API reads.

pub mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch as tokio_watch};

use crate::admit::{Admission, MakeRoute, Routes};
use crate::config::diff::{RouteChange, TableDiff, diff};
use crate::config::edit::{EditError, RouteEdit};
use crate::config::model::PluginWorld;
use crate::config::model::{Output, RouteConfig, RouteName, RouteTable};
use crate::config::{self, ConfigErrors};
use crate::egress::push::PushStatus;
use crate::egress::record::{Recording, RecordingStatus};
use crate::ingest;
use crate::plugin::storage::Storages;
use crate::plugin::{PluginHost, Plugins};
use crate::recording::Recordings;
use crate::recording::index::Index;
use crate::route::{RouteHandle, spawn_route};

/// The running routes, keyed by name, and their push outputs.
#[derive(Debug)]
pub struct RouteSet {
    table: Arc<RouteTable>,
    routes: HashMap<RouteName, (Arc<RouteConfig>, RouteHandle)>,
    pushes: HashMap<(RouteName, String), Push>,
    /// The plugins of `table` (recordings need their sink plugins).
    plugins: Plugins,
    /// Running recordings by (route, sink plugin).
    recordings: HashMap<(RouteName, String), Recording>,
    /// Recordings started (true) or stopped (false) through the API, overriding `to` while the route exists.
    record_overrides: HashMap<(RouteName, String), bool>,
    /// Routes made from templates (also in `routes`), and since when each has been idle.
    instances: HashMap<RouteName, Option<Instant>>,
}

/// Why a recording could not be started or stopped from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    NoRoute,
    /// No plugin named, and the route records with none or several: the message says which.
    Ambiguous(String),
    NotASink(String),
}

/// A running (or impossible) push to another server, from a route's `to`.
#[derive(Debug)]
struct Push {
    task: Option<tokio::task::JoinHandle<()>>,
    status: Arc<std::sync::Mutex<PushStatus>>,
}

impl Drop for Push {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl RouteSet {
    /// Starts every route of `table`.
    pub fn start(table: RouteTable) -> Self {
        let routes = table
            .routes
            .iter()
            .filter(|r| !r.is_template())
            .map(|r| (r.name.clone(), (Arc::clone(r), spawn_route(Arc::clone(r), ingest::source_for(r)))))
            .collect();
        let mut set = RouteSet {
            table: Arc::new(table),
            routes,
            pushes: HashMap::new(),
            plugins: Plugins::default(),
            recordings: HashMap::new(),
            record_overrides: HashMap::new(),
            instances: HashMap::new(),
        };
        set.sync_pushes();
        set
    }

    /// Uses `plugins` (those of the current table) and starts the recordings they make possible.
    pub fn use_plugins(&mut self, plugins: Plugins) {
        self.plugins = plugins;
        self.sync_recordings();
    }

    /// Starts the recordings `to` and the API ask for, stops the others, and moves running ones to a reloaded
    /// plugin's new version (at their next keyframe).
    fn sync_recordings(&mut self) {
        let routes: std::collections::HashSet<&RouteName> = self.routes.keys().collect();
        self.record_overrides.retain(|(route, _), _| routes.contains(route));
        let mut wanted = std::collections::HashSet::new();
        for (route, _) in self.routes.values() {
            for output in &route.to {
                if let Output::Record { plugin } = output {
                    wanted.insert((route.name.clone(), plugin.clone()));
                }
            }
        }
        for (key, on) in &self.record_overrides {
            if *on {
                wanted.insert(key.clone());
            } else {
                wanted.remove(key);
            }
        }
        self.recordings.retain(|key, r| wanted.contains(key) && !r.task.is_finished());
        for key in wanted {
            let Some(plugin) = self.plugins.get(&key.1).filter(|p| p.plugin.as_sink().is_some()) else { continue };
            match self.recordings.get(&key) {
                Some(recording) => recording.switch_plugin(plugin),
                None => {
                    let Some((_, handle)) = self.routes.get(&key.0) else { continue };
                    let by_api = self.record_overrides.get(&key) == Some(&true);
                    tracing::info!(route = %key.0, plugin = %key.1, "recording started");
                    let recording = Recording::start(handle.clone(), &key.1, Arc::clone(plugin), by_api);
                    self.recordings.insert(key, recording);
                }
            }
        }
    }

    /// Starts or stops recording `route` with `plugin` (default: the sink the route records with, or the only
    /// sink plugin there is), whatever `to` says, until the route is removed.
    pub fn set_recording(
        &mut self,
        route: &str,
        plugin: Option<&str>,
        on: bool,
    ) -> Result<(String, Option<RecordingStatus>), RecordError> {
        let Some((config, _)) = self.routes.iter().find(|(n, _)| n.as_str() == route).map(|(_, r)| r.clone()) else {
            return Err(RecordError::NoRoute);
        };
        let sinks: Vec<&String> =
            self.plugins.iter().filter(|(_, p)| p.plugin.as_sink().is_some()).map(|(n, _)| n).collect();
        let plugin = match plugin {
            Some(p) if sinks.iter().any(|s| s.as_str() == p) => p.to_string(),
            Some(p) => return Err(RecordError::NotASink(p.to_string())),
            None => {
                let in_to: Vec<&String> = config
                    .to
                    .iter()
                    .filter_map(|o| if let Output::Record { plugin } = o { Some(plugin) } else { None })
                    .collect();
                match (in_to.as_slice(), sinks.as_slice()) {
                    ([one], _) | ([], [one]) => one.to_string(),
                    ([], []) => return Err(RecordError::Ambiguous("no sink plugin is configured: add one, e.g. [plugins.mp4] with source = \"builtin:record-mp4\"".into())),
                    (_, _) => return Err(RecordError::Ambiguous(format!(
                        "name the plugin to record with: {}",
                        if in_to.is_empty() { &sinks } else { &in_to }.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        };
        let key = (config.name.clone(), plugin.clone());
        self.record_overrides.insert(key.clone(), on);
        self.sync_recordings();
        Ok((plugin, self.recordings.get(&key).map(Recording::status)))
    }

    /// Recording statuses, by route.
    pub fn recording_statuses(&self) -> Vec<(RouteName, Arc<std::sync::Mutex<RecordingStatus>>)> {
        self.recordings.iter().map(|((route, _), r)| (route.clone(), Arc::clone(&r.status))).collect()
    }

    /// Starts the pushes the table lists and stops the ones it no longer does; running ones are untouched.
    fn sync_pushes(&mut self) {
        let mut wanted = std::collections::HashSet::new();
        for (route, handle) in self.routes.values() {
            for output in &route.to {
                let Output::Push(url) = output else { continue };
                let key = (route.name.clone(), url.to_string());
                wanted.insert(key.clone());
                // A push whose task ended (its route actor was recreated) is started again on the new handle.
                if self.pushes.get(&key).is_some_and(|p| p.task.as_ref().is_none_or(|t| !t.is_finished())) {
                    continue;
                }
                let push = if url.scheme() == "rtmp" {
                    let (task, status) = crate::egress::push::spawn_push(handle.clone(), url.clone());
                    Push { task: Some(task), status }
                } else {
                    let status = PushStatus {
                        target: crate::config::model::redact_push_url(url),
                        state: "unavailable",
                        last_error: Some(format!("pushing to {}:// is not available in this build yet", url.scheme())),
                        ..Default::default()
                    };
                    Push { task: None, status: Arc::new(std::sync::Mutex::new(status)) }
                };
                self.pushes.insert(key, push);
            }
        }
        self.pushes.retain(|k, _| wanted.contains(k));
    }

    /// Push statuses, by route.
    pub fn push_statuses(&self) -> Vec<(RouteName, Arc<std::sync::Mutex<PushStatus>>)> {
        self.pushes.iter().map(|((route, _), p)| (route.clone(), Arc::clone(&p.status))).collect()
    }

    pub fn table(&self) -> &Arc<RouteTable> {
        &self.table
    }

    pub fn get(&self, name: &RouteName) -> Option<&RouteHandle> {
        self.routes.get(name).map(|(_, h)| h)
    }

    /// The route `name` made from the template it matches (or already made); `None` when no template makes it.
    pub fn make(&mut self, name: &str, admitted: &RouteConfig) -> Option<(Arc<RouteConfig>, RouteHandle)> {
        let parsed = RouteName::parse(name).ok()?;
        // Only from the template admission decided on, unchanged: a reload in between may have changed it (or
        // added an exact route of this name), and the request must then be decided again.
        let current = self.table.template_for(name).filter(|t| ***t == *admitted)?;
        if let Some(running) = self.routes.get(&parsed) {
            if running.0.instance_of.as_ref() != Some(&current.name) {
                return None;
            }
            // Someone is coming: the idle clock starts again.
            self.instances.insert(parsed, None);
            return Some(running.clone());
        }
        if self.instances.len() >= MAX_MADE_ROUTES {
            tracing::warn!(
                route = name,
                max = MAX_MADE_ROUTES,
                "not made from its template: too many routes made from templates"
            );
            return None;
        }
        let template = current;
        let config = match template.instantiate(name) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(route = name, template = %template.name, error = %e, "cannot make a route from its template");
                return None;
            }
        };
        let handle = spawn_route(Arc::clone(&config), ingest::source_for(&config));
        tracing::info!(route = name, template = %template.name, "route made from its template");
        self.routes.insert(parsed.clone(), (Arc::clone(&config), handle.clone()));
        self.instances.insert(parsed, None);
        self.sync_pushes();
        self.sync_recordings();
        Some((config, handle))
    }

    /// Ends the routes made from templates that have been idle (no publisher or source, no reader but
    /// recordings) for their `idle_timeout`; true if any ended.
    pub async fn end_idle(&mut self, now: Instant) -> bool {
        use crate::route::ReaderKind;
        // Asked together, each with a deadline: one stuck route must not hold up the runtime.
        let names: Vec<RouteName> = self.instances.keys().cloned().collect();
        let snapshots = futures_util::future::join_all(names.iter().map(|name| {
            let handle = self.routes.get(name).map(|(_, h)| h.clone());
            async move {
                let handle = handle?;
                tokio::time::timeout(Duration::from_secs(1), handle.snapshot()).await.ok().map(|s| s.ok())
            }
        }))
        .await;
        let mut ended = Vec::new();
        for (name, snapshot) in names.iter().zip(snapshots) {
            let Some((config, _)) = self.routes.get(name) else { continue };
            let Some(idle_since) = self.instances.get_mut(name) else { continue };
            let idle = match snapshot {
                // Busy (no answer in time): not idle.
                None => false,
                // Recordings and pushes follow the route; they do not keep it.
                Some(Some(s)) => {
                    !s.source_running
                        && s.readers.iter().all(|r| {
                            matches!(r.kind, ReaderKind::Record | ReaderKind::Push)
                                || (r.kind == ReaderKind::Whep && r.viewers == 0)
                        })
                }
                Some(None) => true,
            };
            match (idle, *idle_since) {
                (false, _) => *idle_since = None,
                (true, None) => *idle_since = Some(now),
                (true, Some(since)) if now.duration_since(since) >= config.idle_timeout => ended.push(name.clone()),
                (true, Some(_)) => {}
            }
        }
        for name in &ended {
            self.end_instance(name).await;
            tracing::info!(route = %name, "route made from a template ended: idle");
        }
        if !ended.is_empty() {
            self.sync_pushes();
            self.sync_recordings();
        }
        !ended.is_empty()
    }

    /// Ends route `name` now if it was made from a template (its publisher and readers are cut off); false when
    /// there is no such route.
    pub async fn end_made(&mut self, name: &RouteName) -> bool {
        if !self.instances.contains_key(name) {
            return false;
        }
        self.end_instance(name).await;
        self.sync_pushes();
        self.sync_recordings();
        tracing::info!(route = %name, "route made from a template ended on request");
        true
    }

    async fn end_instance(&mut self, name: &RouteName) {
        self.instances.remove(name);
        if let Some((_, handle)) = self.routes.remove(name) {
            handle.stop().await;
        }
    }

    /// Moves to `table`, touching only the routes that differ. Routes made from a template that changed or went
    /// (or whose name an exact route now takes) end; their publishers reconnect to the new version.
    pub async fn apply(&mut self, table: RouteTable) -> TableDiff {
        let d = diff(&self.table, &table);
        let stale: Vec<RouteName> = self
            .instances
            .keys()
            .filter(|name| {
                let old = self.table.template_for(name.as_str());
                let new = table.template_for(name.as_str());
                let taken = table.routes.iter().any(|r| &r.name == *name);
                taken || old.is_none() || new.is_none() || old.map(|t| &**t) != new.map(|t| &**t)
            })
            .cloned()
            .collect();
        for name in &stale {
            self.end_instance(name).await;
            tracing::info!(route = %name, "route made from a template ended: its template changed");
        }
        for name in &d.removed {
            if let Some((_, handle)) = self.routes.remove(name) {
                handle.stop().await;
                tracing::info!(route = %name, "route removed");
            }
        }
        for (route, change) in &d.changed {
            let Some((config, handle)) = self.routes.get_mut(&route.name) else {
                continue;
            };
            let source = (*change == RouteChange::Source).then(|| ingest::source_for(route));
            if handle.update(Arc::clone(route), source).await.is_err() {
                // The actor died (it never should); start the route afresh rather than leave a dead name.
                tracing::error!(route = %route.name, "route actor was gone; recreating it");
                *handle = spawn_route(Arc::clone(route), ingest::source_for(route));
            }
            *config = Arc::clone(route);
            tracing::info!(route = %route.name, ?change, "route updated");
        }
        for route in d.added.iter().filter(|r| !r.is_template()) {
            let handle = spawn_route(Arc::clone(route), ingest::source_for(route));
            self.routes.insert(route.name.clone(), (Arc::clone(route), handle));
            tracing::info!(route = %route.name, "route added");
        }
        self.table = Arc::new(table);
        self.sync_pushes();
        self.sync_recordings();
        d
    }

    /// Routes in file order, then the routes made from templates by name.
    pub fn in_order(&self) -> Vec<(Arc<RouteConfig>, RouteHandle)> {
        let mut made: Vec<_> = self.instances.keys().filter_map(|n| self.routes.get(n).cloned()).collect();
        made.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        self.table.routes.iter().filter_map(|r| self.routes.get(&r.name).cloned()).chain(made).collect()
    }

    /// Whether any route was made from a template (the runtime then checks them for idleness).
    pub fn has_instances(&self) -> bool {
        !self.instances.is_empty()
    }

    pub async fn stop_all(&mut self) {
        self.pushes.clear();
        // Recordings first, while their routes still run: each commits its segment (one deadline for all).
        let tasks: Vec<_> = self
            .recordings
            .drain()
            .map(|(_, mut r)| {
                r.stop();
                std::mem::replace(&mut r.task, tokio::spawn(async {}))
            })
            .collect();
        if tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(tasks)).await.is_err() {
            tracing::warn!("recordings did not all finish within 10 s of shutdown");
        }
        for (_, (_, handle)) in self.routes.drain() {
            handle.stop().await;
        }
    }
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadTrigger {
    Startup,
    FileChange,
    Signal,
    Api,
    /// A route added, changed or removed through the API (the file was edited, then applied).
    RouteApi,
}

/// What a reload changed, for the API and logs.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
    pub restarted_sources: Vec<String>,
    pub unchanged: usize,
    /// `[server]` keys that changed and need a restart to take effect.
    pub needs_restart: Vec<&'static str>,
    /// Plugins loaded afresh because their file or settings changed (new sessions use the new version).
    pub plugins_reloaded: Vec<String>,
    /// Plugins declared for the first time, and plugins no longer declared.
    pub plugins_added: Vec<String>,
    pub plugins_removed: Vec<String>,
}

impl From<&TableDiff> for ReloadSummary {
    fn from(d: &TableDiff) -> Self {
        let names =
            |c: RouteChange| d.changed.iter().filter(|(_, k)| *k == c).map(|(r, _)| r.name.to_string()).collect();
        ReloadSummary {
            added: d.added.iter().map(|r| r.name.to_string()).collect(),
            removed: d.removed.iter().map(ToString::to_string).collect(),
            updated: names(RouteChange::Settings),
            restarted_sources: names(RouteChange::Source),
            unchanged: d.unchanged,
            // Set by the reload, against the server as it started (the diff knows only the previous file).
            needs_restart: Vec::new(),
            plugins_reloaded: Vec::new(),
            plugins_added: Vec::new(),
            plugins_removed: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    pub trigger: ReloadTrigger,
    #[serde(serialize_with = "serialize_unix_time")]
    pub at: SystemTime,
    pub duration_ms: f64,
    #[serde(flatten)]
    pub result: ReloadResult,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ReloadResult {
    Applied { changes: ReloadSummary },
    Rejected { errors: ConfigErrors, message: String },
}

fn serialize_unix_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()))
}

/// What the API sees: the routes as of the last successful reload, and how reloads went.
#[derive(Debug, Clone)]
pub struct Directory {
    pub table: Arc<RouteTable>,
    /// The plugins of `table`, loaded.
    pub plugins: Plugins,
    pub routes: Vec<(Arc<RouteConfig>, RouteHandle)>,
    pub config_path: PathBuf,
    pub last_reload: ReloadOutcome,
    /// Set while the file on disk is invalid (the routes keep running on the last good version).
    pub config_error: Option<ConfigErrors>,
    pub reloads_applied: u64,
    pub reloads_rejected: u64,
    /// Push outputs and how they are doing.
    pub pushes: Vec<(RouteName, Arc<std::sync::Mutex<PushStatus>>)>,
    /// Recordings and how they are doing.
    pub recordings: Vec<(RouteName, Arc<std::sync::Mutex<RecordingStatus>>)>,
}

impl Directory {
    pub fn route(&self, name: &str) -> Option<&(Arc<RouteConfig>, RouteHandle)> {
        self.routes.iter().find(|(c, _)| c.name.as_str() == name)
    }
}

/// Where the runtime publishes its state: the directory for the API, and admission's view of it, sent together
/// so an entry point never admits against a configuration the API no longer shows.
struct Published {
    directory: tokio_watch::Sender<Arc<Directory>>,
    routes: tokio_watch::Sender<Arc<Routes>>,
}

impl Published {
    fn publish(&self, directory: Directory) {
        self.routes.send_replace(Arc::new(admission_view(&directory)));
        self.directory.send_replace(Arc::new(directory));
    }
}

fn admission_view(directory: &Directory) -> Routes {
    Routes { table: Arc::clone(&directory.table), plugins: directory.plugins.clone(), routes: directory.routes.clone() }
}

struct ReloadRequest {
    trigger: ReloadTrigger,
    reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Route changes from the API, to be made in the routes file.
struct EditRequest {
    edits: Vec<RouteEdit>,
    if_match: Option<String>,
    reply: oneshot::Sender<Result<Edited, EditRefusal>>,
}

/// Route edits written and applied: the file's new ETag and what the reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct Edited {
    pub etag: String,
    #[serde(flatten)]
    pub outcome: ReloadOutcome,
}

/// Why route edits were not made; the file and the running routes are as they were.
#[derive(Debug, Clone)]
pub enum EditRefusal {
    /// `If-Match` named another version of the file (it changed since the client read it); its ETag now.
    Changed {
        etag: String,
    },
    NoRoute(String),
    /// An edit that cannot be written (a null in a list, a number TOML lacks).
    Invalid(String),
    /// The edited file is not valid: the same errors a hand edit would get.
    Rejected(ConfigErrors),
    /// The file could not be read or written.
    Io(String),
    ShuttingDown,
}

/// A recording started or stopped from the API.
struct RecordRequest {
    route: String,
    plugin: Option<String>,
    on: bool,
    reply: oneshot::Sender<Result<(String, Option<RecordingStatus>), RecordError>>,
}

/// Reads and validates the routes file and loads its plugins (reusing unchanged ones from `previous`): what
/// startup, every reload and `sluice check` do. Blocking (plugins compile): call it off the async threads.
pub fn load_config(
    path: &std::path::Path,
    previous: &Plugins,
    storages: &Arc<Storages>,
) -> Result<(RouteTable, Plugins, Vec<String>), ConfigErrors> {
    load_config_with(path, previous, Some(storages))
}

/// What `sluice check` does: [`load_config`] without keeping compiled plugins in `data_dir`, so checking a file
/// writes nothing.
pub fn check_config(path: &std::path::Path) -> Result<(RouteTable, Plugins, Vec<String>), ConfigErrors> {
    load_config_with(path, &Plugins::default(), None)
}

/// [`load_config`] of `text`, the file at `path` as an API edit would leave it (messages name `path`).
fn load_edited(
    path: &std::path::Path,
    text: &str,
    previous: &Plugins,
    storages: &Arc<Storages>,
) -> Result<(RouteTable, Plugins, Vec<String>), ConfigErrors> {
    let table = config::parse(text, &path.display().to_string(), &|name| std::env::var(name).ok())?;
    load_plugins(path, table, previous, Some(storages))
}

/// `storages`: the running router's (compiled plugins are then cached in `data_dir`); `None` for a check.
fn load_config_with(
    path: &std::path::Path,
    previous: &Plugins,
    storages: Option<&Arc<Storages>>,
) -> Result<(RouteTable, Plugins, Vec<String>), ConfigErrors> {
    load_plugins(path, config::load(path)?, previous, storages)
}

/// Loads the plugins of a valid `table` and checks what only loaded plugins tell (which world each is).
fn load_plugins(
    path: &std::path::Path,
    table: RouteTable,
    previous: &Plugins,
    storages: Option<&Arc<Storages>>,
) -> Result<(RouteTable, Plugins, Vec<String>), ConfigErrors> {
    let cache = storages.is_some();
    let label = path.display().to_string();
    let file_error =
        |message: String, help: Option<String>| ConfigErrors::single(config::ConfigError::file(&label, message, help));
    let host = PluginHost::shared(cache.then(|| table.server.data_dir.join("plugin-cache")))
        .map_err(|e| file_error(e.to_string(), None))?;
    let host = match storages {
        Some(storages) => host.with_storages(Arc::clone(storages)),
        None => host,
    };
    let (plugins, reloaded) = Plugins::load(&host, &table.plugins, previous).map_err(|errors| {
        // At the plugin's `config` in the file: most load errors are the plugin refusing its config.
        ConfigErrors(
            errors
                .into_iter()
                .map(|e| match table.plugin_positions.get(&e.plugin) {
                    Some(at) => config::ConfigError::at_line_col(&label, *at, e.to_string(), None),
                    None => config::ConfigError::file(&label, e.to_string(), None),
                })
                .collect(),
        )
    })?;
    // Plugins from files reveal their world only when loaded: check the auth references now.
    let auth_refs = table
        .routes
        .iter()
        .filter_map(|r| r.auth.as_ref().map(|a| (format!("route \"{}\": `auth`", r.name), a)))
        .chain(table.server.api_auth.as_ref().map(|a| ("`server.api_auth`".to_string(), a)));
    for route in &table.routes {
        for output in &route.to {
            if let config::model::Output::Record { plugin: name } = output
                && let Some(p) = plugins.get(name)
                && p.plugin.world() != PluginWorld::Sink
            {
                return Err(file_error(
                    format!("route \"{}\": `to`: record:{name}: plugin \"{name}\" is {}, not a sink plugin", route.name,
                        p.plugin.world().with_article()),
                    Some("name a plugin that exports sluice:plugin/recorder, e.g. one with source = \"builtin:record-mp4\"".to_string()),
                ));
            }
        }
    }
    for (ctx, name) in auth_refs {
        if let Some(p) = plugins.get(name)
            && p.plugin.world() != PluginWorld::Auth
        {
            return Err(file_error(
                format!("{ctx}: plugin \"{name}\" is {}, not an auth plugin", p.plugin.world().with_article()),
                Some(
                    "name a plugin that exports sluice:plugin/authorizer, e.g. one with source = \"builtin:auth-jwt\""
                        .to_string(),
                ),
            ));
        }
    }
    Ok((table, plugins, reloaded))
}

/// A handle to the runtime actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The one admission path entry points take (route, source/output, publish key, auth); it holds the process's
    /// one auth gate (which counts failed attempts per address).
    pub admission: Admission,
    /// The recordings index (`data_dir/sluice.db`).
    pub index: Arc<Index>,
    requests: mpsc::Sender<ReloadRequest>,
    records: mpsc::Sender<RecordRequest>,
    edits: mpsc::Sender<EditRequest>,
    ends: mpsc::Sender<(RouteName, oneshot::Sender<bool>)>,
    shutdown: mpsc::Sender<oneshot::Sender<()>>,
    directory: tokio_watch::Receiver<Arc<Directory>>,
}

impl Runtime {
    /// Loads `path` and starts its routes. Fails when the file is invalid: at startup there is no old
    /// configuration to keep.
    pub fn start(path: PathBuf) -> Result<Runtime, ConfigErrors> {
        let began = Instant::now();
        // Sink storages report commits and deletions to the index, which opens once the table names data_dir.
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let storages = Arc::new(Storages::reporting_to(changes_tx));
        let (table, plugins, _) = load_config(&path, &Plugins::default(), &storages)?;
        let summary = ReloadSummary {
            added: table.routes.iter().map(|r| r.name.to_string()).collect(),
            removed: Vec::new(),
            updated: Vec::new(),
            restarted_sources: Vec::new(),
            unchanged: 0,
            needs_restart: Vec::new(),
            plugins_reloaded: Vec::new(),
            plugins_added: plugins.iter().map(|(name, _)| name.clone()).collect(),
            plugins_removed: Vec::new(),
        };
        let index = crate::recording::start(&table.server.data_dir, Arc::clone(&storages), changes).map_err(|e| {
            ConfigErrors::single(config::ConfigError::file(
                &path.display().to_string(),
                format!("recordings index: {e}"),
                None,
            ))
        })?;
        let mut set = RouteSet::start(table);
        index.use_table(Arc::clone(set.table()));
        recover_and_index(&plugins, &Plugins::default(), &index);
        set.use_plugins(plugins.clone());
        let outcome = ReloadOutcome {
            trigger: ReloadTrigger::Startup,
            at: SystemTime::now(),
            duration_ms: began.elapsed().as_secs_f64() * 1000.0,
            result: ReloadResult::Applied { changes: summary },
        };
        let directory = Arc::new(Directory {
            table: Arc::clone(set.table()),
            plugins,
            routes: set.in_order(),
            config_path: path.clone(),
            last_reload: outcome,
            config_error: None,
            reloads_applied: 0,
            reloads_rejected: 0,
            pushes: set.push_statuses(),
            recordings: set.recording_statuses(),
        });
        let (routes_tx, routes_rx) = tokio_watch::channel(Arc::new(admission_view(&directory)));
        let (dir_tx, dir_rx) = tokio_watch::channel(directory);
        let (req_tx, req_rx) = mpsc::channel(16);
        let (rec_tx, rec_rx) = mpsc::channel(16);
        let (edit_tx, edit_rx) = mpsc::channel(16);
        let (make_tx, make_rx) = mpsc::channel(64);
        let (end_tx, end_rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = mpsc::channel(1);
        let published = Published { directory: dir_tx, routes: routes_tx };
        let recordings = Recordings { storages, index: Arc::clone(&index) };
        let inbox =
            Inbox { reloads: req_rx, records: rec_rx, edits: edit_rx, makes: make_rx, ends: end_rx, shutdown: stop_rx };
        tokio::spawn(run(path, set, published, inbox, recordings));
        Ok(Runtime {
            admission: Admission::new(routes_rx, Arc::default()).making_routes(make_tx),
            index,
            requests: req_tx,
            records: rec_tx,
            edits: edit_tx,
            ends: end_tx,
            shutdown: stop_tx,
            directory: dir_rx,
        })
    }

    /// Starts (`on`) or stops recording `route`, with `plugin` or the route's default sink.
    pub async fn record(
        &self,
        route: &str,
        plugin: Option<String>,
        on: bool,
    ) -> Result<(String, Option<RecordingStatus>), RecordError> {
        let (reply, rx) = oneshot::channel();
        let request = RecordRequest { route: route.to_string(), plugin, on, reply };
        self.records.send(request).await.map_err(|_| RecordError::NoRoute)?;
        rx.await.map_err(|_| RecordError::NoRoute)?
    }

    /// Makes `edits` in the routes file and applies the result like a reload, or changes nothing. `if_match`: the
    /// ETag(s) of the file the edits were made against (`If-Match`).
    pub async fn edit_routes(&self, edits: Vec<RouteEdit>, if_match: Option<String>) -> Result<Edited, EditRefusal> {
        let (reply, rx) = oneshot::channel();
        self.edits.send(EditRequest { edits, if_match, reply }).await.map_err(|_| EditRefusal::ShuttingDown)?;
        rx.await.map_err(|_| EditRefusal::ShuttingDown)?
    }

    /// Ends route `name` if it was made from a template: its publisher and readers are cut off (they may come
    /// back and make it again, if admission lets them). True if it was running.
    pub async fn end_made_route(&self, name: &RouteName) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.ends.send((name.clone(), reply)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory.borrow())
    }

    /// A receiver that sees every new directory (after each reload).
    pub fn subscribe(&self) -> tokio_watch::Receiver<Arc<Directory>> {
        self.directory.clone()
    }

    /// Re-reads the file and applies it; resolves when done.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Option<ReloadOutcome> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(ReloadRequest { trigger, reply: Some(reply) }).await.ok()?;
        rx.await.ok()
    }

    /// Asks for a reload without waiting (signals). Dropped when 16 are already queued: those will read the
    /// newest file anyway.
    pub fn request_reload(&self, trigger: ReloadTrigger) {
        let _ = self.requests.try_send(ReloadRequest { trigger, reply: None });
    }

    /// Stops every route; the runtime ends.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.shutdown.send(reply).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What the runtime actor is asked, one channel per kind of request.
struct Inbox {
    reloads: mpsc::Receiver<ReloadRequest>,
    records: mpsc::Receiver<RecordRequest>,
    edits: mpsc::Receiver<EditRequest>,
    /// Routes to make from templates (admission asks when a publisher or reader comes for one).
    makes: mpsc::Receiver<MakeRoute>,
    /// Routes made from templates to end now (a camera deleted or given a new key).
    ends: mpsc::Receiver<(RouteName, oneshot::Sender<bool>)>,
    shutdown: mpsc::Receiver<oneshot::Sender<()>>,
}

/// Routes made from templates at once, at most: each is an actor, and a publisher may name any route a template
/// matches.
pub const MAX_MADE_ROUTES: usize = 2_000;

/// How often routes made from templates are checked for idleness: they end within a second of their timeout.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Publishes the routes as they are now (after one was made or ended outside a reload).
fn publish_routes(directory: &Published, set: &RouteSet) {
    let mut dir = (**directory.directory.borrow()).clone();
    dir.routes = set.in_order();
    dir.pushes = set.push_statuses();
    dir.recordings = set.recording_statuses();
    directory.publish(dir);
}

async fn run(path: PathBuf, mut set: RouteSet, directory: Published, inbox: Inbox, recordings: Recordings) {
    let Inbox { reloads: mut requests, mut records, mut edits, mut makes, mut ends, mut shutdown } = inbox;
    let mut idle_check = tokio::time::interval(IDLE_CHECK);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The listeners and data directory are set up once: reloads report changes against these.
    let started = set.table().server.clone();
    let ctx = ReloadContext { path: &path, started: &started, directory: &directory, recordings: &recordings };
    loop {
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { break };
                let outcome = reload(&ctx, &mut set, req.trigger).await;
                if let Some(reply) = req.reply {
                    let _ = reply.send(outcome);
                }
            }
            Some(req) = edits.recv() => {
                let result = edit(&ctx, &mut set, req.edits, req.if_match).await;
                let _ = req.reply.send(result);
            }
            Some((name, reply)) = ends.recv() => {
                let ended = set.end_made(&name).await;
                if ended {
                    publish_routes(&directory, &set);
                }
                let _ = reply.send(ended);
            }
            Some(req) = makes.recv() => {
                let made = set.make(&req.name, &req.template);
                if made.is_some() {
                    publish_routes(&directory, &set);
                }
                let _ = req.reply.send(made);
            }
            _ = idle_check.tick(), if set.has_instances() => {
                if set.end_idle(Instant::now()).await {
                    publish_routes(&directory, &set);
                }
            }
            Some(req) = records.recv() => {
                let result = set.set_recording(&req.route, req.plugin.as_deref(), req.on);
                let mut dir = (**directory.directory.borrow()).clone();
                dir.recordings = set.recording_statuses();
                directory.publish(dir);
                let _ = req.reply.send(result);
            }
            reply = shutdown.recv() => {
                set.stop_all().await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
                return;
            }
        }
    }
    set.stop_all().await;
}

/// What every reload works with: the file, the server as it started, where the state is published.
struct ReloadContext<'a> {
    path: &'a std::path::Path,
    started: &'a config::model::ServerConfig,
    directory: &'a Published,
    recordings: &'a Recordings,
}

type Loaded = (RouteTable, Plugins, Vec<String>);

/// Loads the file (or `text`, what an edit would make of it) off the async threads, with the plugins in force
/// reused where unchanged.
async fn load(ctx: &ReloadContext<'_>, set: &RouteSet, text: Option<String>) -> Result<Loaded, ConfigErrors> {
    let path = ctx.path.to_path_buf();
    let previous = ctx.directory.directory.borrow().plugins.clone();
    let storages = Arc::clone(&ctx.recordings.storages);
    let loaded = tokio::task::spawn_blocking(move || match text {
        Some(text) => load_edited(&path, &text, &previous, &storages),
        None => load_config(&path, &previous, &storages),
    })
    .await
    .unwrap_or_else(|e| {
        Err(ConfigErrors::single(config::ConfigError::file("routes file", format!("validation panicked: {e}"), None)))
    });
    loaded.and_then(|loaded| refuse_emptying(ctx.path, set.table(), loaded))
}

async fn reload(ctx: &ReloadContext<'_>, set: &mut RouteSet, trigger: ReloadTrigger) -> ReloadOutcome {
    let began = Instant::now();
    let loaded = load(ctx, set, None).await;
    apply_loaded(ctx, set, trigger, loaded, began).await
}

/// Edits the routes file, validates the result like a reload, and only then writes and applies it.
async fn edit(
    ctx: &ReloadContext<'_>,
    set: &mut RouteSet,
    edits: Vec<RouteEdit>,
    if_match: Option<String>,
) -> Result<Edited, EditRefusal> {
    let began = Instant::now();
    let path = ctx.path.to_path_buf();
    let text = tokio::task::spawn_blocking(move || config::read(&path))
        .await
        .map_err(|e| EditRefusal::Io(e.to_string()))?
        .map_err(|e| EditRefusal::Io(e.to_string()))?;
    let current = config::edit::etag(text.as_bytes());
    if let Some(wanted) = if_match
        // Strong comparison (RFC 9110): a weak tag never matches.
        && !wanted.split(',').map(str::trim).any(|t| t == "*" || t == current)
    {
        return Err(EditRefusal::Changed { etag: current });
    }
    let edited = config::edit::apply(&text, &edits).map_err(|e| match e {
        EditError::NoRoute(name) => EditRefusal::NoRoute(name),
        EditError::Invalid(why) => EditRefusal::Invalid(why),
        EditError::File(why) => EditRefusal::Rejected(ConfigErrors::single(config::ConfigError::file(
            &ctx.path.display().to_string(),
            why,
            None,
        ))),
    })?;
    let loaded = load(ctx, set, Some(edited.clone())).await.map_err(EditRefusal::Rejected)?;
    let (path, bytes, read) = (ctx.path.to_path_buf(), edited.clone(), current.clone());
    let written = tokio::task::spawn_blocking(move || {
        // Edited by hand while this edit was validated: that edit wins, this one is refused.
        let now = config::read(&path).map(|t| config::edit::etag(t.as_bytes())).unwrap_or_default();
        if now != read {
            return Ok(Err(now));
        }
        config::edit::write_file(&path, &bytes).map(Ok)
    })
    .await
    .map_err(|e| EditRefusal::Io(e.to_string()))?
    .map_err(|e| EditRefusal::Io(format!("cannot write {}: {e}", ctx.path.display())))?;
    if let Err(etag) = written {
        return Err(EditRefusal::Changed { etag });
    }
    let outcome = apply_loaded(ctx, set, ReloadTrigger::RouteApi, Ok(loaded), began).await;
    Ok(Edited { etag: config::edit::etag(edited.as_bytes()), outcome })
}

/// Applies a loaded configuration (or records why it was refused) and publishes the new state.
async fn apply_loaded(
    ctx: &ReloadContext<'_>,
    set: &mut RouteSet,
    trigger: ReloadTrigger,
    loaded: Result<Loaded, ConfigErrors>,
    began: Instant,
) -> ReloadOutcome {
    let ReloadContext { path, started, directory, recordings } = *ctx;
    let prev = directory.directory.borrow().clone();
    let mut plugins = prev.plugins.clone();
    let (result, config_error, applied, rejected) = match loaded {
        Ok((table, new_plugins, plugins_reloaded)) => {
            recordings.index.use_table(Arc::new(table.clone()));
            recover_and_index(&new_plugins, &plugins, &recordings.index);
            plugins = new_plugins;
            set.plugins = plugins.clone();
            let new_server = table.server.clone();
            let d = set.apply(table).await;
            let mut changes = ReloadSummary::from(&d);
            changes.needs_restart = config::diff::restart_keys(started, &new_server);
            changes.plugins_reloaded = plugins_reloaded;
            changes.plugins_added =
                plugins.iter().map(|(n, _)| n).filter(|n| prev.plugins.get(n).is_none()).cloned().collect();
            changes.plugins_removed =
                prev.plugins.iter().map(|(n, _)| n).filter(|n| plugins.get(n).is_none()).cloned().collect();
            (ReloadResult::Applied { changes }, None, prev.reloads_applied + 1, prev.reloads_rejected)
        }
        Err(errors) => {
            let message = errors.to_string();
            (
                ReloadResult::Rejected { errors: errors.clone(), message },
                Some(errors),
                prev.reloads_applied,
                prev.reloads_rejected + 1,
            )
        }
    };
    let outcome =
        ReloadOutcome { trigger, at: SystemTime::now(), duration_ms: began.elapsed().as_secs_f64() * 1000.0, result };
    directory.publish(Directory {
        table: Arc::clone(set.table()),
        plugins,
        routes: set.in_order(),
        config_path: path.to_path_buf(),
        last_reload: outcome.clone(),
        config_error,
        reloads_applied: applied,
        reloads_rejected: rejected,
        pushes: set.push_statuses(),
        recordings: set.recording_statuses(),
    });
    // Logged once the API shows the new state, so that whoever reads the log and then asks the API agrees with
    // it. Logged even when nothing changed: an operator who sent SIGHUP wants to see it was heard.
    match &outcome.result {
        ReloadResult::Applied { changes } => {
            tracing::info!(
                trigger = ?outcome.trigger,
                added = changes.added.len(),
                removed = changes.removed.len(),
                updated = changes.updated.len() + changes.restarted_sources.len(),
                unchanged = changes.unchanged,
                "configuration reloaded"
            );
            for key in &changes.needs_restart {
                tracing::warn!(key, "changed in the routes file; takes effect at the next restart");
            }
            for name in &changes.plugins_reloaded {
                tracing::info!(plugin = %name, "plugin reloaded: new sessions use the new version");
            }
        }
        ReloadResult::Rejected { errors, .. } => tracing::error!(
            trigger = ?outcome.trigger,
            "routes file rejected, still running the previous configuration:\n{errors}"
        ),
    }
    outcome
}

/// A file that declares no routes at all, applied while routes run, would end every one of them: that is far more
/// often an editor's save caught between truncating and writing (or a file emptied by mistake) than a wish, so it
/// is refused unless the file says `route = []`.
fn refuse_emptying<T>(
    path: &std::path::Path,
    running: &RouteTable,
    (table, plugins, reloaded): (RouteTable, Plugins, T),
) -> Result<(RouteTable, Plugins, T), ConfigErrors> {
    if table.routes_declared || running.routes.is_empty() {
        return Ok((table, plugins, reloaded));
    }
    Err(ConfigErrors::single(config::ConfigError::file(
        &path.display().to_string(),
        format!(
            "the file declares no routes: applying it would end all {} running routes, so it was not applied",
            running.routes.len()
        ),
        Some("if the file was being saved, save it again; to remove every route on purpose, write `route = []` at the top of the file, before any [table]".into()),
    )))
}

/// For each sink plugin new in `plugins` (not in `previous`): brings the index in line with what is on disk, then
/// repairs the files a crash left uncommitted in its storage. In the background: recordings may start
/// meanwhile (recovery never touches a file being written).
fn recover_and_index(plugins: &Plugins, previous: &Plugins, index: &Arc<Index>) {
    for (name, loaded) in plugins.iter() {
        if previous.get(name).is_some_and(|p| Arc::ptr_eq(p, loaded)) || loaded.plugin.as_sink().is_none() {
            continue;
        }
        let (loaded, index, name) = (Arc::clone(loaded), Arc::clone(index), name.clone());
        tokio::task::spawn_blocking(move || {
            let Some(sink) = loaded.plugin.as_sink() else { return };
            let storage = match sink.storage() {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "recording storage unavailable");
                    return;
                }
            };
            // The index first: it does not wait for the plugin's repairs, whose commits reach it as they happen.
            match index.rebuild(&storage) {
                Ok((added, removed)) => {
                    tracing::info!(plugin = %name, dir = %storage.root().display(), added, removed, "recordings indexed")
                }
                Err(e) => tracing::error!(plugin = %name, error = %e, "cannot index recordings"),
            }
            let recovered = sink.recover_orphans();
            if recovered > 0 {
                tracing::info!(plugin = %name, recovered, "files left unfinished recovered");
            }
        });
    }
}

/// How long the routes file must stay untouched before the watcher reloads it: an editor's save is a burst of
/// events (truncate, write, rename), and reading in the middle of one sees a half-written file.
pub const WATCH_SETTLE: Duration = Duration::from_millis(300);
/// The longest the watcher waits for quiet: a file rewritten without pause is still read now and then.
pub const WATCH_SETTLE_MAX: Duration = Duration::from_secs(3);
