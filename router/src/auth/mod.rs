//! Access decisions at every entry point (WHIP/WHEP, the REST API, RTMP; RTSP when it serves).
//!
//! Entry points describe the request (who, what, where, with which credentials) and ask the [`AuthGate`]. A route
//! whose `auth` is "none" allows what `[defaults] anonymous` lists. A route (or the API) naming an auth plugin
//! asks that plugin, unless a decision for the same (credentials, action, route) is cached from an earlier
//! `allow`. Plugin calls run on blocking threads under their deadline; a plugin that fails, times out or is
//! missing denies (fail closed). Denials are slowed down and counted per client address: too many in a window
//! and that address is refused without asking the plugin until the window ends.

pub mod http;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::model::AnonymousAction;
use crate::connections::address_key;
use crate::plugin::Plugins;
pub use crate::plugin::auth::{Action, Allow, BasicCredentials, Credentials, Decision, Protocol, Request};

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
    /// Checks under way: counted against the limit too, so a burst of parallel attempts cannot all get through
    /// before the first failure is recorded.
    pending: u32,
}

impl FailureWindow {
    fn expired(&self) -> bool {
        self.started.elapsed() >= FAILURE_WINDOW
    }

    fn blocked(&self) -> bool {
        !self.expired() && self.count >= MAX_FAILURES
    }
}

/// Decides access; one per process, shared by every entry point.
#[derive(Debug, Default)]
pub struct AuthGate {
    failures: Mutex<HashMap<IpAddr, FailureWindow>>,
    /// Decides `auth = "accounts"` (set once at start when the file has `[accounts]`).
    accounts: std::sync::OnceLock<Arc<dyn AccountsDecider>>,
}

/// The accounts' side of access control: a route (or the API) whose `auth` is "accounts" is decided here, from
/// the router's own users and cameras (a camera's stream key publishes, its owner's or an admin's login reads).
/// It answers what an auth plugin would, from memory: no database read on the request path.
pub trait AccountsDecider: Send + Sync + std::fmt::Debug {
    fn decide(&self, request: &Request) -> Decision;
}

impl AuthGate {
    /// Lets the accounts decide `auth = "accounts"`; the first call wins (one set of accounts per process).
    pub fn use_accounts(&self, accounts: Arc<dyn AccountsDecider>) {
        let _ = self.accounts.set(accounts);
    }

    /// Decides `request`, where `plugin` is the route's (or the API's) auth plugin, `None` for "none".
    pub async fn check(
        &self,
        plugins: &Plugins,
        anonymous: &[AnonymousAction],
        plugin: Option<&str>,
        request: Request,
    ) -> Outcome {
        let Some(name) = plugin else {
            return open_access(anonymous, &request);
        };
        let ip = request.remote_ip.parse::<IpAddr>().ok();
        if name == crate::config::model::ACCOUNTS_AUTH {
            return self.check_accounts(ip, request).await;
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
        if let Err(retry_after) = self.admit(ip) {
            return Outcome::TooManyFailures { retry_after };
        }
        let had_credentials = request.credentials != Credentials::None;
        let decided = tokio::task::spawn_blocking(move || {
            let auth = loaded.plugin.as_auth().expect("checked above");
            auth.authorize(&request)
        })
        .await;
        let outcome = match decided {
            Ok(Ok(Decision::Allow(a))) => Outcome::Allowed { identity: Some(a.identity) },
            Ok(Ok(Decision::Challenge(realm))) if !had_credentials => Outcome::Challenge { realm },
            Ok(Ok(Decision::Challenge(_))) => Outcome::Denied { reason: "the credentials were not accepted".into() },
            Ok(Ok(Decision::Deny(reason))) => Outcome::Denied { reason },
            // The details (trap message, timeout) are in the log, written where the call failed; clients only
            // learn that no decision could be made.
            Ok(Err(_)) | Err(_) => {
                Outcome::Unavailable { reason: format!("auth plugin \"{name}\" could not decide; access refused") }
            }
        };
        self.settle(ip, matches!(outcome, Outcome::Denied { .. })).await;
        outcome
    }

    /// [`check`](Self::check) for `auth = "accounts"`: the accounts decide, under the same failure limit.
    async fn check_accounts(&self, ip: Option<IpAddr>, request: Request) -> Outcome {
        let Some(accounts) = self.accounts.get() else {
            return Outcome::Unavailable {
                reason: "the accounts are not running (they start with the router: restart it after adding [accounts])"
                    .into(),
            };
        };
        if let Err(retry_after) = self.admit(ip) {
            return Outcome::TooManyFailures { retry_after };
        }
        let outcome = match accounts.decide(&request) {
            Decision::Allow(a) => Outcome::Allowed { identity: Some(a.identity) },
            Decision::Challenge(realm) if request.credentials == Credentials::None => Outcome::Challenge { realm },
            Decision::Challenge(_) => Outcome::Denied { reason: "the credentials were not accepted".into() },
            Decision::Deny(reason) => Outcome::Denied { reason },
        };
        self.settle(ip, matches!(outcome, Outcome::Denied { .. })).await;
        outcome
    }

    /// Checks a secret that needs no plugin (an RTMP route's `publish_key`) under the same per-address limit
    /// and delay as plugin decisions.
    pub async fn check_secret(&self, ip: Option<IpAddr>, presented: Option<&str>, expected: &str) -> Outcome {
        if let Err(retry_after) = self.admit(ip) {
            return Outcome::TooManyFailures { retry_after };
        }
        let matches = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes()));
        self.settle(ip, !matches).await;
        if matches {
            Outcome::Allowed { identity: None }
        } else {
            Outcome::Denied { reason: "wrong or missing stream key".into() }
        }
    }

    /// Starts an attempt from `ip` that is checked elsewhere (a password login), under the failure limit: `Err`
    /// with how long to wait when the address is over it. The attempt counts as under way until
    /// [`Attempt::finish`], or until it is dropped (a client that hung up mid-check), which counts nothing.
    pub fn begin_attempt(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Attempt, Duration> {
        self.admit(ip)?;
        Ok(Attempt { gate: Arc::clone(self), ip, open: true })
    }

    /// Starts a check from `ip`, unless that address is over the limit.
    fn admit(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let Some(ip) = ip else { return Ok(()) };
        let key = address_key(ip);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&key) {
            // Forget what no longer matters; never forget a blocked address or one with checks under way.
            failures.retain(|_, w| !w.expired() || w.pending > 0);
            if failures.len() >= MAX_TRACKED {
                failures.retain(|_, w| w.blocked() || w.pending > 0);
            }
        }
        let w = failures.entry(key).or_insert(FailureWindow { started: Instant::now(), count: 0, pending: 0 });
        if w.expired() && w.pending == 0 {
            *w = FailureWindow { started: Instant::now(), count: 0, pending: 0 };
        }
        if !w.expired() && w.count + w.pending >= MAX_FAILURES {
            return Err(FAILURE_WINDOW.saturating_sub(w.started.elapsed()).max(Duration::from_secs(1)));
        }
        w.pending += 1;
        Ok(())
    }

    /// Ends a check started by [`admit`](Self::admit); a failure counts and is answered after [`FAILURE_DELAY`].
    async fn settle(&self, ip: Option<IpAddr>, failed: bool) {
        self.record(ip, failed);
        if failed && ip.is_some() {
            tokio::time::sleep(FAILURE_DELAY).await;
        }
    }

    /// The bookkeeping of [`settle`](Self::settle): the check is no longer under way; a failure counts.
    fn record(&self, ip: Option<IpAddr>, failed: bool) {
        let Some(ip) = ip else { return };
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = failures.get_mut(&address_key(ip)) {
                w.pending = w.pending.saturating_sub(1);
                if failed {
                    w.count += 1;
                    if w.count == MAX_FAILURES {
                        tracing::warn!(%ip, "{MAX_FAILURES} failed access attempts within {FAILURE_WINDOW:?}: refusing this address for the rest of the window");
                    }
                }
            }
        }
    }
}

/// A check made outside the gate (a password login), counted under the failure limit while under way.
#[derive(Debug)]
pub struct Attempt {
    gate: Arc<AuthGate>,
    ip: Option<IpAddr>,
    open: bool,
}

impl Attempt {
    /// Ends the attempt; a failure counts and is answered late.
    pub async fn finish(mut self, failed: bool) {
        self.open = false;
        self.gate.settle(self.ip, failed).await;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.open {
            self.gate.record(self.ip, false);
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much of a key was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Routes without an auth plugin: what `[defaults] anonymous` lists. The API is open without `api_auth`.
fn open_access(anonymous: &[AnonymousAction], request: &Request) -> Outcome {
    let access = match request.action {
        Action::Publish => AnonymousAction::Publish,
        Action::Read => AnonymousAction::Read,
        Action::Playback => AnonymousAction::Playback,
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
        assert!(open_access(&AnonymousAction::ALL, &req(Action::Publish)).is_allowed());
        let read_only = [AnonymousAction::Read];
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

    #[tokio::test(start_paused = true)]
    async fn an_address_is_blocked_after_too_many_failures_and_others_are_not() {
        let gate = AuthGate::default();
        let bad: IpAddr = "192.0.2.1".parse().expect("ip");
        let good: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!gate.check_secret(Some(bad), Some("guess"), "key").await.is_allowed());
        }
        assert!(gate.check_secret(Some(bad), Some("key"), "key").await.is_allowed());
        assert!(!gate.check_secret(Some(bad), None, "key").await.is_allowed());
        let retry = match gate.check_secret(Some(bad), Some("key"), "key").await {
            Outcome::TooManyFailures { retry_after } => retry_after,
            other => panic!("{other:?}"),
        };
        assert!(retry <= FAILURE_WINDOW && retry > FAILURE_WINDOW - Duration::from_secs(5));
        assert!(gate.check_secret(Some(good), Some("key"), "key").await.is_allowed());
    }

    #[test]
    fn checks_under_way_count_against_the_limit() {
        let gate = AuthGate::default();
        let ip = Some("192.0.2.9".parse().expect("ip"));
        for _ in 0..MAX_FAILURES {
            assert!(gate.admit(ip).is_ok());
        }
        assert!(gate.admit(ip).is_err(), "a parallel burst stops at the limit");
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().expect("ip"));
    }

    #[tokio::test]
    async fn a_missing_plugin_fails_closed() {
        let gate = AuthGate::default();
        let outcome = gate.check(&Plugins::default(), &AnonymousAction::ALL, Some("jwt"), req(Action::Read)).await;
        assert_eq!(outcome, Outcome::Unavailable { reason: "auth plugin \"jwt\" is not loaded".into() });
    }
}
