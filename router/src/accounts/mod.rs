//! People, their cameras and the sessions cameras stream (`[accounts]` in routes.toml), in the router's database.
//!
//! Users register and log in (argon2id password hashes, JWT logins from [`tokens`]); each user keeps cameras,
//! and each camera is a route made from the `accounts.cameras` template (camera 7 is route `cameras/7`) that
//! publishes with the camera's stream key. Access to those routes goes through the one admission path like any
//! other: their `auth = "accounts"` is decided by [`decide`] from an in-memory copy of every camera's owner and
//! key, so no request waits on the database. [`sessions`] writes a row per publish as camera routes go live and
//! stop. Writes go through the store's one thread; the copy is updated after the write commits.

pub mod decide;
pub mod schema;
pub mod sessions;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sluice_store::{Store, StoreError};

use crate::config::model::{AccountsConfig, RouteName};
use crate::runtime::Runtime;
use tokens::{Claims, Signer};

/// A user as the API shows them (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub admin: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A camera as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Camera {
    pub id: i64,
    pub owner: i64,
    pub name: String,
    pub stream_key: String,
    pub resolution: Option<String>,
    pub created_at: i64,
}

/// One publish of a camera: `active` while it streams, then `ended` (the publisher stopped) or `error` (it was
/// cut off, or the router stopped under it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: i64,
    pub camera_id: i64,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub status: String,
}

/// Why an accounts call failed; the API maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// 400: `field` is missing or malformed.
    #[error("`{field}`: {message}")]
    BadInput { field: &'static str, message: String },
    /// 409: another account has this username or email.
    #[error("an account with this {0} exists already")]
    Taken(&'static str),
    /// 401: wrong username or password (which one is not said).
    #[error("wrong username or password")]
    WrongLogin,
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such camera, or not one of the caller's.
    #[error("there is no camera {0}")]
    NoCamera(i64),
    #[error("the accounts database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<rusqlite::Error> for AccountsError {
    fn from(e: rusqlite::Error) -> Self {
        AccountsError::Store(StoreError::Database(e))
    }
}

/// Who may use a camera route, as the decider needs it.
#[derive(Debug, Clone)]
struct CameraAccess {
    owner: i64,
    key: String,
}

/// The accounts service: cheap to clone.
#[derive(Debug, Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    signer: Signer,
    runtime: Runtime,
    /// Every camera's owner and key, by camera id: what the decider reads.
    cameras: RwLock<HashMap<i64, CameraAccess>>,
    /// Verified when a login names no user, so that a wrong username costs what a wrong password does.
    dummy_hash: String,
    /// Password hashes (19 MiB and tens of milliseconds each) computed at once, at most: a flood of logins or
    /// registrations queues instead of taking every blocking thread and gigabytes.
    hashing: tokio::sync::Semaphore,
}

/// See `Inner::hashing`.
const HASHES_AT_ONCE: usize = 2;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Accounts {
    /// Opens the accounts in `store` (migrating its tables), loads the signing secret and the cameras, and
    /// closes the sessions a previous run left open. Blocking: call it before serving.
    pub fn open(store: Store, runtime: Runtime) -> Result<Accounts, AccountsError> {
        let data_dir = runtime.directory().table.server.data_dir.clone();
        let signer = Signer::load(&data_dir).map_err(AccountsError::Internal)?;
        store.call_blocking(|c| schema::migrate(c).map(|_| ()))?;
        let interrupted = store.call_blocking(|c| {
            c.execute("UPDATE camera_sessions SET status = 'error', end_time = ?1 WHERE status = 'active'", [now_ms()])
        })?;
        if interrupted > 0 {
            tracing::warn!(sessions = interrupted, "accounts: sessions left open by the last run closed as `error`");
        }
        let cameras = store.call_blocking(|c| {
            let mut q = c.prepare("SELECT id, owner, stream_key FROM cameras")?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, CameraAccess { owner: r.get(1)?, key: r.get(2)? })))?;
            rows.collect::<rusqlite::Result<HashMap<i64, CameraAccess>>>()
        })?;
        let dummy_hash =
            crate::credentials::hash_password("not a password anyone has").map_err(AccountsError::Internal)?;
        let accounts = Accounts {
            inner: Arc::new(Inner {
                store,
                signer,
                runtime,
                cameras: RwLock::new(cameras),
                dummy_hash,
                hashing: tokio::sync::Semaphore::new(HASHES_AT_ONCE),
            }),
        };
        Ok(accounts)
    }

    /// The settings in force (`[accounts]` of the current file; the defaults if a reload removed it).
    pub fn config(&self) -> AccountsConfig {
        let dir = self.inner.runtime.directory();
        dir.table.accounts.clone().unwrap_or(AccountsConfig {
            registration: crate::config::model::Registration::Admin,
            token_ttl: crate::config::model::DEFAULT_TOKEN_TTL,
            cameras: None,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The claims of a login token, if it is one of ours and valid.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.inner.signer.verify(token)
    }

    /// Creates an account. `by`: the caller's login, if any. The first account is the admin; after it, with
    /// `registration = "admin"`, only an admin creates accounts.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
        by: Option<&Claims>,
    ) -> Result<User, AccountsError> {
        let username = check_username(username)?;
        let email = check_email(email)?;
        check_password(password)?;
        let admin_only = self.config().registration == crate::config::model::Registration::Admin;
        let by_admin = by.is_some_and(|c| c.admin);
        // Refused before the costly hash (checked again in the insert's transaction, against a race).
        if admin_only && !by_admin {
            let users: i64 =
                self.inner.store.call(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))).await?;
            if users > 0 {
                return Err(AccountsError::Forbidden(
                    "registration is closed (registration = \"admin\"): an admin creates accounts".into(),
                ));
            }
        }
        let hash = {
            let password = password.to_string();
            let _permit = self.inner.hashing.acquire().await.map_err(|e| AccountsError::Internal(e.to_string()))?;
            tokio::task::spawn_blocking(move || crate::credentials::hash_password(&password))
                .await
                .map_err(|e| AccountsError::Internal(e.to_string()))?
                .map_err(AccountsError::Internal)?
        };
        let created = now_ms();
        let user = self
            .inner
            .store
            .call(move |c| {
                let tx = c.transaction()?;
                let users: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                if users > 0 && admin_only && !by_admin {
                    return Ok(Err(AccountsError::Forbidden(
                        "registration is closed (registration = \"admin\"): an admin creates accounts".into(),
                    )));
                }
                let taken = |field: &str, value: &str| -> rusqlite::Result<bool> {
                    tx.query_row(&format!("SELECT 1 FROM users WHERE {field} = ?1"), [value], |_| Ok(()))
                        .optional()
                        .map(|r| r.is_some())
                };
                if taken("username", &username)? {
                    return Ok(Err(AccountsError::Taken("username")));
                }
                if taken("email", &email)? {
                    return Ok(Err(AccountsError::Taken("email")));
                }
                let admin = users == 0;
                tx.execute(
                    "INSERT INTO users (username, email, password_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![username, email, hash, admin, created],
                )?;
                let id = tx.last_insert_rowid();
                tx.commit()?;
                Ok(Ok(User { id, username, email, admin, created_at: created }))
            })
            .await??;
        tracing::info!(user = %user.username, admin = user.admin, "accounts: account created");
        Ok(user)
    }

    /// Checks a username and password; a token for the user on success.
    pub async fn login(&self, username: &str, password: &str) -> Result<(String, u64, User), AccountsError> {
        let name = username.to_string();
        let found = self
            .inner
            .store
            .call(move |c| {
                c.query_row(
                    "SELECT id, username, email, admin, created_at, password_hash FROM users WHERE username = ?1",
                    [name],
                    |r| {
                        let user = User {
                            id: r.get(0)?,
                            username: r.get(1)?,
                            email: r.get(2)?,
                            admin: r.get(3)?,
                            created_at: r.get(4)?,
                        };
                        Ok((user, r.get::<_, String>(5)?))
                    },
                )
                .optional()
            })
            .await?;
        let hash = found.as_ref().map_or_else(|| self.inner.dummy_hash.clone(), |(_, h)| h.clone());
        let password = password.to_string();
        let _permit = self.inner.hashing.acquire().await.map_err(|e| AccountsError::Internal(e.to_string()))?;
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        let Some((user, _)) = found.filter(|_| matches) else { return Err(AccountsError::WrongLogin) };
        let (token, exp) = self
            .inner
            .signer
            .issue(user.id, &user.username, user.admin, self.config().token_ttl)
            .map_err(AccountsError::Internal)?;
        Ok((token, exp, user))
    }

    pub async fn user(&self, id: i64) -> Result<Option<User>, AccountsError> {
        Ok(self
            .inner
            .store
            .call(move |c| {
                c.query_row("SELECT id, username, email, admin, created_at FROM users WHERE id = ?1", [id], |r| {
                    Ok(User {
                        id: r.get(0)?,
                        username: r.get(1)?,
                        email: r.get(2)?,
                        admin: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })
                .optional()
            })
            .await?)
    }

    /// The cameras `who` may see: his own, or every camera for an admin.
    pub async fn cameras(&self, who: &Claims) -> Result<Vec<Camera>, AccountsError> {
        let (owner, admin) = (who.user_id().unwrap_or(-1), who.admin);
        Ok(self
            .inner
            .store
            .call(move |c| {
                let mut q = c.prepare(
                    "SELECT id, owner, name, stream_key, resolution, created_at FROM cameras
                     WHERE owner = ?1 OR ?2 ORDER BY id",
                )?;
                let rows = q.query_map(params![owner, admin], camera_row)?;
                rows.collect()
            })
            .await?)
    }

    /// Camera `id` if `who` may use it (his own, or any for an admin); [`AccountsError::NoCamera`] otherwise, so
    /// that others' cameras cannot be told from missing ones.
    pub async fn camera(&self, who: &Claims, id: i64) -> Result<Camera, AccountsError> {
        let camera = self
            .inner
            .store
            .call(move |c| {
                c.query_row(
                    "SELECT id, owner, name, stream_key, resolution, created_at FROM cameras WHERE id = ?1",
                    [id],
                    camera_row,
                )
                .optional()
            })
            .await?;
        camera.filter(|c| who.admin || Some(c.owner) == who.user_id()).ok_or(AccountsError::NoCamera(id))
    }

    pub async fn add_camera(
        &self,
        who: &Claims,
        name: &str,
        resolution: Option<&str>,
    ) -> Result<Camera, AccountsError> {
        let owner = who.user_id().ok_or_else(|| AccountsError::Forbidden("the login names no user".into()))?;
        let name = check_camera_name(name)?;
        let resolution = resolution.map(check_resolution).transpose()?;
        let key = new_stream_key()?;
        let created = now_ms();
        let camera = self
            .inner
            .store
            .call(move |c| {
                c.execute(
                    "INSERT INTO cameras (owner, name, stream_key, resolution, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![owner, name, key, resolution, created],
                )?;
                Ok(Camera { id: c.last_insert_rowid(), owner, name, stream_key: key, resolution, created_at: created })
            })
            .await?;
        self.remember(&camera);
        Ok(camera)
    }

    /// Renames a camera or sets its resolution (`None` leaves a field as it is).
    pub async fn update_camera(
        &self,
        who: &Claims,
        id: i64,
        name: Option<&str>,
        resolution: Option<&str>,
    ) -> Result<Camera, AccountsError> {
        let mut camera = self.camera(who, id).await?;
        if let Some(name) = name {
            camera.name = check_camera_name(name)?;
        }
        if let Some(resolution) = resolution {
            camera.resolution = Some(check_resolution(resolution)?);
        }
        let (name, resolution) = (camera.name.clone(), camera.resolution.clone());
        self.inner
            .store
            .call(move |c| {
                c.execute("UPDATE cameras SET name = ?1, resolution = ?2 WHERE id = ?3", params![name, resolution, id])
            })
            .await?;
        Ok(camera)
    }

    /// A new stream key: the old one stops working, and a publisher streaming with it now is cut off.
    pub async fn new_key(&self, who: &Claims, id: i64) -> Result<Camera, AccountsError> {
        let mut camera = self.camera(who, id).await?;
        camera.stream_key = new_stream_key()?;
        let key = camera.stream_key.clone();
        self.inner
            .store
            .call(move |c| c.execute("UPDATE cameras SET stream_key = ?1 WHERE id = ?2", params![key, id]))
            .await?;
        self.remember(&camera);
        // Whoever streams with the old key (a key that leaked, a device given away) is cut off now.
        self.end_route(id).await;
        Ok(camera)
    }

    pub async fn delete_camera(&self, who: &Claims, id: i64) -> Result<(), AccountsError> {
        self.camera(who, id).await?;
        self.inner.store.call(move |c| c.execute("DELETE FROM cameras WHERE id = ?1", [id])).await?;
        self.inner.cameras.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.end_route(id).await;
        Ok(())
    }

    pub async fn sessions(&self, who: &Claims, id: i64) -> Result<Vec<Session>, AccountsError> {
        self.camera(who, id).await?;
        Ok(self
            .inner
            .store
            .call(move |c| {
                let mut q = c.prepare(
                    "SELECT id, camera_id, start_time, end_time, status FROM camera_sessions
                     WHERE camera_id = ?1 ORDER BY start_time DESC LIMIT 1000",
                )?;
                let rows = q.query_map([id], |r| {
                    Ok(Session {
                        id: r.get(0)?,
                        camera_id: r.get(1)?,
                        start_time: r.get(2)?,
                        end_time: r.get(3)?,
                        status: r.get(4)?,
                    })
                })?;
                rows.collect()
            })
            .await?)
    }

    /// The route of camera `id`, under the `accounts.cameras` template; `None` without one.
    pub fn route_of(&self, id: i64) -> Option<RouteName> {
        let template = self.config().cameras?;
        RouteName::parse(&format!("{}/{id}", template.template_prefix()?)).ok()
    }

    /// The camera a route belongs to (`cameras/7` → 7).
    pub fn camera_of(&self, route: &str) -> Option<i64> {
        let template = self.config().cameras?;
        let id = route.strip_prefix(template.template_prefix()?)?.strip_prefix('/')?;
        if id.starts_with('0') || id.starts_with('+') {
            return None;
        }
        id.parse().ok()
    }

    /// Whether `route` is under the camera template's prefix (`cameras/...`), a camera's or not.
    pub fn under_camera_prefix(&self, route: &str) -> bool {
        let prefix = self.config().cameras.and_then(|t| t.template_prefix().map(str::to_string));
        prefix.is_some_and(|p| route.strip_prefix(&p).is_some_and(|rest| rest.starts_with('/')))
    }

    /// Ends camera `id`'s route if it runs: its publisher and viewers are cut off.
    async fn end_route(&self, id: i64) {
        if let Some(route) = self.route_of(id)
            && self.inner.runtime.end_made_route(&route).await
        {
            tracing::info!(camera = id, route = %route, "accounts: camera route ended (key renewed or camera deleted)");
        }
    }

    fn remember(&self, camera: &Camera) {
        let access = CameraAccess { owner: camera.owner, key: camera.stream_key.clone() };
        self.inner.cameras.write().unwrap_or_else(|p| p.into_inner()).insert(camera.id, access);
    }

    fn access(&self, camera: i64) -> Option<CameraAccess> {
        self.inner.cameras.read().unwrap_or_else(|p| p.into_inner()).get(&camera).cloned()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
}

fn camera_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Camera> {
    Ok(Camera {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        stream_key: r.get(3)?,
        resolution: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// A random (version 4) UUID: a stream key nobody can guess.
fn new_stream_key() -> Result<String, AccountsError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| AccountsError::Internal(format!("no random numbers for a key: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

fn bad(field: &'static str, message: impl Into<String>) -> AccountsError {
    AccountsError::BadInput { field, message: message.into() }
}

fn check_username(s: &str) -> Result<String, AccountsError> {
    let s = s.trim();
    if !(3..=32).contains(&s.chars().count()) {
        return Err(bad("username", "3 to 32 characters"));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(bad("username", "letters, digits, '-', '_' and '.'"));
    }
    Ok(s.to_string())
}

fn check_email(s: &str) -> Result<String, AccountsError> {
    let s = s.trim();
    let valid = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid { Ok(s.to_string()) } else { Err(bad("email", "not an email address")) }
}

fn check_password(s: &str) -> Result<(), AccountsError> {
    match s.chars().count() {
        0..8 => Err(bad("password", "at least 8 characters")),
        8..=1024 => Ok(()),
        _ => Err(bad("password", "at most 1024 characters")),
    }
}

fn check_camera_name(s: &str) -> Result<String, AccountsError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
        return Err(bad("name", "1 to 100 characters, no control characters"));
    }
    Ok(s.to_string())
}

fn check_resolution(s: &str) -> Result<String, AccountsError> {
    let valid = s.split_once('x').is_some_and(|(w, h)| {
        [w, h].iter().all(|n| !n.is_empty() && n.len() <= 5 && n.chars().all(|c| c.is_ascii_digit()))
    });
    if valid { Ok(s.to_string()) } else { Err(bad("resolution", "WIDTHxHEIGHT, e.g. \"1280x720\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked_field_by_field() {
        assert!(check_username("ana").is_ok());
        assert!(matches!(check_username("a b"), Err(AccountsError::BadInput { field: "username", .. })));
        assert!(matches!(check_username("ab"), Err(AccountsError::BadInput { field: "username", .. })));
        assert!(check_email("ana@example.com").is_ok());
        for e in ["ana", "@x.y", "ana@x", "ana@.x", "a na@x.y"] {
            assert!(matches!(check_email(e), Err(AccountsError::BadInput { field: "email", .. })), "{e}");
        }
        assert!(matches!(check_password("short"), Err(AccountsError::BadInput { field: "password", .. })));
        assert!(check_resolution("1280x720").is_ok());
        assert!(check_resolution("1280*720").is_err());
        assert!(check_camera_name(" ").is_err());
    }

    #[test]
    fn stream_keys_are_version_4_uuids() {
        let k = new_stream_key().expect("key");
        assert_eq!(k.len(), 36);
        assert_eq!(&k[14..15], "4");
        assert!(matches!(&k[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(k, new_stream_key().expect("key"));
    }
}
