//! Pull over RTMP, for networks where UDP does not pass: rml_rtmp's client session in play mode (through
//! `sluice-client`), FLV tags parsed by `sluice_media::flv` as the router parses its publishers'. H.264 keeps its
//! composition times (B-frames record correctly); AAC is recorded as AAC.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::sessions::ClientSessionEvent;
use sluice_client::rtmp::{Client, Mode, RtmpTarget};
use sluice_media::flv::{AudioTag, VideoTag, parse_audio, parse_video};
use sluice_media::h264::{NAL_PPS, NAL_SPS, avcc_nals, nal_type};
use tokio::io::AsyncReadExt;

use super::record::{Media, aac_track};
use super::{Pulling, sleep_until_opt};

/// A server that sends nothing for this long is treated as gone.
const SILENCE: Duration = Duration::from_secs(10);

/// RTMP timestamps are 32-bit milliseconds: a route up for 49.7 days wraps. Unwrapped to 64 bits, so the
/// recording's times keep rising.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<u32>,
    high: i64,
}

impl Unwrap {
    fn ms(&mut self, raw: u32) -> i64 {
        if let Some(last) = self.last {
            if raw < last && last - raw > 1 << 31 {
                self.high += 1 << 32;
            } else if raw > last && raw - last > 1 << 31 {
                // A late sample from just before a wrap.
                return self.high - (1 << 32) + i64::from(raw);
            }
        }
        self.last = Some(raw);
        self.high + i64::from(raw)
    }
}

/// What the stream has said so far that later tags need.
#[derive(Debug, Default)]
struct Stream {
    clock: Unwrap,
    /// SPS and PPS from the last AVC sequence header, put in front of each keyframe for the recorder.
    parameter_sets: Option<(Bytes, Bytes)>,
    /// The AAC sample rate (the audio clock).
    aac_rate: Option<u32>,
    /// Tags that could not be used (another codec, garbage), said once.
    warned: bool,
}

/// One RTMP session, until it fails, the program stops, or the duration is up (`Ok`).
pub async fn session(p: &mut Pulling<'_>) -> anyhow::Result<()> {
    let target = RtmpTarget::parse(&p.plan.from)?;
    let (mut client, events) = Client::connect(&target, Mode::Play).await?;
    p.connected_at = Some(Instant::now());
    tracing::info!("connected over RTMP");
    let mut stream = Stream::default();
    for event in events {
        stream.handle(event, p)?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        p.maybe_log();
        tokio::select! {
            n = tokio::time::timeout(SILENCE, client.tcp.read(&mut buf)) => {
                let n = n.map_err(|_| anyhow::anyhow!("the router sent nothing for {}s", SILENCE.as_secs()))??;
                if n == 0 {
                    anyhow::bail!("the router closed the RTMP connection");
                }
                for event in client.input(&buf[..n]).await? {
                    stream.handle(event, p)?;
                }
            }
            _ = p.stop.changed() => return Ok(()),
            _ = sleep_until_opt(p.until) => return Ok(()),
        }
    }
}

impl Stream {
    fn handle(&mut self, event: ClientSessionEvent, p: &mut Pulling<'_>) -> anyhow::Result<()> {
        match event {
            ClientSessionEvent::StreamMetadataReceived { metadata } if metadata.audio_codec_id.is_some() => {
                p.recorder.expect_audio();
            }
            ClientSessionEvent::VideoDataReceived { timestamp, data } => match parse_video(&data) {
                Ok(VideoTag::AvcSequenceHeader { sps, pps }) => self.parameter_sets = Some((sps, pps)),
                Ok(VideoTag::AvcNalus { keyframe, composition_time_ms, data }) => {
                    let mut nals: Vec<Bytes> = Vec::new();
                    if keyframe
                        && let Some((sps, pps)) = &self.parameter_sets
                        && !avcc_nals(data).any(|n| matches!(nal_type(n), NAL_SPS | NAL_PPS))
                    {
                        nals.extend([sps.clone(), pps.clone()]);
                    }
                    nals.extend(avcc_nals(data).map(Bytes::copy_from_slice));
                    let dts = self.clock.ms(timestamp.value) * 90;
                    let pts = dts + i64::from(composition_time_ms) * 90;
                    p.recorder.write(Media::Video { nals, pts, dts }, Instant::now())?;
                }
                Ok(VideoTag::Ignored) => {}
                Err(e) => self.warn_once(&e.to_string()),
            },
            ClientSessionEvent::AudioDataReceived { timestamp, data } => match parse_audio(&data) {
                Ok(AudioTag::AacConfig { config, sample_rate, channels }) => {
                    self.aac_rate = Some(sample_rate);
                    p.recorder.set_audio(aac_track(&config, sample_rate, channels))?;
                }
                Ok(AudioTag::AacRaw(raw)) => {
                    if let Some(rate) = self.aac_rate {
                        let pts = self.clock.ms(timestamp.value) * i64::from(rate) / 1000;
                        p.recorder.write(Media::Audio { packet: Bytes::copy_from_slice(raw), pts }, Instant::now())?;
                    }
                }
                Err(e) => self.warn_once(&e.to_string()),
            },
            _ => {}
        }
        Ok(())
    }

    fn warn_once(&mut self, why: &str) {
        if !self.warned {
            self.warned = true;
            tracing::warn!("skipping what cannot be recorded: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_rising_across_the_32_bit_wrap() {
        let mut u = Unwrap::default();
        assert_eq!(u.ms(u32::MAX - 10), i64::from(u32::MAX) - 10);
        assert_eq!(u.ms(5), (1i64 << 32) + 5);
        assert_eq!(u.ms(u32::MAX - 20), i64::from(u32::MAX) - 20, "a late one from before the wrap");
        assert_eq!(u.ms(40), (1i64 << 32) + 40);
    }
}
