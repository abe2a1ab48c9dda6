//! Conversions of a route's frames into codecs an output can carry and the source did not send. Today one: AAC
//! audio as Opus for WebRTC viewers ([`aac_opus`]). Made once per route for all the readers that need it, and only
//! while one does; every other reader (RTMP and RTSP players, recordings) keeps the original frames.

pub mod aac_opus;

use std::sync::Arc;

/// Why WebRTC viewers of a route with an AAC track get no audio from it, or `None` when they do.
pub use aac_opus::unsupported as opus_refusal;
pub use aac_opus::{AacToOpus, TranscodeError};

use crate::media::{Codec, Frame, Track};

/// A route's AAC audio as Opus: the transcoder for the route's current AAC track, made at its first frame and made
/// again when the track changes (a publisher reconnecting with other settings). A track that cannot be transcoded
/// (HE-AAC, more than two channels) is logged once and its frames skipped, as is a track whose decoder failed.
#[derive(Debug, Default)]
pub struct ToOpus {
    current: Option<AacToOpus>,
    /// The track last refused, so that a refusal is logged once, not once per frame.
    refused: Option<Arc<Track>>,
    /// Decode errors since the last logged one, so that a stream of bad frames is one line every few seconds.
    errors: u64,
    last_logged: Option<std::time::Instant>,
}

impl ToOpus {
    /// `frame` as Opus frames when it is AAC (zero or more: packets are 20 ms, AAC frames ~21-23 ms); `None` for
    /// frames of other codecs, which pass as they are.
    pub fn convert(&mut self, route: &str, frame: &Frame) -> Option<Vec<Frame>> {
        if frame.track.codec != Codec::Aac {
            return None;
        }
        if self.refused.as_ref().is_some_and(|t| Arc::ptr_eq(t, &frame.track) || **t == *frame.track) {
            return Some(Vec::new());
        }
        if !self.current.as_ref().is_some_and(|t| t.is_for(&frame.track)) {
            match AacToOpus::new(&frame.track) {
                Ok(t) => {
                    tracing::info!(route, from = %frame.track.description, to = %t.track().description,
                        "transcoding AAC to Opus for WebRTC viewers");
                    self.current = Some(t);
                }
                Err(e) => {
                    tracing::warn!(route, error = %e, "WebRTC viewers get no audio");
                    self.refused = Some(Arc::clone(&frame.track));
                    self.current = None;
                    return Some(Vec::new());
                }
            }
        }
        let transcoder = self.current.as_mut()?;
        match transcoder.push(frame) {
            Ok(frames) => Some(frames),
            Err(TranscodeError::DecoderPanicked) => {
                tracing::warn!(route, "the AAC decoder failed; WebRTC viewers get no audio until the source changes");
                self.refused = Some(Arc::clone(&frame.track));
                self.current = None;
                Some(Vec::new())
            }
            Err(e) => {
                self.errors += 1;
                let now = std::time::Instant::now();
                if self.last_logged.is_none_or(|t| now.duration_since(t).as_secs() >= 10) {
                    tracing::debug!(route, error = %e, skipped = self.errors, "AAC frames skipped");
                    self.last_logged = Some(now);
                    self.errors = 0;
                }
                Some(Vec::new())
            }
        }
    }

    /// Drops the transcoder (no viewer needs the audio now); the next AAC frame after demand returns makes a new one.
    pub fn stop(&mut self) {
        self.current = None;
    }
}
