//! The pusher: one capture for the life of the program, and a connection to the router that is made again,
//! with exponential backoff and jitter, whenever it fails; forever, since nobody is there to restart a Pi in a
//! field. [`whip`] is the primary path, [`rtmp`] the fallback for routers or networks where UDP does not pass.

pub mod rtmp;
pub mod whip;

use std::time::{Duration, Instant};

use sluice_client::backoff::Backoff;
use tokio::sync::watch;

use crate::config::{PushPlan, Target};
use crate::source::{self, AccessUnit, Capture};
use crate::stats::Stats;

/// How a connection ended without failing.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The source has no more frames (end of standard input).
    SourceEnded,
    /// The program is stopping.
    Stopped,
}

/// What a connection attempt shares with the loop around it.
#[derive(Debug)]
pub struct Link<'a> {
    pub capture: &'a mut Capture,
    pub stats: &'a mut Stats,
    pub stop: &'a mut watch::Receiver<bool>,
    /// When media started flowing, so a connection that worked a while resets the backoff.
    pub connected_at: Option<Instant>,
}

pub async fn run(plan: PushPlan, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut capture = source::start(&plan.source, plan.video)?;
    tracing::info!(source = %capture.describe, to = %plan.target.describe(), "pushing");
    let mut stats = Stats::new(plan.stats_every, capture.control.clone());
    let mut backoff = Backoff::default();
    loop {
        let mut link = Link { capture: &mut capture, stats: &mut stats, stop: &mut stop, connected_at: None };
        let result = match &plan.target {
            Target::Whip { url, token } => whip::push(url, token.as_deref(), &mut link).await,
            Target::Rtmp { url } => rtmp::push(url, plan.video, &mut link).await,
        };
        let healthy_for = link.connected_at.map(|t| t.elapsed());
        match result {
            Ok(Ended::SourceEnded) => {
                capture.ended()?;
                tracing::info!("the source ended; stopping");
                return Ok(());
            }
            Ok(Ended::Stopped) => return Ok(()),
            Err(e) => {
                let wait = backoff.failed(healthy_for);
                stats.reconnects += 1;
                tracing::warn!(
                    attempt = backoff.failures,
                    "push failed: {e:#}; trying again in {:.1}s",
                    wait.as_secs_f64()
                );
                if let Some(ended) = idle(&mut capture, &mut stop, wait).await {
                    if ended == Ended::SourceEnded {
                        capture.ended()?;
                    }
                    tracing::info!(?ended, "stopping");
                    return Ok(());
                }
            }
        }
    }
}

/// Waits out a backoff while throwing away what the source captures (it would be stale when the link is back).
async fn idle(capture: &mut Capture, stop: &mut watch::Receiver<bool>, wait: Duration) -> Option<Ended> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return None,
            unit = capture.units.recv() => if unit.is_none() { return Some(Ended::SourceEnded) },
            _ = stop.changed() => return Some(Ended::Stopped),
        }
    }
}

/// Gates a new connection's first frames: nothing is sent before a keyframe (a decoder cannot start elsewhere),
/// which is asked for as the connection comes up.
#[derive(Debug, Default)]
pub struct KeyframeGate {
    open: bool,
}

impl KeyframeGate {
    /// Whether `unit` may be sent.
    pub fn pass(&mut self, unit: &AccessUnit, capture: &Capture) -> bool {
        if !self.open && unit.keyframe {
            self.open = true;
        }
        if !self.open {
            capture.request_keyframe();
        }
        self.open
    }
}
