//! `auth = "accounts"`: who may publish and read a camera's route, decided from memory.
//!
//! - Publishing a camera's route takes the camera's stream key (RTMP's stream key or `?key=`, WHIP's Bearer
//!   token, an RTSP password) or a login of its owner or an admin.
//! - Reading and playing it back take a login (`Authorization: Bearer`, `?token=`, or a password) of its owner or
//!   an admin; a stream key does not read.
//! - Other routes with `auth = "accounts"`: any login reads, an admin's publishes. The API (`api_auth =
//!   "accounts"`): admins only.

use super::{Accounts, tokens::Claims};
use crate::auth::{AccountsDecider, Action, Allow, Credentials, Decision, Request, constant_time_eq};

const REALM: &str = "sluice";

fn allow(identity: String) -> Decision {
    Decision::Allow(Allow { identity, cache_ttl_ms: 0 })
}

impl AccountsDecider for Accounts {
    fn decide(&self, request: &Request) -> Decision {
        // What was presented: a login token, or a secret that may be a stream key.
        let secret = match &request.credentials {
            Credentials::None => return Decision::Challenge(REALM.into()),
            Credentials::Bearer(t) | Credentials::StreamKey(t) => t.as_str(),
            Credentials::Basic(b) => b.password.as_str(),
        };
        let login = self.verify(secret);
        let user = |c: &Claims| format!("{}{}", c.name, if c.admin { " (admin)" } else { "" });
        if request.action == Action::Api {
            return match login {
                Some(c) if c.admin => allow(user(&c)),
                Some(_) => Decision::Deny("the API is for admins".into()),
                None => Decision::Deny("not a valid login".into()),
            };
        }
        // One answer for a camera that is not there and one that is someone else's: neither tells which.
        let refused = || Decision::Deny("not your camera, or not a valid login or stream key".into());
        let Some(camera) = self.camera_of(&request.route) else {
            // Under the cameras' prefix, only cameras (a name like `cameras/abc` is no one's).
            if self.under_camera_prefix(&request.route) {
                return refused();
            }
            // Other routes with `auth = "accounts"`: any login reads, admins publish and play back (recordings of
            // routes no longer configured land here too).
            return match (login, request.action) {
                (Some(c), Action::Read) => allow(user(&c)),
                (Some(c), _) if c.admin => allow(user(&c)),
                _ => refused(),
            };
        };
        let Some(access) = self.access(camera) else { return refused() };
        let owns = |c: &Claims| c.admin || c.user_id() == Some(access.owner);
        match (login, request.action) {
            (Some(c), _) if owns(&c) => allow(user(&c)),
            (None, Action::Publish) if constant_time_eq(secret.as_bytes(), access.key.as_bytes()) => {
                allow(format!("camera {camera}"))
            }
            _ => refused(),
        }
    }
}
