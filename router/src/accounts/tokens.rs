//! The accounts' login tokens: HS256 JWTs signed with a secret from `SLUICE_ACCOUNTS_SECRET`, or generated once
//! into `data_dir/accounts.secret` (readable by the router's user only) so logins survive a restart.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The environment variable that, when set, holds the signing secret (at least 32 bytes).
pub const SECRET_ENV: &str = "SLUICE_ACCOUNTS_SECRET";
/// The audience every token names: a token made for something else is not a login here.
const AUDIENCE: &str = "sluice-accounts";

/// What a login token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id, as text (JWT subjects are strings).
    pub sub: String,
    pub name: String,
    pub admin: bool,
    pub iat: u64,
    pub exp: u64,
    pub aud: String,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

/// Signs and checks tokens.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        Signer { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    /// The secret from the environment, else the one in `data_dir` (made on first use).
    pub fn load(data_dir: &Path) -> Result<Signer, String> {
        if let Ok(secret) = std::env::var(SECRET_ENV) {
            if secret.len() < 32 {
                return Err(format!("{SECRET_ENV} is {} bytes; use at least 32", secret.len()));
            }
            return Ok(Signer::new(secret.as_bytes()));
        }
        let path = data_dir.join("accounts.secret");
        match std::fs::read_to_string(&path) {
            Ok(secret) if secret.trim().len() >= 32 => return Ok(Signer::new(secret.trim().as_bytes())),
            Ok(_) => return Err(format!("{} holds less than 32 characters", path.display())),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot read {}: {e}", path.display()));
            }
            Err(_) => {}
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers for a secret: {e}"))?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        write_private(&path, &secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "accounts: generated the token signing secret");
        Ok(Signer::new(secret.as_bytes()))
    }

    /// A token for a user, valid for `ttl`; returns it with its expiry (Unix seconds).
    pub fn issue(&self, user_id: i64, name: &str, admin: bool, ttl: Duration) -> Result<(String, u64), String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let exp = now + ttl.as_secs();
        let claims = Claims { sub: user_id.to_string(), name: name.into(), admin, iat: now, exp, aud: AUDIENCE.into() };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| e.to_string())?;
        Ok((token, exp))
    }

    /// The claims of a valid, unexpired token of ours; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|d| d.claims)
    }
}

/// Creates `path` readable and writable by its owner only, then writes `text`.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire_and_only_with_our_secret() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let (token, exp) = signer.issue(7, "ana", false, Duration::from_secs(3600)).expect("issued");
        let claims = signer.verify(&token).expect("valid");
        assert_eq!((claims.user_id(), claims.name.as_str(), claims.admin, claims.exp), (Some(7), "ana", false, exp));
        assert!(Signer::new(b"another secret, just as long as it").verify(&token).is_none());
        assert!(signer.verify(&format!("{token}x")).is_none());
        assert!(signer.verify("not a token").is_none());
        let (old, _) = signer.issue(7, "ana", false, Duration::ZERO).expect("issued");
        let mut claims = signer.verify(&old).expect("within the leeway");
        claims.exp -= 120;
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &signer.encoding).expect("enc");
        assert!(signer.verify(&expired).is_none());
    }

    #[test]
    fn the_secret_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Signer::load(dir.path()).expect("made");
        let (token, _) = first.issue(1, "a", true, Duration::from_secs(60)).expect("issued");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("accounts.secret")).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = Signer::load(dir.path()).expect("read back");
        assert!(again.verify(&token).is_some(), "a restart keeps logins valid");
    }
}
