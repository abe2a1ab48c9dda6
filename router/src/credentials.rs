//! Making credentials for the built-in auth plugins from the command line: `sluice passwd` (an argon2id hash for
//! `builtin:auth-users`) and `sluice token` (a JWT that the routes file's `builtin:auth-jwt` plugin accepts).
//! Both read the same settings the plugins do, so what they make is what the router will take.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHasher, SaltString};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

use crate::config::model::{BuiltinPlugin, PluginSource, RouteTable};

/// An argon2id PHC string for `password`, with a random salt and the argon2 crate's default cost (19 MiB, two
/// passes): what `builtin:auth-users` verifies.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random numbers for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// What a token should say.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `sub` claim: who holds it (logs and the plugin's identity).
    pub subject: String,
    /// Permissions, each `action:route-pattern` (`read:cams/*`, `publish:studio`, `*:*`).
    pub allow: Vec<String>,
    pub valid_for: Duration,
    /// The plugin to mint for, when the file has more than one `builtin:auth-jwt`.
    pub plugin: Option<String>,
    /// An RS256 private key (PEM), for plugins configured with a public key.
    pub private_key: Option<String>,
}

/// The parts of auth-jwt's config a token depends on (the plugin reads the same keys; unknown ones are its
/// business, so they are ignored here).
#[derive(Debug, Deserialize)]
struct JwtConfig {
    secret: Option<String>,
    secret_env: Option<String>,
    public_key: Option<String>,
    public_key_env: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    permissions_claim: Option<String>,
}

/// Signs a token for the auth-jwt plugin of `table`. `env` reads the environment (for `secret_env`).
pub fn mint_token(
    table: &RouteTable,
    request: &TokenRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let candidates: Vec<_> =
        table.plugins.values().filter(|p| p.source == PluginSource::Builtin(BuiltinPlugin::AuthJwt)).collect();
    let plugin = match (&request.plugin, candidates.as_slice()) {
        (Some(name), _) => candidates
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| format!("there is no builtin:auth-jwt plugin named \"{name}\" in the routes file"))?,
        (None, [one]) => one,
        (None, []) => return Err("the routes file declares no builtin:auth-jwt plugin to make a token for".into()),
        (None, _) => {
            let names: Vec<&str> = candidates.iter().map(|p| p.name.as_str()).collect();
            return Err(format!("several auth-jwt plugins ({}): choose one with --plugin", names.join(", ")));
        }
    };
    let config: JwtConfig = serde_json::from_value(plugin.config.clone())
        .map_err(|e| format!("plugin \"{}\": its config is not auth-jwt's: {e}", plugin.name))?;
    let from_env = |var: &Option<String>| -> Result<Option<String>, String> {
        match var {
            Some(v) => env(v).map(Some).ok_or_else(|| format!("{v} is not set (the plugin's key is in it)")),
            None => Ok(None),
        }
    };
    let secret = config.secret.clone().map_or_else(|| from_env(&config.secret_env), |s| Ok(Some(s)))?;
    let has_public_key = config.public_key.is_some() || config.public_key_env.is_some();
    let (header, key) = match (&request.private_key, secret) {
        (Some(pem), _) => (
            Header::new(Algorithm::RS256),
            EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("the private key is not an RSA PEM key: {e}"))?,
        ),
        (None, Some(secret)) => (Header::new(Algorithm::HS256), EncodingKey::from_secret(secret.as_bytes())),
        (None, None) if has_public_key => {
            return Err(format!(
                "plugin \"{}\" checks RS256 tokens: give the matching private key with --private-key FILE",
                plugin.name
            ));
        }
        (None, None) => return Err(format!("plugin \"{}\" has no key configured", plugin.name)),
    };
    for grant in &request.allow {
        let action = grant.split_once(':').map(|(a, _)| a).unwrap_or_default();
        if !matches!(action, "publish" | "read" | "playback" | "api" | "*") {
            return Err(format!(
                "--allow \"{grant}\": write ACTION:ROUTE, ACTION one of publish, read, playback, api or *"
            ));
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), request.subject.clone().into());
    claims.insert("iat".into(), now.into());
    let exp = now.checked_add(request.valid_for.as_secs()).ok_or("--expires is too far in the future")?;
    claims.insert("exp".into(), exp.into());
    if let Some(aud) = config.audience {
        claims.insert("aud".into(), aud.into());
    }
    if let Some(iss) = config.issuer {
        claims.insert("iss".into(), iss.into());
    }
    claims.insert(config.permissions_claim.unwrap_or_else(|| "sluice".into()), request.allow.clone().into());
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        let parsed = PasswordHash::new(&a).expect("PHC string");
        assert!(argon2::Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2::Argon2::default().verify_password(b"wrong", &parsed).is_err());
        assert!(hash_password("").is_err());
    }

    fn table(plugins: &str) -> RouteTable {
        crate::config::parse(plugins, "routes.toml", &|_| None).expect("valid")
    }

    fn request(allow: &[&str]) -> TokenRequest {
        TokenRequest {
            subject: "cam-7".into(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            valid_for: Duration::from_secs(3600),
            plugin: None,
            private_key: None,
        }
    }

    #[test]
    fn a_token_carries_what_the_plugin_checks() {
        let t = table(
            "[plugins.jwt]\nsource = \"builtin:auth-jwt\"\n\
             config = { secret_env = \"JWT_SECRET\", audience = \"sluice\", issuer = \"me\", permissions_claim = \"perms\" }\n",
        );
        let env = |name: &str| (name == "JWT_SECRET").then(|| "s3cret".to_string());
        let token = mint_token(&t, &request(&["read:cams/*"]), &env).expect("token");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_audience(&["sluice"]);
        validation.set_issuer(&["me"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .expect("verifies with the plugin's secret")
        .claims;
        assert_eq!(claims["sub"], "cam-7");
        assert_eq!(claims["perms"], serde_json::json!(["read:cams/*"]));
        assert!(
            mint_token(&t, &request(&["read:cams/*"]), &|_| None).is_err_and(|e| e.contains("JWT_SECRET is not set"))
        );
        assert!(mint_token(&t, &request(&["watch:cams"]), &env).is_err_and(|e| e.contains("--allow \"watch:cams\"")));
    }

    #[test]
    fn the_plugin_must_be_there_and_unambiguous() {
        let none = table("");
        assert_eq!(
            mint_token(&none, &request(&["read:*"]), &|_| None),
            Err("the routes file declares no builtin:auth-jwt plugin to make a token for".into())
        );
        let two = table(
            "[plugins.a]\nsource = \"builtin:auth-jwt\"\nconfig = { secret = \"x\" }\n\
             [plugins.b]\nsource = \"builtin:auth-jwt\"\nconfig = { secret = \"y\" }\n",
        );
        assert!(mint_token(&two, &request(&["read:*"]), &|_| None).is_err_and(|e| e.contains("--plugin")));
        let mut pick = request(&["read:*"]);
        pick.plugin = Some("b".into());
        assert!(mint_token(&two, &pick, &|_| None).is_ok());
        let rs = table("[plugins.jwt]\nsource = \"builtin:auth-jwt\"\nconfig = { public_key = \"PEM\" }\n");
        assert!(mint_token(&rs, &request(&["read:*"]), &|_| None).is_err_and(|e| e.contains("--private-key")));
    }
}
