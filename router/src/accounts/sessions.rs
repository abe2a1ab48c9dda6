//! Camera sessions: a row per publish, written as camera routes go live and stop.
//!
//! A task follows the routes the runtime publishes; for each camera route it follows the route's state. Live opens
//! a session (`active`); leaving live closes it, `ended` when the publisher stopped its stream, `error` when the
//! route recorded a problem (a publisher cut off without ending its stream, a refused codec). A router stopped
//! under an active session closes it as `error` at its next start (see [`super::Accounts::open`]).

use std::collections::HashMap;

use rusqlite::params;

use super::{Accounts, now_ms};
use crate::config::model::RouteName;
use crate::route::{RouteHandle, RouteState};

/// Follows every camera route for as long as the router runs.
pub fn spawn(accounts: Accounts) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut directory = accounts.runtime().subscribe();
        let mut followed: HashMap<RouteName, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            let dir = directory.borrow_and_update().clone();
            followed.retain(|_, task| !task.is_finished());
            for (config, handle) in &dir.routes {
                let Some(camera) = accounts.camera_of(config.name.as_str()) else { continue };
                if followed.contains_key(&config.name) {
                    continue;
                }
                let task = tokio::spawn(follow(accounts.clone(), camera, handle.clone()));
                followed.insert(config.name.clone(), task);
            }
            if directory.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Opens and closes camera `camera`'s sessions as its route goes live and stops, until the route ends.
async fn follow(accounts: Accounts, camera: i64, route: RouteHandle) {
    let mut state = route.watch_state();
    let mut session: Option<i64> = None;
    loop {
        let live = *state.borrow_and_update() == RouteState::Live;
        match (live, session) {
            (true, None) => session = open(&accounts, camera).await,
            (false, Some(id)) => {
                let failed = route.snapshot().await.ok().and_then(|s| s.last_error).is_some();
                close(&accounts, id, if failed { "error" } else { "ended" }).await;
                session = None;
            }
            _ => {}
        }
        if state.changed().await.is_err() {
            break;
        }
    }
    // The route ended while live (removed, or the camera deleted): the publish ended with it.
    if let Some(id) = session {
        close(&accounts, id, "ended").await;
    }
}

async fn open(accounts: &Accounts, camera: i64) -> Option<i64> {
    let at = now_ms();
    let opened = accounts
        .store()
        .call(move |c| {
            // A camera deleted meanwhile has no sessions.
            let exists = c.query_row("SELECT count(*) FROM cameras WHERE id = ?1", [camera], |r| r.get::<_, i64>(0))?;
            if exists == 0 {
                return Ok(None);
            }
            c.execute(
                "INSERT INTO camera_sessions (camera_id, start_time, status) VALUES (?1, ?2, 'active')",
                params![camera, at],
            )?;
            Ok(Some(c.last_insert_rowid()))
        })
        .await;
    match opened {
        Ok(Some(id)) => {
            tracing::info!(camera, session = id, "accounts: camera streaming");
            Some(id)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(camera, error = %e, "accounts: cannot record the session");
            None
        }
    }
}

async fn close(accounts: &Accounts, id: i64, status: &'static str) {
    let at = now_ms();
    let closed = accounts
        .store()
        .call(move |c| {
            c.execute("UPDATE camera_sessions SET end_time = ?1, status = ?2 WHERE id = ?3", params![at, status, id])
        })
        .await;
    match closed {
        Ok(_) => tracing::info!(session = id, status, "accounts: camera session closed"),
        Err(e) => tracing::error!(session = id, error = %e, "accounts: cannot close the session"),
    }
}
