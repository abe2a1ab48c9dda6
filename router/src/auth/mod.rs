//! Access decisions at every entry point (WHIP/WHEP, the REST API, RTMP; RTSP when it serves).
//!
//! Entry points describe the request (who, what, where, with which credentials) and ask the [`AuthGate`]. A route
//! whose `auth` is "none" allows what `[defaults] anonymous` lists. A route (or the API) naming an auth plugin
//! asks that plugin, unless a decision for the same (credentials, action, route) is cached from an earlier
//! `allow`. Plugin calls run on blocking threads under their deadline; a plugin that fails, times out or is
//! missing denies (fail closed). Denials are slowed down and counted per client address: too many in a window
//! and that address is refused without asking the plugin until the window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::model::Access;
use crate::plugin::Plugins;
pub use crate::plugin::auth::{Action, BasicCredentials, Credentials, Decision, Protocol, Request};

/// How long a denied client waits for its answer: slows down guessing and hides how long the check took.
pub const FAILURE_DELAY: Duration = Duration::from_millis(300);
/// Denials from one address within [`FAILURE_WINDOW`] after which it is refused outright.
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond it, expired windows are dropped (then the oldest state is reset).
const MAX_TRACKED: usize = 10_000;

/// What an entry point should do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed {
        identity: Option<String>,
    },
    /// Refused, with a reason for the client.
    Denied {
        reason: String,
    },
    /// Credentials are missing: ask for them (HTTP/RTSP 401).
    Challenge {
        realm: String,
    },
    /// This address failed too often; retry after the given time.
    TooManyFailures {
        retry_after: Duration,
    },
    /// No decision could be made (plugin missing or failed): refused.
    Unavailable {
        reason: String,
    },
}

impl Outcome {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Outcome::Allowed { .. })
    }

    /// One line for logs and protocols that carry only text (RTMP).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Allowed { .. } => "allowed".into(),
            Outcome::Denied { reason } => format!("access denied: {reason}"),
            Outcome::Challenge { .. } => "credentials required".into(),
            Outcome::TooManyFailures { retry_after } => {
                format!("too many failed attempts from this address; retry in {} s", retry_after.as_secs().max(1))
            }
            Outcome::Unavailable { reason } => format!("access cannot be checked: {reason}"),
        }
    }
}

#[derive(Debug)]
struct FailureWindow {
    started: Instant,
    count: u32,
}

/// Decides access; one per process, shared by every entry point.
#[derive(Debug, Default)]
pub struct AuthGate {
    failures: Mutex<HashMap<IpAddr, FailureWindow>>,
}

impl AuthGate {
    /// Decides `request`, where `plugin` is the route's (or the API's) auth plugin, `None` for "none".
    pub async fn check(
        &self,
        plugins: &Plugins,
        anonymous: &[Access],
        plugin: Option<&str>,
        request: Request,
    ) -> Outcome {
        let Some(name) = plugin else {
            return open_access(anonymous, &request);
        };
        let ip = request.remote_ip.parse::<IpAddr>().ok();
        if let Some(retry_after) = ip.and_then(|ip| self.blocked(ip)) {
            return Outcome::TooManyFailures { retry_after };
        }
        let Some(loaded) = plugins.get(name).cloned() else {
            return Outcome::Unavailable { reason: format!("auth plugin \"{name}\" is not loaded") };
        };
        let Some(auth) = loaded.plugin.as_auth() else {
            return Outcome::Unavailable { reason: format!("plugin \"{name}\" is not an auth plugin") };
        };
        if let Some(allow) = auth.cached(&request) {
            return Outcome::Allowed { identity: Some(allow.identity) };
        }
        let had_credentials = request.credentials != Credentials::None;
        let plugin_name = name.to_string();
        let decided = tokio::task::spawn_blocking(move || {
            let auth = loaded.plugin.as_auth().expect("checked above");
            auth.authorize(&request)
        })
        .await;
        let outcome = match decided {
            Ok(Ok(Decision::Allow(a))) => return Outcome::Allowed { identity: Some(a.identity) },
            Ok(Ok(Decision::Challenge(realm))) if !had_credentials => return Outcome::Challenge { realm },
            Ok(Ok(Decision::Challenge(_))) => Outcome::Denied { reason: "the credentials were not accepted".into() },
            Ok(Ok(Decision::Deny(reason))) => Outcome::Denied { reason },
            Ok(Err(failure)) => {
                Outcome::Unavailable { reason: format!("auth plugin \"{plugin_name}\" failed ({failure})") }
            }
            Err(e) => Outcome::Unavailable { reason: format!("auth plugin \"{plugin_name}\" panicked: {e}") },
        };
        if let (Some(ip), Outcome::Denied { .. }) = (ip, &outcome) {
            self.failed(ip);
            tokio::time::sleep(FAILURE_DELAY).await;
        }
        outcome
    }

    fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let w = failures.get(&ip)?;
        let age = w.started.elapsed();
        (w.count >= MAX_FAILURES && age < FAILURE_WINDOW).then(|| FAILURE_WINDOW - age)
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
            failures.retain(|_, w| w.started.elapsed() < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let w = failures.entry(ip).or_insert(FailureWindow { started: Instant::now(), count: 0 });
        if w.started.elapsed() >= FAILURE_WINDOW {
            *w = FailureWindow { started: Instant::now(), count: 0 };
        }
        w.count += 1;
        if w.count == MAX_FAILURES {
            tracing::warn!(%ip, "{MAX_FAILURES} failed access attempts within {FAILURE_WINDOW:?}: refusing this address for the rest of the window");
        }
    }
}

/// Routes without an auth plugin: what `[defaults] anonymous` lists. The API is open without `api_auth`.
fn open_access(anonymous: &[Access], request: &Request) -> Outcome {
    let access = match request.action {
        Action::Publish => Access::Publish,
        Action::Read => Access::Read,
        Action::Playback => Access::Playback,
        Action::Api => return Outcome::Allowed { identity: None },
    };
    if anonymous.contains(&access) {
        Outcome::Allowed { identity: None }
    } else {
        Outcome::Denied {
            reason: format!(
                "route \"{}\" has no auth plugin and this server does not allow anonymous {} ([defaults] anonymous)",
                request.route,
                access.name()
            ),
        }
    }
}

/// A request as entry points build it.
pub fn request(
    action: Action,
    protocol: Protocol,
    route: &str,
    target: String,
    remote_ip: Option<IpAddr>,
    query: Vec<(String, String)>,
    credentials: Credentials,
) -> Request {
    Request {
        action,
        protocol,
        route: route.to_string(),
        target,
        query,
        remote_ip: remote_ip.map(|ip| ip.to_canonical().to_string()).unwrap_or_default(),
        credentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: Action) -> Request {
        request(action, Protocol::Whep, "cam", "/cam/whep".into(), None, Vec::new(), Credentials::None)
    }

    #[test]
    fn open_routes_allow_what_defaults_list() {
        assert!(open_access(&Access::ALL, &req(Action::Publish)).is_allowed());
        let read_only = [Access::Read];
        assert!(open_access(&read_only, &req(Action::Read)).is_allowed());
        assert_eq!(
            open_access(&read_only, &req(Action::Publish)),
            Outcome::Denied {
                reason: "route \"cam\" has no auth plugin and this server does not allow anonymous publish \
                         ([defaults] anonymous)"
                    .into()
            }
        );
    }

    #[test]
    fn an_address_is_blocked_after_too_many_failures_and_others_are_not() {
        let gate = AuthGate::default();
        let bad: IpAddr = "192.0.2.1".parse().expect("ip");
        let good: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..MAX_FAILURES - 1 {
            gate.failed(bad);
        }
        assert_eq!(gate.blocked(bad), None);
        gate.failed(bad);
        let retry = gate.blocked(bad).expect("blocked");
        assert!(retry <= FAILURE_WINDOW && retry > FAILURE_WINDOW - Duration::from_secs(5));
        assert_eq!(gate.blocked(good), None);
    }

    #[tokio::test]
    async fn a_missing_plugin_fails_closed() {
        let gate = AuthGate::default();
        let outcome = gate.check(&Plugins::default(), &Access::ALL, Some("jwt"), req(Action::Read)).await;
        assert_eq!(outcome, Outcome::Unavailable { reason: "auth plugin \"jwt\" is not loaded".into() });
    }
}
