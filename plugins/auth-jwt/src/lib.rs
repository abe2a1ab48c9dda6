//! `builtin:auth-jwt`: clients present a JSON Web Token; its claims say what they may do.
//!
//! ```toml
//! [plugins.jwt]
//! source = "builtin:auth-jwt"
//! config = { secret_env = "SLUICE_JWT_SECRET", audience = "sluice" }
//! grants = { env = ["SLUICE_JWT_SECRET"] }
//! ```
//!
//! Config keys (all optional, but at least one key source):
//! - `secret` / `secret_env`: the HS256 shared secret, or the environment variable holding it.
//! - `public_key` / `public_key_env`: an RS256 public key (PEM), or the variable holding it.
//! - `issuer`, `audience`: when set, tokens must carry this `iss` / `aud`.
//! - `permissions_claim` (default `"sluice"`): the claim listing what the holder may do, each entry either
//!   `{ action = "read", route = "cams/*" }` or the short form `"read:cams/*"`. `action` is publish, read,
//!   playback, api or `*`; `route` is a pattern where `*` matches any run of characters.
//! - `leeway` (seconds, default 30): clock skew tolerated on `exp` and `nbf`.
//! - `cache_ttl` (seconds, default 60): how long the router may reuse a decision; never past the token's `exp`.
//!
//! Where the token comes from: `Authorization: Bearer` or `?token=` (HTTP, WHIP, WHEP, RTMP), the RTMP stream
//! key, or the password of Basic credentials (RTSP clients that can only send a user and password).
//!
//! Refused: `alg: none`, any algorithm other than the configured key's (HS256 with a secret, RS256 with a
//! public key: a token signed with HS256 using the RSA public key as secret does not verify), expired or
//! not-yet-valid tokens, wrong issuer or audience, tampered signatures.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use sluice_sdk::auth::{Authorizer, Credentials, Decision, Grant, Request};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    secret: Option<String>,
    secret_env: Option<String>,
    public_key: Option<String>,
    public_key_env: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    #[serde(default = "default_claim")]
    permissions_claim: String,
    #[serde(default = "default_leeway")]
    leeway: u64,
    #[serde(default = "default_cache_ttl")]
    cache_ttl: u32,
}

fn default_claim() -> String {
    "sluice".to_string()
}

fn default_leeway() -> u64 {
    30
}

fn default_cache_ttl() -> u32 {
    60
}

#[derive(Debug)]
pub struct Jwt {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    validation_base: Validation,
    permissions_claim: String,
    cache_ttl_ms: u32,
}

impl Authorizer for Jwt {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let secret = value_or_env("secret", config.secret, config.secret_env)?;
        let public_key = value_or_env("public_key", config.public_key, config.public_key_env)?;
        let hs256 = secret.map(|s| DecodingKey::from_secret(s.as_bytes()));
        let rs256 = match public_key {
            Some(pem) => Some(
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| format!("public_key is not an RSA PEM key: {e}"))?,
            ),
            None => None,
        };
        if hs256.is_none() && rs256.is_none() {
            return Err("set `secret` or `secret_env` (HS256), or `public_key` or `public_key_env` (RS256)".into());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway;
        validation.validate_nbf = true;
        // jsonwebtoken checks `aud` and `iss` only when the token carries them: a configured audience or issuer
        // must also be required, or a token without the claim passes (issue 24).
        let mut required = vec!["exp"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Jwt {
            hs256,
            rs256,
            validation_base: validation,
            permissions_claim: config.permissions_claim,
            cache_ttl_ms: config.cache_ttl.saturating_mul(1000),
        })
    }

    fn authorize(&self, request: &Request) -> Decision {
        let token = match &request.credentials {
            Credentials::Bearer(t) | Credentials::StreamKey(t) => t.as_str(),
            Credentials::Basic(b) => b.password.as_str(),
            Credentials::None => return Decision::challenge("sluice"),
        };
        let claims = match self.verify(token) {
            Ok(c) => c,
            Err(reason) => return Decision::deny(reason),
        };
        let permissions: Vec<Grant> = match claims.get(&self.permissions_claim) {
            Some(v) => match serde_json::from_value(v.clone()) {
                Ok(p) => p,
                Err(_) => {
                    return Decision::deny(format!("the token's `{}` claim is malformed", self.permissions_claim));
                }
            },
            None => return Decision::deny(format!("the token has no `{}` claim", self.permissions_claim)),
        };
        if !permissions.iter().any(|p| p.grants(request.action, &request.route)) {
            return Decision::deny(format!(
                "the token does not allow {} on \"{}\"",
                request.action.as_str(),
                request.route
            ));
        }
        let identity = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("token").to_string();
        let ttl = match claims.get("exp").and_then(|e| e.as_u64()) {
            Some(exp) => {
                let left_ms = exp.saturating_sub(jsonwebtoken::get_current_timestamp()).saturating_mul(1000);
                self.cache_ttl_ms.min(u32::try_from(left_ms).unwrap_or(u32::MAX))
            }
            None => self.cache_ttl_ms,
        };
        Decision::allow(identity, ttl)
    }
}

impl Jwt {
    fn verify(&self, token: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let header = decode_header(token).map_err(|_| "the token is not a JWT".to_string())?;
        // The key decides the algorithm, never the token: this is what stops `alg: none` and HS/RS confusion.
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| format!("tokens signed with {:?} are not accepted here", header.alg))?;
        let mut validation = self.validation_base.clone();
        validation.algorithms = vec![header.alg];
        decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
                ErrorKind::InvalidAudience => "the token is for another audience".to_string(),
                ErrorKind::InvalidIssuer => "the token is from another issuer".to_string(),
                ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
                ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
                _ => "the token is malformed".to_string(),
            }
        })
    }
}

fn value_or_env(key: &str, value: Option<String>, env: Option<String>) -> Result<Option<String>, String> {
    match (value, env) {
        (Some(_), Some(_)) => Err(format!("set `{key}` or `{key}_env`, not both")),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(format!(
                "`{key}_env`: the environment variable {var} is not set, or not granted to the plugin \
                 (grants = {{ env = [\"{var}\"] }})"
            )),
        },
        (None, None) => Ok(None),
    }
}

sluice_sdk::export_auth!(Jwt);

#[cfg(test)]
mod tests;
