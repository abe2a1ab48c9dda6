//! Push over WHIP: a send-only H.264 peer. Access units go to str0m whole (Annex B), which packetizes them
//! (RFC 6184) and answers the router's NACKs from its send buffer; the router's keyframe requests (PLI, FIR) are
//! passed to the source.

use std::time::Instant;

use anyhow::Context;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt};
use str0m::{Event, IceConnectionState};
use url::Url;

use super::{Ended, KeyframeGate, Link};
use crate::source::AccessUnit;
use crate::webrtc::{CONNECT_TIMEOUT, Peer};

pub async fn push(url: &Url, token: Option<&str>, link: &mut Link<'_>) -> anyhow::Result<Ended> {
    let (mut peer, mids) =
        Peer::connect(url, token, &[(MediaKind::Video, Direction::SendOnly)], |c| c.clear_codecs().enable_h264(true))
            .await?;
    let mid = mids[0];
    let result = stream(&mut peer, mid, link).await;
    peer.close().await;
    result
}

async fn stream(peer: &mut Peer, mid: Mid, link: &mut Link<'_>) -> anyhow::Result<Ended> {
    let connect_by = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut connected = false;
    let mut gate = KeyframeGate::default();
    // RTP time runs from the first frame sent on this connection.
    let mut first: Option<Instant> = None;
    loop {
        for event in peer.drain()? {
            match event {
                Event::Connected => {
                    connected = true;
                    link.connected_at = Some(Instant::now());
                    link.capture.request_keyframe();
                    tracing::info!("connected over WHIP");
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    anyhow::bail!("the router stopped answering (ICE disconnected)")
                }
                Event::KeyframeRequest(_) => {
                    link.stats.keyframe_requests += 1;
                    link.capture.request_keyframe();
                }
                Event::MediaEgressStats(s) => link.stats.rtt = s.rtt,
                _ => {}
            }
        }
        link.stats.maybe_log();
        if connected {
            peer.check_alive()?;
        }
        tokio::select! {
            r = peer.wait_input() => r?,
            unit = link.capture.units.recv() => {
                let Some(unit) = unit else { return Ok(Ended::SourceEnded) };
                if connected && gate.pass(&unit, link.capture) {
                    let start = *first.get_or_insert(unit.captured);
                    write(peer, mid, start, &unit)?;
                    link.stats.sent(&unit);
                }
            }
            _ = link.stop.changed() => return Ok(Ended::Stopped),
            _ = tokio::time::sleep_until(connect_by), if !connected => {
                anyhow::bail!("no WebRTC connection within {}s (UDP blocked? try rtmp://)", CONNECT_TIMEOUT.as_secs())
            }
        }
    }
}

fn write(peer: &mut Peer, mid: Mid, start: Instant, unit: &AccessUnit) -> anyhow::Result<()> {
    let writer = peer.rtc.writer(mid).context("the video track is gone")?;
    let pt: Pt = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::H264)
        .map(|p| p.pt())
        .context("the router accepted no H.264")?;
    let ticks = unit.captured.saturating_duration_since(start).as_micros() as u64 * 9 / 100;
    let mut annex_b = Vec::with_capacity(unit.len() + 4 * unit.nals.len());
    for nal in &unit.nals {
        annex_b.extend_from_slice(&[0, 0, 0, 1]);
        annex_b.extend_from_slice(nal);
    }
    writer.write(pt, unit.captured, MediaTime::from_90khz(ticks), annex_b).context("sending a frame")?;
    Ok(())
}
