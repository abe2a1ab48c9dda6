//! `sluice plugin test --world signaling`: a script of steps played against a signaling plugin under the real host,
//! each step checked against what the plugin sent and asked for.
//!
//! A `[[step]]` does one thing:
//! - `connect = ID` (a client; `websocket = true` for a plain WebSocket one, `auth = {...}` its handshake payload,
//!   `query = {...}`), `expect_refusal = "..."` when the plugin should refuse it;
//! - `client = ID` with `event = "NAME"` (`args = [...]`, `ack = N`) or `message = "TEXT"`;
//! - `disconnect = ID`;
//! - `session = N` (the N-th session the plugin started, from 1) with `answer = "SDP"` or `error = "..."`;
//! - `route = "NAME"` with `state = "live" | "offline"`; `timer = TOKEN`;
//! - `http = "METHOD PATH"` with `body = "..."` and `expect_status = 200`.
//!
//! and says what should come out of it: `expect = [...]`, every message the plugin sent during the step, in order,
//! each `{ to = ID, event = "NAME", args = [...] }`, `{ to = ID, text = {...} }` (JSON compared as values) or
//! `{ to = ID, ack = N, args = [...] }`; and `expect_requests = ["publish ROUTE", "read ROUTE", "watch ROUTE", ...]`.
//! A step without `expect` only checks that the plugin did not fail.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;

use super::signaling::{
    Client, HostRequest, HttpRequest, Outbound, Outgoing, RouteState, SignalingInstance, SignalingPlugin, Transport,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    name: Option<String>,
    connect: Option<u64>,
    #[serde(default)]
    websocket: bool,
    auth: Option<toml::Table>,
    #[serde(default)]
    query: toml::Table,
    expect_refusal: Option<String>,
    client: Option<u64>,
    event: Option<String>,
    args: Option<toml::Value>,
    ack: Option<u64>,
    message: Option<String>,
    disconnect: Option<u64>,
    session: Option<usize>,
    answer: Option<String>,
    error: Option<String>,
    route: Option<String>,
    state: Option<String>,
    timer: Option<u64>,
    http: Option<String>,
    body: Option<String>,
    expect_status: Option<u16>,
    expect: Option<Vec<toml::Table>>,
    expect_requests: Option<Vec<String>>,
}

/// Everything the plugin sent, in order: (client, what).
type Log = Arc<Mutex<Vec<(u64, Sent)>>>;

#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Event(String, serde_json::Value),
    Text(serde_json::Value),
    Ack(u64, serde_json::Value),
    Closed(String),
}

struct ScriptClient {
    id: u64,
    transport: Transport,
    log: Log,
}

impl Outbound for ScriptClient {
    fn transport(&self) -> Transport {
        self.transport
    }

    fn send(&self, message: &Outgoing) -> Result<(), String> {
        let sent = match message {
            Outgoing::Event(e) => Sent::Event(e.name.clone(), json(&e.args)),
            Outgoing::Text(t) => Sent::Text(json(t)),
        };
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push((self.id, sent));
        Ok(())
    }

    fn ack(&self, ack: u64, args: &str) -> Result<(), String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push((self.id, Sent::Ack(ack, json(args))));
        Ok(())
    }

    fn close(&self, reason: &str) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push((self.id, Sent::Closed(reason.to_string())));
    }
}

/// Text as JSON when it is JSON, else as a JSON string.
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

fn to_json(value: &toml::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Plays `steps`; writes a line per step into `out`; whether every step passed.
pub fn run(plugin: &SignalingPlugin, steps: &[Step], out: &mut String) -> bool {
    let mut instance = match plugin.start() {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(out, "FAIL the plugin did not start: {e}");
            return false;
        }
    };
    let log: Log = Arc::default();
    let mut sessions: Vec<(u64, String)> = Vec::new();
    let mut all_passed = true;
    for (i, step) in steps.iter().enumerate() {
        let name = step.name.clone().unwrap_or_else(|| format!("step {}", i + 1));
        log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let started = Instant::now();
        let result = play(plugin, &mut instance, step, &log, &sessions);
        let micros = started.elapsed().as_secs_f64() * 1e6;
        let requests = instance.host().take_requests();
        for r in &requests {
            if let HostRequest::Session { connection, session, .. } = r {
                sessions.push((*connection, session.clone()));
            }
        }
        let sent = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
        let verdict = result.and_then(|()| check(step, &sent, &requests));
        match verdict {
            Ok(()) => {
                let _ =
                    writeln!(out, "ok   {name}: {} sent, {} requests in {micros:.0} µs", sent.len(), requests.len());
            }
            Err(why) => {
                all_passed = false;
                let _ = writeln!(out, "FAIL {name}: {why}");
                if why.starts_with("the plugin failed") {
                    // A fresh instance for the rest, as the router would start.
                    match plugin.start() {
                        Ok(i) => instance = i,
                        Err(_) => return false,
                    }
                }
            }
        }
    }
    all_passed
}

fn play(
    plugin: &SignalingPlugin,
    instance: &mut SignalingInstance,
    step: &Step,
    log: &Log,
    sessions: &[(u64, String)],
) -> Result<(), String> {
    let failed = |e: super::CallFailure| format!("the plugin failed: {e}");
    if let Some(id) = step.connect {
        let transport = if step.websocket { Transport::Websocket } else { Transport::SocketIo };
        let outbound = Arc::new(ScriptClient { id, transport, log: Arc::clone(log) });
        instance.host().add_client(id, outbound);
        let auth = step.auth.as_ref().map(|t| to_json(&toml::Value::Table(t.clone()))).unwrap_or(serde_json::json!({}));
        let client = Client {
            id,
            transport,
            namespace: "/".into(),
            query: step.query.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect(),
            auth: auth.to_string(),
            remote_ip: "127.0.0.1".into(),
            identity: None,
        };
        let answer = plugin.on_connect(instance, &client).map_err(failed)?;
        if answer.is_err() {
            instance.host().remove_client(id);
        }
        return match (answer, &step.expect_refusal) {
            (Ok(()), None) => Ok(()),
            (Err(got), Some(expected)) if got == *expected => Ok(()),
            (Err(got), _) => Err(format!("refused with \"{got}\"")),
            (Ok(()), Some(expected)) => Err(format!("accepted, expected the refusal \"{expected}\"")),
        };
    }
    if let Some(id) = step.client {
        if let Some(event) = &step.event {
            let args = match &step.args {
                Some(toml::Value::Array(a)) => to_json(&toml::Value::Array(a.clone())),
                Some(_) => return Err("`args` is an array of the event's arguments".into()),
                None => serde_json::json!([]),
            };
            return plugin.on_event(instance, id, event, &args.to_string(), step.ack).map_err(failed);
        }
        if let Some(text) = &step.message {
            return plugin.on_message(instance, id, text).map_err(failed);
        }
        return Err("a `client` step sends an `event` or a `message`".into());
    }
    if let Some(id) = step.disconnect {
        for session in instance.host().remove_client(id) {
            log.lock().unwrap_or_else(|p| p.into_inner()).push((id, Sent::Closed(format!("session {session} ended"))));
        }
        log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        return plugin.on_disconnect(instance, id, "the client closed the connection").map_err(failed);
    }
    if let Some(n) = step.session {
        let (connection, session) = sessions.get(n.wrapping_sub(1)).ok_or(format!("no session {n} was started"))?;
        let answer = match (&step.answer, &step.error) {
            (Some(sdp), None) => Ok(sdp.clone()),
            (None, Some(e)) => Err(e.clone()),
            _ => return Err("a `session` step has an `answer` or an `error`".into()),
        };
        return plugin.on_session(instance, *connection, session, &answer).map_err(failed);
    }
    if let Some(route) = &step.route {
        let state = match step.state.as_deref() {
            Some("live") => RouteState::Live,
            Some("offline") => RouteState::Offline,
            _ => return Err("a `route` step has state = \"live\" or \"offline\"".into()),
        };
        return plugin.on_route_state(instance, route, state).map_err(failed);
    }
    if let Some(token) = step.timer {
        return plugin.on_timer(instance, token).map_err(failed);
    }
    if let Some(http) = &step.http {
        let (method, path) = http.split_once(' ').unwrap_or(("GET", http.as_str()));
        let request = HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: Vec::new(),
            body: step.body.clone().unwrap_or_default(),
            remote_ip: "127.0.0.1".into(),
            identity: None,
        };
        let response = plugin.on_http(instance, &request).map_err(failed)?;
        return match step.expect_status {
            Some(status) if status != response.status => {
                Err(format!("answered {} ({}), expected {status}", response.status, response.body))
            }
            _ => Ok(()),
        };
    }
    Err("a step names one of connect, client, disconnect, session, route, timer or http".into())
}

/// Compares what the step produced with its expectations.
fn check(step: &Step, sent: &[(u64, Sent)], requests: &[HostRequest]) -> Result<(), String> {
    if let Some(expected) = &step.expect {
        let wanted: Vec<(u64, Sent)> = expected.iter().map(expected_message).collect::<Result<_, _>>()?;
        if wanted != sent {
            return Err(format!("sent {}, expected {}", describe(sent), describe(&wanted)));
        }
    }
    if let Some(expected) = &step.expect_requests {
        let got: Vec<String> = requests
            .iter()
            .map(|r| match r {
                HostRequest::Session { publish, route, .. } => {
                    format!("{} {route}", if *publish { "publish" } else { "read" })
                }
                HostRequest::Watch { route, watch: true } => format!("watch {route}"),
                HostRequest::Watch { route, watch: false } => format!("unwatch {route}"),
                HostRequest::EndSession { .. } => "end-session".into(),
                HostRequest::Candidate { .. } => "candidate".into(),
                HostRequest::Timer { token, ms } => format!("timer {token} {ms}"),
                HostRequest::Disconnect { connection, .. } => format!("disconnect {connection}"),
            })
            .collect();
        if got != *expected {
            return Err(format!("asked for {got:?}, expected {expected:?}"));
        }
    }
    Ok(())
}

fn expected_message(t: &toml::Table) -> Result<(u64, Sent), String> {
    let to = t.get("to").and_then(toml::Value::as_integer).ok_or("every expected message has `to`")?;
    let to = u64::try_from(to).map_err(|_| "`to` is a client id")?;
    let args = t.get("args").map(to_json).unwrap_or(serde_json::json!([]));
    let sent = match (t.get("event"), t.get("text"), t.get("ack")) {
        (Some(e), None, None) => Sent::Event(e.as_str().unwrap_or_default().to_string(), args),
        (None, Some(text), None) => Sent::Text(to_json(text)),
        (None, None, Some(a)) => Sent::Ack(a.as_integer().and_then(|n| u64::try_from(n).ok()).unwrap_or(0), args),
        _ => return Err("an expected message has one of `event`, `text` or `ack`".into()),
    };
    Ok((to, sent))
}

fn describe(sent: &[(u64, Sent)]) -> String {
    let items: Vec<String> = sent
        .iter()
        .map(|(to, s)| match s {
            Sent::Event(name, args) => format!("{to} <- {name} {args}"),
            Sent::Text(v) => format!("{to} <- {v}"),
            Sent::Ack(n, args) => format!("{to} <- ack {n} {args}"),
            Sent::Closed(r) => format!("{to} closed ({r})"),
        })
        .collect();
    if items.is_empty() { "nothing".into() } else { format!("[{}]", items.join(", ")) }
}
