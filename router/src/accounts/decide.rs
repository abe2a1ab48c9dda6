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
        let Some(camera) = self.camera_of(&request.route) else {
            return match (login, request.action) {
                (Some(c), Action::Publish) if !c.admin => Decision::Deny("only admins publish here".into()),
                (Some(c), _) => allow(user(&c)),
                (None, _) => Decision::Deny("not a valid login".into()),
            };
        };
        let Some(access) = self.access(camera) else {
            return Decision::Deny(format!("there is no camera {camera}"));
        };
        let owns = |c: &Claims| c.admin || c.user_id() == Some(access.owner);
        match (login, request.action) {
            (Some(c), _) if owns(&c) => allow(user(&c)),
            (Some(_), _) => Decision::Deny(format!("camera {camera} is not yours")),
            (None, Action::Publish) if constant_time_eq(secret.as_bytes(), access.key.as_bytes()) => {
                allow(format!("camera {camera}"))
            }
            (None, Action::Publish) => Decision::Deny("wrong or missing stream key".into()),
            (None, _) => Decision::Deny("not a valid login".into()),
        }
    }
}
