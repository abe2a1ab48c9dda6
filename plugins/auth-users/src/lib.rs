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
//! - `ips` (optional): the addresses or ranges (`"192.168.1.0/24"`, `"::1"`) a user may connect from; anywhere
//!   when left out.
//! - `anonymous` (optional): what clients without credentials may do, a list of `{ permissions = [...], ips = [...] }`
//!   (MediaMTX's user `any`); a client none of them covers is asked for credentials.
//! - `cache_ttl` (seconds, default 300): how long the router may reuse a decision (decisions that depended on the
//!   client's address are not reused: the router's cache does not key on it).
//!
//! Clients send a user and password as HTTP/RTSP Basic credentials, or as the RTMP stream key `user:password`.
//! Accounts move to the router's database once it has one; this config stays as the static alternative.

use std::net::IpAddr;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use serde::Deserialize;
use sluice_sdk::auth::{Action, Authorizer, Credentials, Decision, Grant, Request};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    users: Vec<UserConfig>,
    #[serde(default)]
    anonymous: Vec<AnonymousConfig>,
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
    #[serde(default)]
    ips: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousConfig {
    permissions: Vec<Grant>,
    #[serde(default)]
    ips: Vec<String>,
}

/// Where a client may connect from: none listed is anywhere.
#[derive(Debug, Default)]
struct Places(Vec<IpRange>);

impl Places {
    fn parse(ips: &[String], whose: &str) -> Result<Places, String> {
        ips.iter()
            .map(|ip| IpRange::parse(ip).map_err(|e| format!("{whose}: `ips`: {e}")))
            .collect::<Result<_, _>>()
            .map(Places)
    }

    fn admit(&self, remote: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        // An unparsable address (the router always sends one) matches no range.
        let Ok(ip) = remote.parse::<IpAddr>() else { return false };
        self.0.iter().any(|r| r.contains(ip.to_canonical()))
    }

    fn restricted(&self) -> bool {
        !self.0.is_empty()
    }
}

/// An address and how many of its leading bits a client's must share.
#[derive(Debug, Clone, Copy)]
struct IpRange {
    net: IpAddr,
    bits: u32,
}

impl IpRange {
    fn parse(text: &str) -> Result<IpRange, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let written = addr
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("\"{text}\" is not an address or range like \"10.0.0.0/8\""))?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("\"{text}\" has a prefix length outside 0..={max}"))?,
        };
        // An IPv4-mapped range (::ffff:10.0.0.0/104) is the IPv4 range it maps, as clients' addresses are.
        let net = written.to_canonical();
        let bits = if written.is_ipv6() && net.is_ipv4() { bits.saturating_sub(96) } else { bits };
        Ok(IpRange { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - self.bits;
        shift >= 128 || (net >> shift) == (ip >> shift)
    }
}

fn default_cache_ttl() -> u32 {
    300
}

#[derive(Debug)]
struct User {
    name: String,
    hash: String,
    permissions: Vec<Grant>,
    places: Places,
}

#[derive(Debug)]
struct Anonymous {
    permissions: Vec<Grant>,
    places: Places,
}

#[derive(Debug)]
pub struct Users {
    users: Vec<User>,
    anonymous: Vec<Anonymous>,
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
            let places = Places::parse(&u.ips, &format!("user \"{}\"", u.name))?;
            users.push(User { name: u.name, hash: u.password_hash, permissions: u.permissions, places });
        }
        let anonymous = config
            .anonymous
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let places = Places::parse(&a.ips, &format!("anonymous entry {}", i + 1))?;
                Ok(Anonymous { permissions: a.permissions, places })
            })
            .collect::<Result<_, String>>()?;
        Ok(Users { users, anonymous, cache_ttl_ms: config.cache_ttl.saturating_mul(1000) })
    }

    fn authorize(&self, request: &Request) -> Decision {
        let (name, password) = match &request.credentials {
            Credentials::Basic(b) => (b.user.as_str(), b.password.as_str()),
            Credentials::StreamKey(k) => match k.split_once(':') {
                Some(pair) => pair,
                // Encoders always send some key: one that is no user:password is no credentials.
                None if !self.anonymous.is_empty() => return self.anonymously(request),
                None => return Decision::deny("the stream key must be user:password"),
            },
            Credentials::None | Credentials::Bearer(_) => return self.anonymously(request),
        };
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(DUMMY_HASH, |u| u.hash.as_str());
        let verified = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        match user {
            Some(u) if verified && !u.places.admit(&request.remote_ip) => {
                Decision::deny(format!("{} may not connect from {}", u.name, request.remote_ip))
            }
            Some(u) if verified => {
                if grants(&u.permissions, request.action, &request.route) {
                    let ttl = if u.places.restricted() { 0 } else { self.cache_ttl_ms };
                    Decision::allow(u.name.clone(), ttl)
                } else {
                    Decision::deny(format!("{} may not {} \"{}\"", u.name, request.action.as_str(), request.route))
                }
            }
            _ => Decision::deny("wrong user name or password"),
        }
    }
}

impl Users {
    /// A client without credentials: allowed what an `anonymous` entry covering its address grants, otherwise
    /// asked for credentials.
    fn anonymously(&self, request: &Request) -> Decision {
        let entry = self
            .anonymous
            .iter()
            .find(|a| grants(&a.permissions, request.action, &request.route) && a.places.admit(&request.remote_ip));
        match entry {
            Some(a) => Decision::allow("anonymous", if a.places.restricted() { 0 } else { self.cache_ttl_ms }),
            None => Decision::challenge("sluice"),
        }
    }
}

fn grants(permissions: &[Grant], action: Action, route: &str) -> bool {
    permissions.iter().any(|p| p.grants(action, route))
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
    fn users_may_be_held_to_addresses() {
        let h = AuthHost::<Users>::from_value(json!({ "users": [
            { "name": "ana", "password_hash": ANA_HASH, "permissions": ["*"], "ips": ["192.168.1.0/24", "::1"] },
        ] }))
        .expect("config");
        let from = |ip: &str| Request::new(Action::Read, "cam").with_basic("ana", "opensesame").with_remote_ip(ip);
        assert_eq!(h.authorize(&from("192.168.1.77")), Decision::allow("ana", 0), "not cached: it hung on the address");
        assert!(h.authorize(&from("::1")).is_allow());
        assert!(h.authorize(&from("::ffff:192.168.1.5")).is_allow(), "an IPv4 client on a dual-stack socket");
        assert_eq!(h.authorize(&from("192.168.2.1")), Decision::deny("ana may not connect from 192.168.2.1"));
        assert!(!h.authorize(&from("::2")).is_allow());
        assert!(!h.authorize(&from("not an address")).is_allow());
    }

    #[test]
    fn clients_without_credentials_get_what_anonymous_entries_grant() {
        // MediaMTX's default users: anyone reads and publishes, the API only from this machine.
        let h = AuthHost::<Users>::from_value(json!({
            "users": [{ "name": "ana", "password_hash": ANA_HASH, "permissions": ["api"] }],
            "anonymous": [
                { "permissions": ["read:*", "publish:cams/*"] },
                { "permissions": ["api"], "ips": ["127.0.0.1", "::1"] },
            ],
        }))
        .expect("config");
        let anon = |action, route: &str, ip: &str| h.authorize(&Request::new(action, route).with_remote_ip(ip));
        assert_eq!(anon(Action::Read, "door", "10.0.0.5"), Decision::allow("anonymous", 300_000));
        assert!(anon(Action::Publish, "cams/1", "10.0.0.5").is_allow());
        assert_eq!(anon(Action::Publish, "door", "10.0.0.5"), Decision::challenge("sluice"), "asked who it is");
        assert_eq!(anon(Action::Api, "", "127.0.0.1"), Decision::allow("anonymous", 0));
        assert_eq!(anon(Action::Api, "", "10.0.0.5"), Decision::challenge("sluice"));
        let ana = Request::new(Action::Api, "").with_basic("ana", "opensesame").with_remote_ip("10.0.0.5");
        assert!(h.authorize(&ana).is_allow(), "a user's credentials still count from anywhere");
        let obs = Request::new(Action::Publish, "cams/1").with_stream_key("live_12345").with_remote_ip("10.0.0.5");
        assert!(h.authorize(&obs).is_allow(), "an encoder's key that is no user:password counts as no credentials");
    }

    #[test]
    fn bad_ranges_are_refused_with_whose_they_are() {
        let user = json!({ "name": "a", "password_hash": DUMMY_HASH, "ips": ["10.0.0.0/33"] });
        let e = AuthHost::<Users>::from_value(json!({ "users": [user] })).expect_err("range");
        assert_eq!(e, "user \"a\": `ips`: \"10.0.0.0/33\" has a prefix length outside 0..=32");
        let e = AuthHost::<Users>::from_value(json!({ "anonymous": [{ "permissions": ["read"], "ips": ["lan"] }] }))
            .expect_err("name");
        assert_eq!(e, "anonymous entry 1: `ips`: \"lan\" is not an address or range like \"10.0.0.0/8\"");
        let mapped = AuthHost::<Users>::from_value(
            json!({ "anonymous": [{ "permissions": ["read"], "ips": ["::ffff:10.0.0.0/104"] }] }),
        )
        .expect("an IPv4-mapped range");
        assert!(mapped.authorize(&Request::new(Action::Read, "x").with_remote_ip("10.1.2.3")).is_allow());
        assert!(!mapped.authorize(&Request::new(Action::Read, "x").with_remote_ip("11.1.2.3")).is_allow());
        let all =
            AuthHost::<Users>::from_value(json!({ "anonymous": [{ "permissions": ["read"], "ips": ["0.0.0.0/0"] }] }))
                .expect("every IPv4 address");
        assert!(all.authorize(&Request::new(Action::Read, "x").with_remote_ip("203.0.113.9")).is_allow());
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
