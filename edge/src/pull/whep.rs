//! Pull over WHEP: a receive-only peer for video (H.264) and audio (Opus); str0m depacketizes, the recorder
//! writes. Until the first keyframe (with its SPS/PPS) arrives, the router is asked for one.

use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind};
use str0m::{Event, IceConnectionState};

use super::record::{self, Media};
use super::{Pulling, sleep_until_opt};
use crate::webrtc::{CONNECT_TIMEOUT, Peer};

/// One WHEP session, until it fails, the program stops, or the duration is up (`Ok`).
pub async fn session(p: &mut Pulling<'_>) -> anyhow::Result<()> {
    let media = [(MediaKind::Video, Direction::RecvOnly), (MediaKind::Audio, Direction::RecvOnly)];
    let (mut peer, mids) = Peer::connect(&p.plan.from, p.plan.token.as_deref(), &media, |c| {
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
                        p.connected_at = Some(Instant::now());
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
                        let pts_90k = d.time.rebase(Frequency::NINETY_KHZ).numer() as i64;
                        if !p.recorder.write(Media::Video { nals, pts: pts_90k, dts: pts_90k }, d.network_time)? {
                            // Joined after a loss, or the first keyframe did not make it: ask for the next now.
                            peer.request_keyframe(mids[0]);
                        }
                    }
                    Event::MediaData(d) if d.mid == mids[1] && d.params.spec().codec == Codec::Opus => {
                        let pts_48k = d.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer() as i64;
                        p.recorder.set_audio(record::opus_track())?;
                        let packet = bytes::Bytes::copy_from_slice(&d.data);
                        p.recorder.write(Media::Audio { packet, pts: pts_48k }, d.network_time)?;
                    }
                    _ => {}
                }
            }
            if p.connected_at.is_some() {
                peer.check_alive()?;
            }
            p.maybe_log();
            tokio::select! {
                r = peer.wait_input() => r?,
                _ = p.stop.changed() => return Ok(()),
                _ = sleep_until_opt(p.until) => return Ok(()),
                _ = tokio::time::sleep_until(connect_by), if p.connected_at.is_none() => {
                    anyhow::bail!("no WebRTC connection within {}s", CONNECT_TIMEOUT.as_secs())
                }
            }
        }
    }
    .await;
    peer.close().await;
    result
}
