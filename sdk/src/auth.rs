//! The `auth` world: decide who may publish, read, play back and use the API.
//!
//! Implement [`Authorizer`] and call [`export_auth!`](crate::export_auth). The router calls `new` once per
//! instance with the plugin's config, then `authorize` per request it has no cached decision for.

use std::any::Any;
use std::cell::RefCell;

use serde::de::DeserializeOwned;

/// Guest bindings generated from `wit/auth.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        world: "auth",
        path: "wit",
        runtime_path: "::sluice_sdk::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::sluice_sdk::auth::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::sluice::plugin::auth_types::{
    Action, Allow, BasicCredentials, Credentials, Decision, Protocol, Request,
};

/// An auth plugin.
pub trait Authorizer: Sized + 'static {
    /// The plugin's `config` table from routes.toml, read with serde.
    type Config: DeserializeOwned;

    /// Builds the plugin from its config. An error refuses the plugin at load, shown to the admin.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Decides one request. Keep it quick: it runs under the plugin's `call_timeout` (50 ms by default).
    fn authorize(&self, request: &Request) -> Decision;
}

impl Decision {
    /// Allows, naming who the client is; the router may reuse the decision for `cache_ttl_ms`.
    pub fn allow(identity: impl Into<String>, cache_ttl_ms: u32) -> Decision {
        Decision::Allow(Allow { identity: identity.into(), cache_ttl_ms })
    }

    /// Refuses with a reason the client sees.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny(reason.into())
    }

    /// Asks the client for credentials (HTTP/RTSP 401) in `realm`.
    pub fn challenge(realm: impl Into<String>) -> Decision {
        Decision::Challenge(realm.into())
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl Request {
    /// A request as the router would send it for `action` on `route`: no credentials, from 127.0.0.1, over the
    /// protocol that action usually arrives on. Adjust it with the `with_*` methods (handy in tests).
    pub fn new(action: Action, route: &str) -> Request {
        let (protocol, target) = match action {
            Action::Publish => (Protocol::Whip, format!("/{route}/whip")),
            Action::Read => (Protocol::Whep, format!("/{route}/whep")),
            Action::Playback => (Protocol::Http, "/v1/recordings".to_string()),
            Action::Api => (Protocol::Http, "GET /v1/routes".to_string()),
        };
        Request {
            action,
            protocol,
            route: route.to_string(),
            target,
            query: Vec::new(),
            remote_ip: "127.0.0.1".to_string(),
            credentials: Credentials::None,
        }
    }

    pub fn with_protocol(mut self, protocol: Protocol) -> Request {
        self.protocol = protocol;
        self
    }

    pub fn with_bearer(mut self, token: &str) -> Request {
        self.credentials = Credentials::Bearer(token.to_string());
        self
    }

    pub fn with_basic(mut self, user: &str, password: &str) -> Request {
        self.credentials =
            Credentials::Basic(BasicCredentials { user: user.to_string(), password: password.to_string() });
        self
    }

    pub fn with_stream_key(mut self, key: &str) -> Request {
        self.credentials = Credentials::StreamKey(key.to_string());
        self
    }

    pub fn with_remote_ip(mut self, ip: &str) -> Request {
        self.remote_ip = ip.to_string();
        self
    }

    pub fn with_query(mut self, name: &str, value: &str) -> Request {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// The bearer token, if the client sent one.
    pub fn bearer(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Bearer(t) => Some(t),
            _ => None,
        }
    }

    /// User and password, if the client sent them.
    pub fn basic(&self) -> Option<(&str, &str)> {
        match &self.credentials {
            Credentials::Basic(b) => Some((&b.user, &b.password)),
            _ => None,
        }
    }

    /// The RTMP stream key, if the client sent one.
    pub fn stream_key(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::StreamKey(k) => Some(k),
            _ => None,
        }
    }

    /// The first query parameter called `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Read => "read",
            Action::Playback => "playback",
            Action::Api => "api",
        }
    }
}

/// One permission, as auth plugins conventionally write them in config or token claims: either
/// `{ action = "read", route = "cams/*" }` or the short form `"read:cams/*"` (a bare `"read"` means every
/// route). `action` is publish, read, playback, api or `*`; in `route`, `*` matches any run of characters.
/// MediaMTX's shape is read too: `{ "action": "read", "path": "cams/door" }`, where a missing or empty path means
/// every route (so its tokens' `mediamtx_permissions` claim works unchanged).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Grant {
    Full(RouteGrant),
    Path(PathGrant),
    Short(String),
}

/// `{ action = "read", route = "cams/*" }`. Unknown keys are refused: a misspelt `route` is not every route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteGrant {
    pub action: String,
    pub route: String,
}

/// MediaMTX's `{ "action": "read", "path": "cams/door" }`: a missing or empty path is every route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathGrant {
    pub action: String,
    #[serde(default)]
    pub path: String,
}

impl Grant {
    /// Whether this permission covers `action` on `route`.
    pub fn grants(&self, action: Action, route: &str) -> bool {
        let (a, r) = match self {
            Grant::Full(g) => (g.action.as_str(), g.route.as_str()),
            Grant::Path(g) if g.path.is_empty() => (g.action.as_str(), "*"),
            Grant::Path(g) => (g.action.as_str(), g.path.as_str()),
            Grant::Short(s) => s.split_once(':').unwrap_or((s.as_str(), "*")),
        };
        (a == "*" || a == action.as_str()) && pattern_matches(r, route)
    }
}

/// `*` matches any run of characters (including `/` and nothing); everything else matches itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and how much text it has swallowed so far: on a mismatch it swallows one more.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

thread_local! {
    /// The plugin value of this instance. A wasm instance is single-threaded; natively, each test thread has its
    /// own (see [`crate::mock`]).
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn __init<P: Authorizer>(config: &str) -> Result<(), String> {
    let plugin = P::new(crate::config::parse::<P::Config>(config)?)?;
    PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

#[doc(hidden)]
pub fn __authorize<P: Authorizer>(request: &Request) -> Decision {
    PLUGIN.with(|slot| match slot.borrow().as_ref().and_then(|p| p.downcast_ref::<P>()) {
        Some(plugin) => plugin.authorize(request),
        None => Decision::deny("plugin used before init"),
    })
}

/// Exports a type implementing [`Authorizer`] as the plugin's `authorizer` interface.
#[macro_export]
macro_rules! export_auth {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SluiceAuthExport;

        impl $crate::auth::bindings::exports::sluice::plugin::authorizer::Guest for __SluiceAuthExport {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::auth::__init::<$plugin>(&config)
            }

            fn authorize(request: $crate::auth::Request) -> $crate::auth::Decision {
                $crate::auth::__authorize::<$plugin>(&request)
            }
        }

        // Native builds (tests against the mock host) export nothing: the symbols' names are not valid there.
        #[cfg(target_arch = "wasm32")]
        $crate::auth::bindings::export!(__SluiceAuthExport with_types_in $crate::auth::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::{Action, Grant, pattern_matches};

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("cams/*", "cams/front"));
        assert!(pattern_matches("cams/*/hd", "cams/a/b/hd"));
        assert!(!pattern_matches("cams/*", "cam"));
        assert!(pattern_matches("demo", "demo"));
        assert!(!pattern_matches("demo", "demo2"));
        assert!(pattern_matches("*-hd", "lobby-hd"));
        assert!(!pattern_matches("a*b", "aXbc"));
    }

    #[test]
    fn grants() {
        let g: Vec<Grant> =
            serde_json::from_str(r#"[{"action":"read","route":"cams/*"},"publish:studio","api"]"#).expect("parse");
        assert!(g[0].grants(Action::Read, "cams/x"));
        assert!(!g[0].grants(Action::Publish, "cams/x"));
        assert!(g[1].grants(Action::Publish, "studio"));
        assert!(!g[1].grants(Action::Publish, "studio2"));
        assert!(g[2].grants(Action::Api, ""));
        assert!(g[2].grants(Action::Api, "anything"));
    }

    #[test]
    fn mediamtx_permissions_read_as_grants() {
        let g: Vec<Grant> = serde_json::from_str(
            r#"[{"action":"publish","path":"cams/door"},{"action":"read","path":""},{"action":"playback"}]"#,
        )
        .expect("parse");
        assert!(g[0].grants(Action::Publish, "cams/door"));
        assert!(!g[0].grants(Action::Publish, "cams/yard"));
        assert!(g[1].grants(Action::Read, "anything/at/all"), "an empty path is every path");
        assert!(g[2].grants(Action::Playback, "x"), "and so is a missing one");
        assert!(!g[2].grants(Action::Read, "x"));
        // A misspelt key is an error, not a grant of every route.
        assert!(serde_json::from_str::<Grant>(r#"{"action":"read","rout":"cam1"}"#).is_err());
        let empty: Grant = serde_json::from_str(r#"{"action":"read","route":""}"#).expect("parse");
        assert!(!empty.grants(Action::Read, "cam1"), "Sluice's own form keeps its meaning");
    }
}
