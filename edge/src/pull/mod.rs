//! The puller: reads a route over WHEP and records it locally ([`record`]), reconnecting with backoff like the
//! pusher. A reconnect continues the same segment when the parameter sets did not change (the segmenter places
//! samples after a gap at their time).

pub mod record;

use std::time::Instant;

use sluice_client::backoff::Backoff;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::{Event, IceConnectionState};
use tokio::sync::watch;

use crate::config::PullPlan;
use crate::webrtc::{CONNECT_TIMEOUT, Peer};
use record::{Media, Recorder};

pub async fn run(plan: PullPlan, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut recorder = Recorder::new(&plan.record, plan.quota, plan.segment_duration, true)?;
    tracing::info!(from = %plan.from, dir = %plan.record.display(), quota = plan.quota, "pulling");
    let until = plan.duration.map(|d| tokio::time::Instant::now() + d);
    let mut backoff = Backoff::default();
    let mut last_log = Instant::now();
    let result = loop {
        let mut connected_at = None;
        let session = session(&plan, &mut recorder, &mut stop, until, &mut connected_at, &mut last_log).await;
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

async fn sleep_until_opt(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One WHEP session, until it fails, the program stops, or the duration is up (`Ok`).
async fn session(
    plan: &PullPlan,
    recorder: &mut Recorder,
    stop: &mut watch::Receiver<bool>,
    until: Option<tokio::time::Instant>,
    connected_at: &mut Option<Instant>,
    last_log: &mut Instant,
) -> anyhow::Result<()> {
    let media = [(MediaKind::Video, Direction::RecvOnly), (MediaKind::Audio, Direction::RecvOnly)];
    let (mut peer, mids) = Peer::connect(&plan.from, plan.token.as_deref(), &media, |c| {
        c.clear_codecs().enable_h264(true).enable_opus(true, false)
    })
    .await?;
    let connect_by = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let result = async {
        loop {
            for event in peer.drain()? {
                if let Event::MediaData(d) = &event {
                    tracing::trace!(mid = %d.mid, codec = ?d.params.spec().codec, bytes = d.data.len(), keyframe = d.is_keyframe(), "media");
                }
                match event {
                    Event::Connected => {
                        *connected_at = Some(Instant::now());
                        tracing::info!("connected over WHEP");
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        anyhow::bail!("the router stopped answering (ICE disconnected)")
                    }
                    Event::MediaData(d) if d.mid == mids[0] && d.params.spec().codec == Codec::H264 => {
                        let nals = sluice_media::h264::split_annex_b(&d.data)
                            .into_iter()
                            .map(bytes::Bytes::copy_from_slice)
                            .collect();
                        let pts_90k = d.time.rebase(str0m::media::Frequency::NINETY_KHZ).numer() as i64;
                        if !recorder.write(Media::Video { nals, pts_90k })? {
                            // Joined after a loss, or the first keyframe did not make it: ask for the next now.
                            peer.request_keyframe(mids[0]);
                        }
                    }
                    Event::MediaData(d) if d.mid == mids[1] && d.params.spec().codec == Codec::Opus => {
                        let pts_48k = d.time.rebase(str0m::media::Frequency::FORTY_EIGHT_KHZ).numer() as i64;
                        recorder.write(Media::Audio { packet: bytes::Bytes::copy_from_slice(&d.data), pts_48k })?;
                    }
                    _ => {}
                }
            }
            if connected_at.is_some() {
                peer.check_alive()?;
            }
            if last_log.elapsed() >= plan.stats_every {
                *last_log = Instant::now();
                tracing::info!(video_frames = recorder.video_frames, audio_packets = recorder.audio_packets, "stats");
            }
            tokio::select! {
                r = peer.wait_input() => r?,
                _ = stop.changed() => return Ok(()),
                _ = sleep_until_opt(until) => return Ok(()),
                _ = tokio::time::sleep_until(connect_by), if connected_at.is_none() => {
                    anyhow::bail!("no WebRTC connection within {}s", CONNECT_TIMEOUT.as_secs())
                }
            }
        }
    }
    .await;
    peer.close().await;
    result
}
