//! The puller: reads a route over WHEP ([`whep`]) or RTMP ([`rtmp`]) and records it locally ([`record`]),
//! reconnecting with backoff like the pusher. A reconnect continues the same segment when the parameter sets did
//! not change (the segmenter places samples after a gap at their time).

pub mod record;
pub mod rtmp;
pub mod whep;

use std::time::Instant;

use sluice_client::backoff::Backoff;
use tokio::sync::watch;

use crate::config::PullPlan;
use record::Recorder;

/// What one session shares with the loop around it.
#[derive(Debug)]
pub struct Pulling<'a> {
    pub plan: &'a PullPlan,
    pub recorder: &'a mut Recorder,
    pub stop: &'a mut watch::Receiver<bool>,
    pub until: Option<tokio::time::Instant>,
    /// When media started flowing, so a session that worked a while resets the backoff.
    pub connected_at: Option<Instant>,
    last_log: Instant,
}

impl Pulling<'_> {
    /// The periodic stats line.
    pub fn maybe_log(&mut self) {
        if self.last_log.elapsed() >= self.plan.stats_every {
            self.last_log = Instant::now();
            tracing::info!(
                video_frames = self.recorder.video_frames,
                audio_packets = self.recorder.audio_packets,
                "stats"
            );
        }
    }
}

pub async fn run(plan: PullPlan, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut recorder = Recorder::new(&plan.record, plan.quota, plan.segment_duration)?;
    tracing::info!(from = %plan.from, dir = %plan.record.display(), quota = plan.quota, "pulling");
    let until = plan.duration.map(|d| tokio::time::Instant::now() + d);
    let mut backoff = Backoff::default();
    let mut last_log = Instant::now();
    let result = loop {
        recorder.new_session();
        let mut pulling =
            Pulling { plan: &plan, recorder: &mut recorder, stop: &mut stop, until, connected_at: None, last_log };
        let session = if plan.from.scheme() == "rtmp" {
            rtmp::session(&mut pulling).await
        } else {
            whep::session(&mut pulling).await
        };
        let connected_at = pulling.connected_at;
        last_log = pulling.last_log;
        match session {
            Ok(()) => break Ok(()),
            Err(e) => {
                let wait = backoff.failed(connected_at.map(|t: Instant| t.elapsed()));
                tracing::warn!(
                    attempt = backoff.failures,
                    "pull failed: {e:#}; trying again in {:.1}s",
                    wait.as_secs_f64()
                );
                let resume = tokio::time::Instant::now() + wait;
                tokio::select! {
                    _ = tokio::time::sleep_until(resume) => {}
                    _ = stop.changed() => break Ok(()),
                    _ = sleep_until_opt(until) => break Ok(()),
                }
            }
        }
    };
    let files = recorder.finish()?;
    tracing::info!(
        video_frames = recorder.video_frames,
        audio_packets = recorder.audio_packets,
        files = files.len(),
        "recording finished"
    );
    result
}

pub async fn sleep_until_opt(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
