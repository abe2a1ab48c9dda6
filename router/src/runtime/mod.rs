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

use crate::config::diff::{RouteChange, TableDiff, diff};
use crate::config::model::PluginWorld;
use crate::config::model::{Output, RouteConfig, RouteName, RouteTable};
use crate::config::{self, ConfigErrors};
use crate::ingest;
use crate::plugin::{PluginHost, Plugins};
use crate::route::{RouteHandle, spawn_route};
use crate::rtmp::client::PushStatus;

/// The running routes, keyed by name, and their push outputs.
#[derive(Debug)]
pub struct RouteSet {
    table: Arc<RouteTable>,
    routes: HashMap<RouteName, (Arc<RouteConfig>, RouteHandle)>,
    pushes: HashMap<(RouteName, String), Push>,
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
            .map(|r| (r.name.clone(), (Arc::clone(r), spawn_route(Arc::clone(r), ingest::source_for(r)))))
            .collect();
        let mut set = RouteSet { table: Arc::new(table), routes, pushes: HashMap::new() };
        set.sync_pushes();
        set
    }

    /// Starts the pushes the table lists and stops the ones it no longer does; running ones are untouched.
    fn sync_pushes(&mut self) {
        let mut wanted = std::collections::HashSet::new();
        for route in &self.table.routes {
            let Some((_, handle)) = self.routes.get(&route.name) else { continue };
            for output in &route.to {
                let Output::Push(url) = output else { continue };
                let key = (route.name.clone(), url.to_string());
                wanted.insert(key.clone());
                // A push whose task ended (its route actor was recreated) is started again on the new handle.
                if self.pushes.get(&key).is_some_and(|p| p.task.as_ref().is_none_or(|t| !t.is_finished())) {
                    continue;
                }
                let push = if url.scheme() == "rtmp" {
                    let (task, status) = crate::rtmp::client::spawn_push(handle.clone(), url.clone());
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

    /// Moves to `table`, touching only the routes that differ.
    pub async fn apply(&mut self, table: RouteTable) -> TableDiff {
        let d = diff(&self.table, &table);
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
        for route in &d.added {
            let handle = spawn_route(Arc::clone(route), ingest::source_for(route));
            self.routes.insert(route.name.clone(), (Arc::clone(route), handle));
            tracing::info!(route = %route.name, "route added");
        }
        self.table = Arc::new(table);
        self.sync_pushes();
        d
    }

    /// Routes in file order.
    pub fn in_order(&self) -> Vec<(Arc<RouteConfig>, RouteHandle)> {
        self.table.routes.iter().filter_map(|r| self.routes.get(&r.name).cloned()).collect()
    }

    pub async fn stop_all(&mut self) {
        self.pushes.clear();
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
            needs_restart: d.needs_restart.clone(),
            plugins_reloaded: Vec::new(),
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
}

impl Directory {
    pub fn route(&self, name: &str) -> Option<&(Arc<RouteConfig>, RouteHandle)> {
        self.routes.iter().find(|(c, _)| c.name.as_str() == name)
    }
}

struct ReloadRequest {
    trigger: ReloadTrigger,
    reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Reads and validates the routes file and loads its plugins (reusing unchanged ones from `previous`): what
/// startup, every reload and `sluice check` do. Blocking (plugins compile): call it off the async threads.
pub fn load_config(
    path: &std::path::Path,
    previous: &Plugins,
) -> Result<(RouteTable, Plugins, Vec<String>), ConfigErrors> {
    let table = config::load(path)?;
    let label = path.display().to_string();
    let file_error =
        |message: String, help: Option<String>| ConfigErrors::single(config::ConfigError::file(&label, message, help));
    let host = PluginHost::shared(Some(table.server.data_dir.join("plugin-cache")))
        .map_err(|e| file_error(format!("cannot start the plugin host: {e}"), None))?;
    let (plugins, reloaded) = Plugins::load(&host, &table.plugins, previous).map_err(|errors| {
        ConfigErrors(errors.into_iter().map(|e| config::ConfigError::file(&label, e.to_string(), None)).collect())
    })?;
    // Plugins from files reveal their world only when loaded: check the auth references now.
    let auth_refs = table
        .routes
        .iter()
        .filter_map(|r| r.auth.as_ref().map(|a| (format!("route \"{}\": `auth`", r.name), a)))
        .chain(table.server.api_auth.as_ref().map(|a| ("`server.api_auth`".to_string(), a)));
    for (ctx, name) in auth_refs {
        if let Some(p) = plugins.get(name)
            && p.plugin.world() != PluginWorld::Auth
        {
            return Err(file_error(
                format!("{ctx}: plugin \"{name}\" is a {:?} plugin, not an auth plugin", p.plugin.world())
                    .to_lowercase(),
                Some("name a plugin that exports sluice:plugin/authorizer".to_string()),
            ));
        }
    }
    Ok((table, plugins, reloaded))
}

/// A handle to the runtime actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Access decisions for every entry point (one per process: it counts failed attempts per address).
    pub gate: Arc<crate::auth::AuthGate>,
    requests: mpsc::Sender<ReloadRequest>,
    shutdown: mpsc::Sender<oneshot::Sender<()>>,
    directory: tokio_watch::Receiver<Arc<Directory>>,
}

impl Runtime {
    /// Loads `path` and starts its routes. Fails when the file is invalid: at startup there is no old
    /// configuration to keep.
    pub fn start(path: PathBuf) -> Result<Runtime, ConfigErrors> {
        let began = Instant::now();
        let (table, plugins, _) = load_config(&path, &Plugins::default())?;
        let summary = ReloadSummary {
            added: table.routes.iter().map(|r| r.name.to_string()).collect(),
            removed: Vec::new(),
            updated: Vec::new(),
            restarted_sources: Vec::new(),
            unchanged: 0,
            needs_restart: Vec::new(),
            plugins_reloaded: Vec::new(),
        };
        let set = RouteSet::start(table);
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
        });
        let (dir_tx, dir_rx) = tokio_watch::channel(directory);
        let (req_tx, req_rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = mpsc::channel(1);
        tokio::spawn(run(path, set, dir_tx, req_rx, stop_rx));
        Ok(Runtime { gate: Arc::default(), requests: req_tx, shutdown: stop_tx, directory: dir_rx })
    }

    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory.borrow())
    }

    /// Decides `request` against `plugin` (a route's or the API's auth; `None` = "none") with the plugins and
    /// `[defaults] anonymous` in force now.
    pub async fn authorize(&self, plugin: Option<&str>, request: crate::auth::Request) -> crate::auth::Outcome {
        let dir = self.directory();
        self.gate.check(&dir.plugins, &dir.table.anonymous, plugin, request).await
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

async fn run(
    path: PathBuf,
    mut set: RouteSet,
    directory: tokio_watch::Sender<Arc<Directory>>,
    mut requests: mpsc::Receiver<ReloadRequest>,
    mut shutdown: mpsc::Receiver<oneshot::Sender<()>>,
) {
    loop {
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { break };
                let outcome = reload(&path, &mut set, req.trigger, &directory).await;
                if let Some(reply) = req.reply {
                    let _ = reply.send(outcome);
                }
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

async fn reload(
    path: &std::path::Path,
    set: &mut RouteSet,
    trigger: ReloadTrigger,
    directory: &tokio_watch::Sender<Arc<Directory>>,
) -> ReloadOutcome {
    let began = Instant::now();
    let prev = directory.borrow().clone();
    let loaded = {
        let path = path.to_path_buf();
        let previous = prev.plugins.clone();
        tokio::task::spawn_blocking(move || load_config(&path, &previous)).await.unwrap_or_else(|e| {
            Err(ConfigErrors::single(config::ConfigError::file(
                "routes file",
                format!("validation panicked: {e}"),
                None,
            )))
        })
    };
    let mut plugins = prev.plugins.clone();
    let (result, config_error, applied, rejected) = match loaded {
        Ok((table, new_plugins, plugins_reloaded)) => {
            plugins = new_plugins;
            let d = set.apply(table).await;
            let mut changes = ReloadSummary::from(&d);
            for name in &plugins_reloaded {
                tracing::info!(plugin = %name, "plugin reloaded: new sessions use the new version");
            }
            changes.plugins_reloaded = plugins_reloaded;
            // Logged even when nothing changed: an operator who sent SIGHUP wants to see it was heard.
            tracing::info!(
                ?trigger,
                added = changes.added.len(),
                removed = changes.removed.len(),
                updated = changes.updated.len() + changes.restarted_sources.len(),
                unchanged = changes.unchanged,
                "configuration reloaded"
            );
            for key in &changes.needs_restart {
                tracing::warn!(key, "changed in the routes file; takes effect at the next restart");
            }
            (ReloadResult::Applied { changes }, None, prev.reloads_applied + 1, prev.reloads_rejected)
        }
        Err(errors) => {
            tracing::error!(?trigger, "routes file rejected, still running the previous configuration:\n{errors}");
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
    directory.send_replace(Arc::new(Directory {
        table: Arc::clone(set.table()),
        plugins,
        routes: set.in_order(),
        config_path: path.to_path_buf(),
        last_reload: outcome.clone(),
        config_error,
        reloads_applied: applied,
        reloads_rejected: rejected,
        pushes: set.push_statuses(),
    }));
    outcome
}

/// How long the file watcher waits for an editor's burst of events to settle before reloading.
pub const WATCH_SETTLE: Duration = Duration::from_millis(100);
