//! The one admission path every entry point takes (WHIP, WHEP, RTMP publish and play, recordings playback; RTSP
//! and signaling next): resolve the route, check that it takes this source or offers this output, check an RTMP
//! route's `publish_key`, and authorize through the [`AuthGate`] (plugin, decision cache, per-address failure
//! limit, `[defaults] anonymous`). Taking the publisher or reader slot stays with the caller, on the route
//! handle admission returns, since each protocol holds its slot differently (a WebRTC session, an RTMP connection).
//!
//! Admission sees the configuration in force through [`Routes`], which the runtime publishes with every change;
//! it knows no protocol beyond the names it reports, and every refusal is one [`Refusal`] each protocol maps to
//! its own answer.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{Action, AuthGate, Credentials, Outcome, Protocol};
use crate::config::model::{Output, PublishProtocol, RouteConfig, RouteTable};
use crate::plugin::Plugins;
use crate::route::RouteHandle;

/// What admission decides with: the configuration in force, its plugins, and its running routes. The runtime
/// publishes a new one at start and after every reload.
#[derive(Debug, Clone)]
pub struct Routes {
    pub table: Arc<RouteTable>,
    pub plugins: Plugins,
    pub routes: Vec<(Arc<RouteConfig>, RouteHandle)>,
}

impl Routes {
    pub fn route(&self, name: &str) -> Option<&(Arc<RouteConfig>, RouteHandle)> {
        self.routes.iter().find(|(c, _)| c.name.as_str() == name)
    }
}

/// What a client asks to do with a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wants {
    /// Publish into it with this protocol (its `from` must be that protocol).
    Publish(PublishProtocol),
    /// Read it live through this output (its `to` must list it).
    Read(Output),
    /// Read its recordings. A route no longer configured falls back to `[server] api_auth`.
    Playback,
}

/// One request for admission, as an entry point saw it.
#[derive(Debug, Clone)]
pub struct Ask {
    pub route: String,
    pub wants: Wants,
    pub protocol: Protocol,
    /// What the plugin is told was asked for (a path; never a stream key).
    pub target: String,
    pub remote: Option<IpAddr>,
    pub query: Vec<(String, String)>,
    pub credentials: Credentials,
    /// The RTMP stream key presented, checked against a route's `publish_key`.
    pub stream_key: Option<String>,
}

/// A request admitted: the route's configuration and its handle, to take the slot on.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub config: Arc<RouteConfig>,
    pub route: RouteHandle,
}

/// Why a request was not admitted; each protocol turns it into its own answer (HTTP status, RTMP status text).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("there is no route \"{0}\"")]
    NoRoute(String),
    #[error("route \"{route}\" takes its media from {from}, not from {protocol} publishers")]
    NotPublishable { route: String, from: String, protocol: &'static str },
    #[error("route \"{route}\" does not list \"{output}\" in `to`")]
    OutputNotAllowed { route: String, output: String },
    /// The gate's answer: denied, a challenge, too many failures, or no decision possible.
    #[error("route \"{route}\": {}", .outcome.describe())]
    Refused { route: String, outcome: Outcome },
}

/// A request to the runtime to make route `name` from the template it matches (or to give the route, when
/// someone made it meanwhile); the answer is `None` when no template makes it any more.
#[derive(Debug)]
pub struct MakeRoute {
    pub name: String,
    /// The template the request was admitted on.
    pub template: Arc<RouteConfig>,
    pub reply: oneshot::Sender<Option<(Arc<RouteConfig>, RouteHandle)>>,
}

/// The admission service: cheap to clone, handed to every entry point.
#[derive(Debug, Clone)]
pub struct Admission {
    routes: watch::Receiver<Arc<Routes>>,
    gate: Arc<AuthGate>,
    /// Where routes are made from templates (the runtime); `None`: templates make nothing.
    make: Option<mpsc::Sender<MakeRoute>>,
}

impl Admission {
    pub fn new(routes: watch::Receiver<Arc<Routes>>, gate: Arc<AuthGate>) -> Self {
        Admission { routes, gate, make: None }
    }

    /// Admission that makes routes from templates by asking `make`.
    pub fn making_routes(mut self, make: mpsc::Sender<MakeRoute>) -> Self {
        self.make = Some(make);
        self
    }

    /// The process's auth gate (its failure limit is shared by every kind of attempt).
    pub fn gate(&self) -> &Arc<AuthGate> {
        &self.gate
    }

    /// The configuration in force now.
    pub fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.routes.borrow())
    }

    /// Decides `ask`: resolve, check source or output, check the publish key, authorize.
    ///
    /// A name no route has but a template matches (`live/cam1` for `live/*`) is decided on the template's
    /// settings; once admitted, a publisher (or a reader of an on-demand pull) gets the route made from it.
    pub async fn admit(&self, ask: Ask) -> Result<Admitted, Refusal> {
        self.admit_once(ask, false).await
    }

    async fn admit_once(&self, ask: Ask, retried: bool) -> Result<Admitted, Refusal> {
        let routes = self.routes();
        let found = routes.route(&ask.route).map(|(c, h)| (Arc::clone(c), h.clone()));
        // A template decides for the names it matches, also for playback of routes made from it that ended.
        let template = match (&found, &ask.wants) {
            (None, Wants::Read(_)) => routes.table.template_for(&ask.route).filter(|t| t.on_demand),
            (None, _) => routes.table.template_for(&ask.route),
            _ => None,
        };
        // What the request is decided on: the route, or the template its route would be made from.
        let subject = found.as_ref().map(|(c, _)| c).or(template);
        let plugin = match (subject, &ask.wants) {
            (Some(config), _) => config.auth.clone(),
            (None, Wants::Playback) => routes.table.server.api_auth.clone(),
            (None, _) => return Err(Refusal::NoRoute(ask.route)),
        };
        let action = match &ask.wants {
            Wants::Publish(_) => Action::Publish,
            Wants::Read(_) => Action::Read,
            Wants::Playback => Action::Playback,
        };
        if let Some(config) = subject {
            check_route(config, &ask.wants)?;
            if let (Wants::Publish(_), Some(expected)) = (&ask.wants, &config.publish_key) {
                let outcome = self.gate.check_secret(ask.remote, ask.stream_key.as_deref(), expected).await;
                if !outcome.is_allowed() {
                    return Err(Refusal::Refused { route: ask.route, outcome });
                }
            }
        }
        // Kept to decide again, should the route not be made from the template decided on.
        let again = (found.is_none() && template.is_some() && !retried).then(|| ask.clone());
        let request =
            crate::auth::request(action, ask.protocol, &ask.route, ask.target, ask.remote, ask.query, ask.credentials);
        let outcome = self.authorize(plugin.as_deref(), request).await;
        if !outcome.is_allowed() {
            return Err(Refusal::Refused { route: ask.route, outcome });
        }
        if let (None, Some(template), Wants::Publish(_) | Wants::Read(_)) = (&found, template, &ask.wants) {
            return match self.make(&ask.route, template).await {
                Some(admitted) => Ok(admitted),
                // The configuration changed under the request: decide it again on what is in force now.
                None => match again {
                    Some(ask) => Box::pin(self.admit_once(ask, true)).await,
                    None => Err(Refusal::NoRoute(ask.route)),
                },
            };
        }
        match found {
            Some((config, route)) => Ok(Admitted { config, route }),
            // Playback of a route no longer configured: its recordings remain; there is no live route to give.
            None => Err(Refusal::NoRoute(ask.route)),
        }
    }

    /// The route `name` made from its template by the runtime.
    async fn make(&self, name: &str, template: &Arc<RouteConfig>) -> Option<Admitted> {
        let (reply, answer) = oneshot::channel();
        let request = MakeRoute { name: name.to_string(), template: Arc::clone(template), reply };
        self.make.as_ref()?.send(request).await.ok()?;
        let (config, route) = answer.await.ok()??;
        Some(Admitted { config, route })
    }

    /// Decides `request` against `plugin` (a route's or the API's auth; `None` = "none") with the plugins and
    /// `[defaults] anonymous` in force: the step [`admit`](Self::admit) ends with, and what the `/v1` guard asks
    /// (action `api` is about the API, not a route).
    pub async fn authorize(&self, plugin: Option<&str>, request: crate::auth::Request) -> Outcome {
        let routes = self.routes();
        self.gate.check(&routes.plugins, &routes.table.anonymous, plugin, request).await
    }

    /// [`admit`](Self::admit) for playback, where a route no longer configured is still a valid subject (its
    /// recordings remain): `Ok` means the request may read them.
    pub async fn admit_playback(&self, ask: Ask) -> Result<(), Refusal> {
        match self.admit(ask).await {
            Ok(_) | Err(Refusal::NoRoute(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether the route takes what is asked: a publisher of its `from` protocol, a reader of an output it lists.
fn check_route(config: &RouteConfig, wants: &Wants) -> Result<(), Refusal> {
    match wants {
        Wants::Publish(protocol) if !config.from.takes(*protocol) => Err(Refusal::NotPublishable {
            route: config.name.to_string(),
            from: config.from.redacted(),
            protocol: match protocol {
                PublishProtocol::Whip => "WHIP",
                PublishProtocol::Rtmp => "RTMP",
                PublishProtocol::Rtsp => "RTSP",
                PublishProtocol::Any => "any",
            },
        }),
        Wants::Read(output) if !config.to.contains(output) => {
            Err(Refusal::OutputNotAllowed { route: config.name.to_string(), output: output.to_string() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::route::actor::RouteSource;
    use crate::route::spawn_route;

    const FILE: &str = "[defaults]\nanonymous = [\"read\", \"publish\"]\n\n\
        [[route]]\nname = \"cam\"\nfrom = \"whip\"\nto = [\"whep\"]\n\n\
        [[route]]\nname = \"studio\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\npublish_key = \"k\"\n";

    /// Admission over `FILE`, with publish routes standing in for the runtime's.
    fn admission() -> Admission {
        let table = crate::config::parse(FILE, "routes.toml", &|_| None).expect("valid");
        let routes =
            table.routes.iter().map(|c| (Arc::clone(c), spawn_route(Arc::clone(c), RouteSource::Publish))).collect();
        let view = Routes { table: Arc::new(table), plugins: Plugins::default(), routes };
        let (_tx, rx) = watch::channel(Arc::new(view));
        Admission::new(rx, Arc::default())
    }

    fn ask(route: &str, wants: Wants, key: Option<&str>) -> Ask {
        Ask {
            route: route.into(),
            wants,
            protocol: Protocol::Rtmp,
            target: format!("/{route}"),
            remote: Some(IpAddr::from([127, 0, 0, 9])),
            query: Vec::new(),
            credentials: Credentials::None,
            stream_key: key.map(str::to_string),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_refusal_names_what_is_wrong_and_the_right_request_is_admitted() {
        let a = admission();
        let refusal = |r: Result<Admitted, Refusal>| r.expect_err("refused").to_string();
        assert_eq!(refusal(a.admit(ask("nope", Wants::Read(Output::Whep), None)).await), "there is no route \"nope\"");
        assert_eq!(
            refusal(a.admit(ask("cam", Wants::Publish(PublishProtocol::Rtmp), None)).await),
            "route \"cam\" takes its media from whip, not from RTMP publishers"
        );
        assert_eq!(
            refusal(a.admit(ask("cam", Wants::Read(Output::Rtmp), None)).await),
            "route \"cam\" does not list \"rtmp\" in `to`"
        );
        assert!(a.admit(ask("cam", Wants::Read(Output::Whep), None)).await.is_ok());
        assert!(a.admit(ask("cam", Wants::Publish(PublishProtocol::Whip), None)).await.is_ok());
        // The publish key, under the gate's delay for a wrong one (paused time: no real wait).
        let wrong = a.admit(ask("studio", Wants::Publish(PublishProtocol::Rtmp), Some("x")));
        let wrong = tokio::time::timeout(Duration::from_secs(5), wrong).await.expect("decided");
        assert_eq!(refusal(wrong), "route \"studio\": access denied: wrong or missing stream key");
        let right = a.admit(ask("studio", Wants::Publish(PublishProtocol::Rtmp), Some("k"))).await.expect("admitted");
        assert_eq!(right.config.name.as_str(), "studio");
        // Anonymous rules still apply: playback is not in `anonymous` here.
        let playback = a.admit_playback(ask("cam", Wants::Playback, None)).await.expect_err("no playback");
        assert!(playback.to_string().contains("does not allow anonymous playback"), "{playback}");
    }
}
