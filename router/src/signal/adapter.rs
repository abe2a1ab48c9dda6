//! The adapter of one mount: a thread that owns the plugin's one instance and feeds it, one call at a time, what
//! its clients do (connect, events, messages, disconnect) and what the router reports back (session answers,
//! route states, timers). After each call it carries out what the plugin queued ([`HostRequest`]): WebRTC
//! sessions admitted like WHIP/WHEP, trickle, timers, route watches, disconnects.
//!
//! A call that traps or runs past its deadline restarts the instance: every client is disconnected (Socket.IO
//! clients reconnect by themselves), the sessions they started end, and routes keep flowing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::admit::{Ask, Wants};
use crate::auth::{Credentials, Protocol};
use crate::config::model::{Output, PublishProtocol};
use crate::plugin::LoadedPlugin;
use crate::plugin::signaling::{
    Client, HostRequest, HttpRequest, HttpResponse, Outbound, RouteState, SignalingInstance, SignalingPlugin,
};
use crate::route::RouteState as RouteLife;
use crate::runtime::Runtime;
use crate::webrtc::session::RoleKind;
use crate::webrtc::{SessionRef, WebRtc};

/// Events waiting for the plugin; past this a client's event is refused and that client disconnected.
const QUEUE: usize = 4096;
/// Candidates a session keeps until its answer is known.
const MAX_EARLY_CANDIDATES: usize = 64;
/// Timers a plugin may have pending at once (each is a sleeping task).
const MAX_TIMERS: usize = 10_000;
/// Clients of one mount at once. Each costs a few KB; the HTTP listener's connection caps apply before this.
const MAX_CLIENTS: usize = 50_000;

/// What reaches the adapter.
pub enum Inbound {
    Connect {
        client: Client,
        outbound: Arc<dyn Outbound>,
        credentials: Credentials,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Event {
        connection: u64,
        name: String,
        args: String,
        ack: Option<u64>,
    },
    Message {
        connection: u64,
        text: String,
    },
    Disconnect {
        connection: u64,
        reason: String,
    },
    Session {
        connection: u64,
        session: String,
        result: Result<(SessionRef, String), String>,
    },
    RouteState {
        route: String,
        state: RouteState,
    },
    Timer {
        token: u64,
        generation: u64,
    },
    /// A request to the plugin's HTTP endpoints.
    Http {
        request: HttpRequest,
        reply: oneshot::Sender<Result<HttpResponse, String>>,
    },
    /// The mount is gone (its plugin was replaced or removed): disconnect everyone and end.
    Stop,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Inbound::Connect { .. } => "connect",
            Inbound::Event { .. } => "event",
            Inbound::Message { .. } => "message",
            Inbound::Disconnect { .. } => "disconnect",
            Inbound::Session { .. } => "session",
            Inbound::RouteState { .. } => "route-state",
            Inbound::Timer { .. } => "timer",
            Inbound::Http { .. } => "http",
            Inbound::Stop => "stop",
        };
        f.write_str(kind)
    }
}

/// The transports' side of an adapter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdapterHandle {
    tx: mpsc::Sender<Inbound>,
    /// Clients connected now (for `/metrics`).
    clients: Arc<AtomicUsize>,
}

impl AdapterHandle {
    /// Asks the plugin whether `client` may connect.
    pub async fn connect(
        &self,
        client: Client,
        outbound: Arc<dyn Outbound>,
        credentials: Credentials,
    ) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        let connect = Inbound::Connect { client, outbound, credentials, reply };
        self.tx.send(connect).await.map_err(|_| STOPPED.to_string())?;
        rx.await.map_err(|_| STOPPED.to_string())?
    }

    /// Queues an event or message; `false` when the queue is full (the caller disconnects its client).
    pub fn offer(&self, inbound: Inbound) -> bool {
        self.tx.try_send(inbound).is_ok()
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Hands an HTTP request to the plugin.
    pub async fn http(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Inbound::Http { request, reply }).await.map_err(|_| STOPPED.to_string())?;
        rx.await.map_err(|_| STOPPED.to_string())?
    }

    /// Ends the adapter: its clients are disconnected and its sessions end.
    pub fn stop(&self) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Inbound::Stop).await;
        });
    }

    /// Tells the adapter a client is gone. Waits for room in the queue: a disconnect must never be lost.
    pub async fn disconnected(&self, connection: u64, reason: String) {
        let _ = self.tx.send(Inbound::Disconnect { connection, reason }).await;
    }
}

const STOPPED: &str = "the signaling plugin is restarting; try again";

/// What the adapter needs of the router.
#[derive(Debug, Clone)]
pub struct Services {
    pub runtime: Runtime,
    pub webrtc: WebRtc,
}

/// Starts the adapter of `plugin` (a signaling plugin) on a thread of its own; it ends when every handle is gone.
pub fn start(loaded: Arc<LoadedPlugin>, mount: String, services: Services) -> std::io::Result<AdapterHandle> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let clients = Arc::new(AtomicUsize::new(0));
    let handle = AdapterHandle { tx: tx.clone(), clients: Arc::clone(&clients) };
    let tokio = tokio::runtime::Handle::current();
    let name = format!("signal-{}", loaded.config.name);
    std::thread::Builder::new().name(name).spawn(move || {
        // Transports spawn tasks from host calls (a Socket.IO disconnect does): they need the runtime's context.
        let _runtime = tokio.enter();
        let tokio = tokio.clone();
        let Some(plugin) = loaded.plugin.as_signaling() else { return };
        let mut adapter = Adapter {
            plugin,
            instance: None,
            clients: HashMap::new(),
            client_count: clients,
            sessions: HashMap::new(),
            timers: HashMap::new(),
            watches: HashMap::new(),
            next_timer: 0,
            mount,
            services,
            tokio,
            tx: tx.downgrade(),
        };
        adapter.run(rx);
    })?;
    Ok(handle)
}

struct ClientInfo {
    outbound: Arc<dyn Outbound>,
    credentials: Credentials,
    remote: Option<IpAddr>,
}

/// A session the plugin started: its router side once the answer came, and candidates trickled before that.
#[derive(Default)]
struct SessionInfo {
    started: Option<SessionRef>,
    early_candidates: Vec<String>,
}

struct Adapter<'p> {
    plugin: &'p SignalingPlugin,
    instance: Option<SignalingInstance>,
    clients: HashMap<u64, ClientInfo>,
    /// `clients.len()`, published.
    client_count: Arc<AtomicUsize>,
    sessions: HashMap<String, SessionInfo>,
    /// Each token's pending timer: its generation (a timer that fires with an older one was replaced) and its task.
    timers: HashMap<u64, (u64, tokio::task::AbortHandle)>,
    watches: HashMap<String, JoinHandle<()>>,
    next_timer: u64,
    mount: String,
    services: Services,
    tokio: tokio::runtime::Handle,
    /// For the tasks the adapter starts to report back; weak, so the adapter ends when the transports are gone.
    tx: mpsc::WeakSender<Inbound>,
}

impl Adapter<'_> {
    fn run(&mut self, mut rx: mpsc::Receiver<Inbound>) {
        while let Some(inbound) = rx.blocking_recv() {
            if matches!(inbound, Inbound::Stop) {
                break;
            }
            // A bug of ours must not leave the mount without its thread: drop the instance and carry on.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(inbound)));
            if handled.is_err() {
                tracing::error!(plugin = %self.plugin.name(), "the signaling adapter failed; restarting its plugin");
                self.reset("the signaling plugin restarted");
            }
            self.client_count.store(self.clients.len(), Ordering::Relaxed);
        }
        self.reset("the signaling plugin stopped");
        self.client_count.store(0, Ordering::Relaxed);
    }

    /// The instance, started when first needed (and after a failure).
    fn instance(&mut self) -> Option<&mut SignalingInstance> {
        if self.instance.is_none() {
            match self.plugin.start() {
                Ok(i) => self.instance = Some(i),
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin.name(), error = %e, "signaling plugin cannot start");
                    return None;
                }
            }
        }
        self.instance.as_mut()
    }

    fn handle(&mut self, inbound: Inbound) {
        let plugin = self.plugin;
        match inbound {
            Inbound::Connect { client, outbound, credentials, reply } => {
                let id = client.id;
                let remote = client.remote_ip.parse().ok();
                if self.clients.len() >= MAX_CLIENTS {
                    let _ = reply.send(Err(format!("this mount has its maximum of {MAX_CLIENTS} clients")));
                    return;
                }
                let Some(instance) = self.instance() else {
                    let _ = reply.send(Err(STOPPED.into()));
                    return;
                };
                instance.host().add_client(id, Arc::clone(&outbound));
                let answer = match plugin.on_connect(instance, &client) {
                    Ok(Ok(())) => {
                        self.clients.insert(id, ClientInfo { outbound, credentials, remote });
                        Ok(())
                    }
                    Ok(Err(reason)) => {
                        instance.host().remove_client(id);
                        Err(reason)
                    }
                    Err(_) => {
                        self.reset("the signaling plugin failed and restarted");
                        Err(STOPPED.into())
                    }
                };
                let accepted = answer.is_ok();
                if reply.send(answer).is_err() && accepted {
                    // The transport gave up waiting (its client hung up while the plugin decided): nobody will
                    // report this client's disconnect, so it leaves now.
                    self.handle(Inbound::Disconnect {
                        connection: id,
                        reason: "the client left while connecting".into(),
                    });
                    return;
                }
                // What `on-connect` asked for (a route watch, a greeting's timer) happens now, not with the next call.
                self.carry_out();
            }
            Inbound::Event { connection, name, args, ack } => {
                if self.clients.contains_key(&connection) {
                    self.call(|p, i| p.on_event(i, connection, &name, &args, ack));
                }
            }
            Inbound::Message { connection, text } => {
                if self.clients.contains_key(&connection) {
                    self.call(|p, i| p.on_message(i, connection, &text));
                }
            }
            Inbound::Disconnect { connection, reason } => {
                if self.clients.remove(&connection).is_none() {
                    return;
                }
                let Some(instance) = self.instance.as_mut() else { return };
                for session in instance.host().remove_client(connection) {
                    self.end_session(&session);
                }
                self.call(|p, i| p.on_disconnect(i, connection, &reason));
            }
            Inbound::Session { connection, session, result } => {
                let Some(info) = self.sessions.get_mut(&session) else {
                    // Ended (or its client left) while it was being set up: end the router's side too.
                    if let Ok((started, _)) = result {
                        self.spawn_end(started);
                    }
                    return;
                };
                let answer = match result {
                    Ok((started, sdp)) => {
                        let early = std::mem::take(&mut info.early_candidates);
                        info.started = Some(started.clone());
                        for candidate in early {
                            self.spawn_trickle(started.clone(), candidate);
                        }
                        Ok(sdp)
                    }
                    Err(e) => {
                        self.sessions.remove(&session);
                        if let Some(i) = self.instance.as_mut() {
                            i.host().forget_session(&session);
                        }
                        Err(e)
                    }
                };
                self.call(|p, i| p.on_session(i, connection, &session, &answer));
            }
            Inbound::RouteState { route, state } => {
                if self.watches.contains_key(&route) {
                    self.call(|p, i| p.on_route_state(i, &route, state));
                }
            }
            Inbound::Stop => {}
            Inbound::Http { request, reply } => {
                let Some(instance) = self.instance() else {
                    let _ = reply.send(Err(STOPPED.into()));
                    return;
                };
                match plugin.on_http(instance, &request) {
                    Ok(response) => {
                        let _ = reply.send(Ok(response));
                        self.carry_out();
                    }
                    Err(_) => {
                        let _ = reply.send(Err(STOPPED.into()));
                        self.reset("the signaling plugin failed and restarted");
                    }
                }
            }
            Inbound::Timer { token, generation } => {
                if self.timers.get(&token).is_some_and(|(g, _)| *g == generation) {
                    self.timers.remove(&token);
                    self.call(|p, i| p.on_timer(i, token));
                }
            }
        }
    }

    /// One call into the instance, then what it asked for. A failed call restarts the plugin.
    fn call(
        &mut self,
        f: impl FnOnce(&SignalingPlugin, &mut SignalingInstance) -> Result<(), crate::plugin::CallFailure>,
    ) {
        let plugin = self.plugin;
        let Some(instance) = self.instance() else { return };
        match f(plugin, instance) {
            Ok(()) => self.carry_out(),
            Err(_) => self.reset("the signaling plugin failed and restarted"),
        }
    }

    /// Drops the instance and everything that hung on it: clients are disconnected with `reason`, their sessions
    /// end, timers and watches stop. The next event starts a fresh instance.
    fn reset(&mut self, reason: &str) {
        self.instance = None;
        for (_, client) in self.clients.drain() {
            client.outbound.restart(reason);
        }
        for (_, session) in std::mem::take(&mut self.sessions) {
            if let Some(started) = session.started {
                self.spawn_end(started);
            }
        }
        for (_, (_, timer)) in self.timers.drain() {
            timer.abort();
        }
        for (_, watch) in self.watches.drain() {
            watch.abort();
        }
    }

    fn carry_out(&mut self) {
        let Some(instance) = self.instance.as_mut() else { return };
        for request in instance.host().take_requests() {
            match request {
                HostRequest::Session { connection, session, publish, route, offer } => {
                    self.start_session(connection, session, publish, route, offer)
                }
                HostRequest::Candidate { session, candidate } => match self.sessions.get_mut(&session) {
                    Some(SessionInfo { started: Some(started), .. }) => {
                        let started = started.clone();
                        self.spawn_trickle(started, candidate);
                    }
                    // Held until the answer: a few per session (a browser gathers a handful), not what a flood sends.
                    Some(info) if info.early_candidates.len() < MAX_EARLY_CANDIDATES => {
                        info.early_candidates.push(candidate)
                    }
                    Some(_) | None => {}
                },
                HostRequest::EndSession { session } => self.end_session(&session),
                HostRequest::Watch { route, watch } => self.watch(route, watch),
                HostRequest::Timer { token, ms } => self.set_timer(token, ms),
                HostRequest::Disconnect { connection, reason } => {
                    if let Some(client) = self.clients.get(&connection) {
                        client.outbound.close(&reason);
                    }
                }
            }
        }
    }

    /// Admits the session like WHIP/WHEP (the route's auth, with the client's credentials) and negotiates it; the
    /// answer comes back as [`Inbound::Session`].
    fn start_session(&mut self, connection: u64, session: String, publish: bool, route: String, offer: String) {
        let Some(client) = self.clients.get(&connection) else { return };
        self.sessions.insert(session.clone(), SessionInfo::default());
        let ask = Ask {
            route: route.clone(),
            wants: if publish { Wants::Publish(PublishProtocol::Whip) } else { Wants::Read(Output::Whep) },
            protocol: if publish { Protocol::Whip } else { Protocol::Whep },
            target: self.mount.clone(),
            remote: client.remote,
            query: Vec::new(),
            credentials: client.credentials.clone(),
            stream_key: None,
        };
        let remote = client.remote;
        let services = self.services.clone();
        let tx = self.tx.clone();
        self.tokio.spawn(async move {
            let result = negotiate(&services, ask, remote, publish, &offer).await;
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Inbound::Session { connection, session, result }).await;
            }
        });
    }

    fn end_session(&mut self, session: &str) {
        if let Some(SessionInfo { started: Some(started), .. }) = self.sessions.remove(session) {
            self.spawn_end(started);
        }
    }

    fn spawn_end(&self, session: SessionRef) {
        let webrtc = self.services.webrtc.clone();
        self.tokio.spawn(async move {
            let _ = webrtc.end(session).await;
        });
    }

    fn spawn_trickle(&self, session: SessionRef, candidate: String) {
        let webrtc = self.services.webrtc.clone();
        self.tokio.spawn(async move {
            if let Err(e) = webrtc.trickle(session, &format!("a={candidate}\r\n")).await {
                tracing::debug!(error = %e, "a signaled ICE candidate was not taken");
            }
        });
    }

    fn set_timer(&mut self, token: u64, ms: u32) {
        if self.timers.len() >= MAX_TIMERS && !self.timers.contains_key(&token) {
            tracing::warn!(plugin = %self.plugin.name(), "the signaling plugin has {MAX_TIMERS} timers pending; one more is ignored");
            return;
        }
        self.next_timer += 1;
        let generation = self.next_timer;
        let tx = self.tx.clone();
        let task = self.tokio.spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Inbound::Timer { token, generation }).await;
            }
        });
        if let Some((_, replaced)) = self.timers.insert(token, (generation, task.abort_handle())) {
            replaced.abort();
        }
    }

    fn watch(&mut self, route: String, watch: bool) {
        if !watch {
            if let Some(task) = self.watches.remove(&route) {
                task.abort();
            }
            return;
        }
        if self.watches.contains_key(&route) {
            return;
        }
        let runtime = self.services.runtime.clone();
        let tx = self.tx.clone();
        let name = route.clone();
        let task = self.tokio.spawn(async move {
            let mut directories = runtime.subscribe();
            let mut last = None;
            let report = |state: RouteState, last: &mut Option<RouteState>| {
                let changed = *last != Some(state);
                *last = Some(state);
                let tx = tx.clone();
                let route = name.clone();
                async move {
                    if changed && let Some(tx) = tx.upgrade() {
                        let _ = tx.send(Inbound::RouteState { route, state }).await;
                    }
                }
            };
            loop {
                let handle = runtime.directory().route(&name).map(|(_, h)| h.clone());
                match handle {
                    Some(handle) => {
                        let mut states = handle.watch_state();
                        loop {
                            let live = *states.borrow_and_update() == RouteLife::Live;
                            report(if live { RouteState::Live } else { RouteState::Offline }, &mut last).await;
                            tokio::select! {
                                changed = states.changed() => if changed.is_err() {
                                    // The route ended; the directory may still list it until the reload is
                                    // published: offline, and look again when the directory changes.
                                    report(RouteState::Offline, &mut last).await;
                                    if directories.changed().await.is_err() {
                                        return;
                                    }
                                    break;
                                },
                                // A reload may have replaced the route: look it up again.
                                changed = directories.changed() => if changed.is_err() { return } else { break },
                            }
                        }
                    }
                    None => {
                        report(RouteState::Offline, &mut last).await;
                        if directories.changed().await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        self.watches.insert(route, task);
    }
}

/// Admission and negotiation of one signaled session: the answer SDP, or a reason the client may see.
async fn negotiate(
    services: &Services,
    ask: Ask,
    remote: Option<IpAddr>,
    publish: bool,
    offer: &str,
) -> Result<(SessionRef, String), String> {
    let route = ask.route.clone();
    let admitted = services.runtime.admission.admit(ask).await.map_err(|r| r.to_string())?;
    let per_ip = services.runtime.directory().table.server.limits.webrtc_sessions_per_ip;
    let slot = match remote {
        Some(ip) => services.webrtc.reserve(ip, per_ip).map_err(|e| e.to_string())?,
        None => services.webrtc.reserve(IpAddr::from([127, 0, 0, 1]), u32::MAX).map_err(|e| e.to_string())?,
    };
    let remote = remote.map(|ip| std::net::SocketAddr::new(ip, 0));
    let answer = if publish {
        crate::ingest::whip::publish(&services.webrtc, &admitted, offer, remote, slot).await
    } else {
        crate::egress::whep::view(&services.webrtc, &admitted.route, offer, remote, slot).await
    }
    .map_err(|e| e.to_string())?;
    let role = if publish { RoleKind::Publisher } else { RoleKind::Viewer };
    Ok((SessionRef { route, role, id: answer.session_id }, answer.sdp))
}
