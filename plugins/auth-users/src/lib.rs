//! `builtin:auth-users`: user names and passwords, each user with a list of permissions.
//!
//! ```toml
//! [plugins.users]
//! source = "builtin:auth-users"
//! config = { users = [
//!   { name = "ana", password_hash = "$argon2id$v=19$m=19456,t=2,p=1$...", permissions = ["read:*", "publish:studio"] },
//! ] }
//! ```
//!
//! - `password_hash`: an argon2 PHC string, e.g. from `echo -n 'PASSWORD' | argon2 "$(openssl rand -hex 8)" -id -e`
//!   (Debian package `argon2`). Plain-text passwords are not accepted.
//! - `permissions`: `"action:route-pattern"` or `{ action = "read", route = "cams/*" }`; `*` is a wildcard.
//! - `cache_ttl` (seconds, default 300): how long the router may reuse a decision.
//!
//! Clients send a user and password as HTTP/RTSP Basic credentials, or as the RTMP stream key `user:password`.
//! Accounts move to the router's database once it has one; this config stays as the static alternative.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use serde::Deserialize;
use sluice_sdk::auth::{Authorizer, Credentials, Decision, Grant, Request};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    users: Vec<UserConfig>,
    #[serde(default = "default_cache_ttl")]
    cache_ttl: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserConfig {
    name: String,
    password_hash: String,
    #[serde(default)]
    permissions: Vec<Grant>,
}

fn default_cache_ttl() -> u32 {
    300
}

#[derive(Debug)]
struct User {
    name: String,
    hash: String,
    permissions: Vec<Grant>,
}

#[derive(Debug)]
pub struct Users {
    users: Vec<User>,
    cache_ttl_ms: u32,
}

/// Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2x1aWNlLWR1bW15$hoBody3aIbCtTOipQM6acjTP9ca7xx1i1Fx2j+p7KJg";

impl Authorizer for Users {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let mut users = Vec::with_capacity(config.users.len());
        for u in config.users {
            if users.iter().any(|other: &User| other.name == u.name) {
                return Err(format!("user \"{}\" is listed twice", u.name));
            }
            PasswordHash::new(&u.password_hash).map_err(|e| {
                format!(
                    "user \"{}\": `password_hash` is not an argon2 hash ({e}); plain passwords are not accepted",
                    u.name
                )
            })?;
            users.push(User { name: u.name, hash: u.password_hash, permissions: u.permissions });
        }
        Ok(Users { users, cache_ttl_ms: config.cache_ttl.saturating_mul(1000) })
    }

    fn authorize(&self, request: &Request) -> Decision {
        let (name, password) = match &request.credentials {
            Credentials::Basic(b) => (b.user.as_str(), b.password.as_str()),
            Credentials::StreamKey(k) => match k.split_once(':') {
                Some(pair) => pair,
                None => return Decision::deny("the stream key must be user:password"),
            },
            Credentials::None | Credentials::Bearer(_) => return Decision::challenge("sluice"),
        };
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(DUMMY_HASH, |u| u.hash.as_str());
        let verified = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        match user {
            Some(u) if verified => {
                if u.permissions.iter().any(|p| p.grants(request.action, &request.route)) {
                    Decision::allow(u.name.clone(), self.cache_ttl_ms)
                } else {
                    Decision::deny(format!("{} may not {} \"{}\"", u.name, request.action.as_str(), request.route))
                }
            }
            _ => Decision::deny("wrong user name or password"),
        }
    }
}

sluice_sdk::export_auth!(Users);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::auth::{Action, Decision, Request};
    use sluice_sdk::mock::AuthHost;

    use super::{DUMMY_HASH, Users};

    /// argon2id of "opensesame" with the crate's default parameters.
    pub const ANA_HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$YW5hLXNhbHQtMTIz$9ek1O8vea3hRkGsQGnKSmH/AkzV1kgq4Ep1at13JXCI";

    fn host() -> AuthHost<Users> {
        AuthHost::from_value(json!({ "users": [
            { "name": "ana", "password_hash": ANA_HASH, "permissions": ["read:*", "publish:studio"] },
        ] }))
        .expect("config")
    }

    #[test]
    fn right_password_allows_what_the_user_may_do() {
        let h = host();
        let read = Request::new(Action::Read, "cams/a").with_basic("ana", "opensesame");
        assert_eq!(h.authorize(&read), Decision::allow("ana", 300_000));
        let publish = Request::new(Action::Publish, "studio").with_stream_key("ana:opensesame");
        assert!(h.authorize(&publish).is_allow());
        let elsewhere = Request::new(Action::Publish, "lobby").with_basic("ana", "opensesame");
        assert_eq!(h.authorize(&elsewhere), Decision::deny("ana may not publish \"lobby\""));
    }

    #[test]
    fn wrong_credentials_are_denied_alike() {
        let h = host();
        let wrong = Decision::deny("wrong user name or password");
        assert_eq!(h.authorize(&Request::new(Action::Read, "a").with_basic("ana", "nope")), wrong);
        assert_eq!(h.authorize(&Request::new(Action::Read, "a").with_basic("bob", "opensesame")), wrong);
        assert_eq!(h.authorize(&Request::new(Action::Read, "a")), Decision::challenge("sluice"));
    }

    #[test]
    fn plain_passwords_and_duplicates_are_refused() {
        let e = AuthHost::<Users>::from_value(json!({ "users": [{ "name": "a", "password_hash": "hunter2" }] }))
            .expect_err("plain");
        assert!(e.contains("is not an argon2 hash"), "{e}");
        let u = json!({ "name": "a", "password_hash": DUMMY_HASH });
        let e = AuthHost::<Users>::from_value(json!({ "users": [u, u] })).expect_err("twice");
        assert_eq!(e, "user \"a\" is listed twice");
    }
}
