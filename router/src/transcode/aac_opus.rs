//! AAC -> Opus, for WebRTC viewers of routes whose audio is AAC (OBS, IP cameras, ffmpeg): browsers decode no AAC.
//!
//! A state machine over frames, no IO: each AAC-LC frame is decoded (symphonia's pure-Rust decoder), resampled to
//! 48 kHz when the source runs at another rate (rubato's sinc resampler), and the samples are cut into 20 ms Opus
//! packets (libopus). One AAC frame (1024 samples) yields one or two packets, sometimes none.
//!
//! Timing is what keeps the sound in step with the picture. A packet's pts is the source time of its first sample
//! in 48 kHz ticks, less the resampler's and the encoder's delays: WebRTC sender reports date frames by the route's
//! timeline (the shard's `MediaClock`), and browsers line audio up with video by them. Its `received` instant is
//! that of the AAC frame its first sample came from, moved by that sample's offset (latency is measured from it).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType, WindowFunction};
use symphonia_codec_aac::AacDecoder;
use symphonia_common::mpeg::audio::{AudioObjectType, AudioSpecificConfig};
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;

use crate::media::{Codec, CodecParams, Frame, Track};

/// Opus's clock, and the only input rate this transcoder encodes at.
pub const OPUS_RATE: u32 = 48_000;
/// Samples per channel in one Opus packet: 20 ms, what WebRTC senders use.
const PACKET_SAMPLES: usize = 960;
/// Samples per channel in an AAC-LC frame.
const AAC_SAMPLES: usize = 1024;
/// Bits per second of the Opus stream: music-grade for stereo, voice-and-music for mono.
const STEREO_BITRATE: i32 = 64_000;
const MONO_BITRATE: i32 = 40_000;
/// libopus effort (0-10). 5 keeps a 48 kHz stereo stream well under 1% of a core (BENCHMARKS.md) at a quality
/// listeners cannot tell from 10 at these bitrates.
const COMPLEXITY: i32 = 5;
/// A source frame that starts further than this from where the previous one ended (a publisher restarted, the
/// route dropped frames for a slow reader) starts the timing again, dropping the samples not yet encoded.
const MAX_JITTER_MS: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("this AAC cannot be transcoded: {0}")]
    Unsupported(String),
    #[error("an AAC frame did not decode: {0}")]
    Decode(String),
    #[error("the AAC decoder failed on a frame; transcoding stops for this track")]
    DecoderPanicked,
    #[error("Opus: {0}")]
    Encode(#[from] opus::Error),
    #[error("resampling: {0}")]
    Resample(String),
}

/// Where the newest source frame's samples sit on the output clock, and when that frame reached the router.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    pts: i64,
    received: Instant,
    wallclock: Option<std::time::SystemTime>,
}

/// One route's AAC track into Opus frames. Made for a track and used for nothing else (see [`AacToOpus::is_for`]).
pub struct AacToOpus {
    source: Arc<Track>,
    track: Arc<Track>,
    decoder: AacDecoder,
    resampler: Option<Async<f32>>,
    encoder: opus::Encoder,
    channels: usize,
    in_rate: u32,
    /// Output ticks the resampler and the encoder hold back: subtracted so a packet's pts is its samples' source time.
    delay: i64,
    /// Decoded and resampled samples (interleaved), reused frame to frame.
    decoded: Vec<f32>,
    resampled: Vec<f32>,
    /// 48 kHz samples not yet encoded, interleaved, and the output pts of the first of them.
    pcm: Vec<f32>,
    pcm_pts: i64,
    /// Whether `pcm_pts` runs on from the last frame; false at first and after a bad frame.
    started: bool,
    anchor: Option<Anchor>,
    packet: Vec<u8>,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("source", &self.source.description)
            .field("channels", &self.channels)
            .field("in_rate", &self.in_rate)
            .field("pcm_pts", &self.pcm_pts)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    /// A transcoder for `source`, an AAC track; refuses what the decoder cannot do (HE-AAC, more than two
    /// channels, no AudioSpecificConfig) with the reason.
    pub fn new(source: &Arc<Track>) -> Result<AacToOpus, TranscodeError> {
        let decoder = decoder_for(source)?;
        let (in_rate, channels) = {
            let p = decoder.codec_params();
            let rate = p.sample_rate.ok_or_else(|| TranscodeError::Unsupported("no sample rate".into()))?;
            let channels = p.channels.as_ref().map_or(0, |c| c.count());
            (rate, channels)
        };
        if !(1..=2).contains(&channels) {
            return Err(TranscodeError::Unsupported(format!("{channels} channels (Opus here carries 1 or 2)")));
        }
        if let Some(why) = clock_refusal(in_rate, source.clock_rate) {
            return Err(TranscodeError::Unsupported(why));
        }
        let (layout, bitrate) =
            if channels == 2 { (opus::Channels::Stereo, STEREO_BITRATE) } else { (opus::Channels::Mono, MONO_BITRATE) };
        let mut encoder = opus::Encoder::new(OPUS_RATE, layout, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        encoder.set_complexity(COMPLEXITY)?;
        let lookahead = i64::from(encoder.get_lookahead()?);
        let resampler = if in_rate == OPUS_RATE {
            None
        } else {
            // 32 taps with linear interpolation between 256 precomputed phases: its roll-off starts below the
            // source's Nyquist frequency, past the 20 kHz Opus keeps, at an eighth of the default 256-tap cubic
            // filter's cost (64 taps cost twice this for nothing audible: BENCHMARKS.md).
            let params = SincInterpolationParameters {
                sinc_len: 32,
                f_cutoff: None,
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Linear,
                window: WindowFunction::BlackmanHarris2,
            };
            let ratio = f64::from(OPUS_RATE) / f64::from(in_rate);
            Some(
                Async::<f32>::new_sinc(ratio, 1.0, &params, AAC_SAMPLES, channels, FixedAsync::Input)
                    .map_err(|e| TranscodeError::Unsupported(format!("resampling from {in_rate} Hz: {e}")))?,
            )
        };
        let delay = lookahead + resampler.as_ref().map_or(0, |r| r.output_delay() as i64);
        let description =
            format!("Opus 48 kHz {}, from AAC {} Hz", if channels == 2 { "stereo" } else { "mono" }, in_rate);
        let track = Arc::new(Track {
            id: source.id,
            codec: Codec::Opus,
            clock_rate: OPUS_RATE,
            params: CodecParams::None,
            description,
        });
        Ok(AacToOpus {
            source: Arc::clone(source),
            track,
            decoder,
            resampler,
            encoder,
            channels,
            in_rate,
            delay,
            decoded: Vec::with_capacity(AAC_SAMPLES * channels),
            resampled: Vec::new(),
            pcm: Vec::with_capacity(2 * PACKET_SAMPLES * channels),
            pcm_pts: 0,
            started: false,
            anchor: None,
            packet: vec![0; 1500],
        })
    }

    /// Whether this transcoder was made for `track` (a source that restarts with other settings needs a new one).
    pub fn is_for(&self, track: &Arc<Track>) -> bool {
        Arc::ptr_eq(&self.source, track) || (track.codec == Codec::Aac && track.params == self.source.params)
    }

    /// The Opus track the frames come out on.
    pub fn track(&self) -> &Arc<Track> {
        &self.track
    }

    /// Takes one AAC frame; returns the Opus frames it completed (0, 1 or 2).
    pub fn push(&mut self, frame: &Frame) -> Result<Vec<Frame>, TranscodeError> {
        // Where this frame's samples belong on the output clock, against where the buffered ones end: measured
        // against the samples actually produced, so neither a lost frame nor a source clock drifting from its
        // sample count builds up an offset.
        let at = rescale(frame.pts, self.in_rate, OPUS_RATE) - self.delay;
        let end = self.pcm_pts + (self.pcm.len() / self.channels) as i64;
        if !self.started || (at - end).abs() > MAX_JITTER_MS * i64::from(OPUS_RATE) / 1000 {
            self.restart(frame.pts);
        }
        // A frame that does not decode leaves a gap: the next one starts the clock again from its own time.
        self.started = false;
        self.decode(frame)?;
        let frames = self.decoded.len() / self.channels;
        if frames != AAC_SAMPLES {
            return Err(TranscodeError::Decode(format!("{frames} samples where AAC-LC has {AAC_SAMPLES}")));
        }
        self.started = true;
        // Output pts of the first sample this frame adds: where the buffered samples end.
        let first = self.pcm_pts + (self.pcm.len() / self.channels) as i64;
        match self.resampler.as_mut() {
            None => self.pcm.extend_from_slice(&self.decoded),
            Some(resampler) => {
                let input = InterleavedSlice::new(&self.decoded[..], self.channels, frames)
                    .map_err(|e| TranscodeError::Resample(e.to_string()))?;
                let max = resampler.output_frames_max();
                self.resampled.resize(max * self.channels, 0.0);
                let mut output = InterleavedSlice::new_mut(&mut self.resampled[..], self.channels, max)
                    .map_err(|e| TranscodeError::Resample(e.to_string()))?;
                let (_, produced) = resampler
                    .process_into_buffer(&input, &mut output, None)
                    .map_err(|e| TranscodeError::Resample(e.to_string()))?;
                self.pcm.extend_from_slice(&self.resampled[..produced * self.channels]);
            }
        }
        self.anchor = Some(Anchor { pts: first, received: frame.received, wallclock: frame.wallclock });
        let mut out = Vec::new();
        let packet = PACKET_SAMPLES * self.channels;
        let mut used = 0;
        while self.pcm.len() - used >= packet {
            let len = self.encoder.encode_float(&self.pcm[used..used + packet], &mut self.packet)?;
            out.push(self.opus_frame(self.pcm_pts, Bytes::copy_from_slice(&self.packet[..len])));
            used += packet;
            self.pcm_pts += PACKET_SAMPLES as i64;
        }
        self.pcm.drain(..used);
        Ok(out)
    }

    /// Drops what is buffered and restarts the output clock at source time `source_pts`.
    fn restart(&mut self, source_pts: i64) {
        self.pcm.clear();
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
        self.pcm_pts = rescale(source_pts, self.in_rate, OPUS_RATE) - self.delay;
        self.anchor = None;
    }

    /// Decodes `frame` into `self.decoded`. The decoder is third-party code fed untrusted bytes: a panic in it is
    /// caught and ends this transcoder rather than the task that feeds every WebRTC viewer of the route.
    fn decode(&mut self, frame: &Frame) -> Result<(), TranscodeError> {
        let packet = PacketRef::new(0, frame.pts.into(), (AAC_SAMPLES as u64).into(), &frame.data);
        let decoder = &mut self.decoder;
        let decoded = &mut self.decoded;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            decoder.decode_ref(&packet).map(|buf| buf.copy_to_vec_interleaved(decoded))
        }));
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TranscodeError::Decode(e.to_string())),
            Err(_) => Err(TranscodeError::DecoderPanicked),
        }
    }

    /// An Opus frame whose first sample has output pts `pts`, timed from the anchor (see the module docs).
    fn opus_frame(&self, pts: i64, data: Bytes) -> Frame {
        let mut frame = Frame::new(Arc::clone(&self.track), pts, pts, true, data);
        if let Some(anchor) = self.anchor {
            let offset = pts - anchor.pts;
            let shift = Duration::from_nanos(offset.unsigned_abs() * 1_000_000_000 / u64::from(OPUS_RATE));
            let (received, wallclock) = if offset >= 0 {
                (anchor.received.checked_add(shift), anchor.wallclock.and_then(|w| w.checked_add(shift)))
            } else {
                (anchor.received.checked_sub(shift), anchor.wallclock.and_then(|w| w.checked_sub(shift)))
            };
            frame.received = received.unwrap_or(anchor.received);
            frame.wallclock = wallclock;
        }
        frame
    }
}

/// An AAC decoder for `track`, or why there is none.
fn decoder_for(track: &Track) -> Result<AacDecoder, TranscodeError> {
    let CodecParams::Aac { audio_specific_config } = &track.params else {
        return Err(TranscodeError::Unsupported(format!("{} is not AAC with an AudioSpecificConfig", track.codec)));
    };
    let mut params = AudioCodecParameters::new();
    params.for_codec(CODEC_ID_AAC).with_extra_data(audio_specific_config.to_vec().into_boxed_slice());
    let options = AudioDecoderOptions::default();
    std::panic::catch_unwind(|| AacDecoder::try_new(&params, &options))
        .map_err(|_| TranscodeError::Unsupported("an AudioSpecificConfig the decoder cannot read".into()))?
        .map_err(|e| TranscodeError::Unsupported(unsupported_reason(&e.to_string())))
}

/// symphonia's words for what it refuses, in a user's.
fn unsupported_reason(error: &str) -> String {
    if error.contains("too complex") {
        "only AAC-LC in mono or stereo is transcoded (not HE-AAC, which OBS and cameras offer as an option)".into()
    } else {
        error.to_string()
    }
}

/// Why `track` cannot be transcoded to Opus, or `None` when it can (or is not AAC). Reads the AudioSpecificConfig
/// only (route snapshots ask for every AAC track), with the conditions `AacDecoder::try_new` sets.
pub fn unsupported(track: &Track) -> Option<String> {
    if track.codec != Codec::Aac {
        return None;
    }
    let CodecParams::Aac { audio_specific_config } = &track.params else {
        return Some("the source sent no AudioSpecificConfig".into());
    };
    let asc = match AudioSpecificConfig::read(audio_specific_config) {
        Ok(asc) => asc,
        Err(e) => return Some(format!("an AudioSpecificConfig the decoder cannot read ({e})")),
    };
    let channels = asc.channels.as_ref().map_or(0, |c| c.count());
    if let Some(why) = clock_refusal(asc.sample_rate, track.clock_rate) {
        return Some(why);
    }
    if asc.object_type != AudioObjectType::Lc || asc.sbr_present || asc.samples != AAC_SAMPLES {
        Some(unsupported_reason("too complex"))
    } else if !(1..=2).contains(&channels) {
        Some(format!("{channels} channels (Opus here carries 1 or 2)"))
    } else {
        None
    }
}

/// The sample rates AAC signals by index (ISO/IEC 14496-3 1.6.3.4); an explicit other rate is refused rather
/// than resampled at an absurd ratio (a rate of 1 Hz would make each frame 50 000 Opus packets).
const RATES: [u32; 12] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000];

/// Why a track whose AudioSpecificConfig says `rate` and whose timestamps run at `clock` cannot be transcoded.
fn clock_refusal(rate: u32, clock: u32) -> Option<String> {
    if !RATES.contains(&rate) {
        Some(format!("a sample rate of {rate} Hz (AAC's standard rates are 8 to 96 kHz)"))
    } else if clock != rate {
        // Implicitly signalled HE-AAC: the config says the core rate, the stream's clock twice that.
        Some(format!("timestamps at {clock} Hz for {rate} Hz audio (HE-AAC signalled implicitly)"))
    } else {
        None
    }
}

/// `ticks` of a `from` Hz clock in a `to` Hz clock, rounded down.
fn rescale(ticks: i64, from: u32, to: u32) -> i64 {
    (i128::from(ticks) * i128::from(to)).div_euclid(i128::from(from)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::TrackId;

    /// One second of a sine, AAC-LC in ADTS, made by ffmpeg (see testdata/README.md).
    const STEREO_44K: &[u8] = include_bytes!("testdata/sine-1k-44100-stereo.aac");
    const MONO_48K: &[u8] = include_bytes!("testdata/sine-440-48000-mono.aac");

    fn adts(data: &[u8]) -> (Bytes, Vec<Bytes>) {
        crate::media::aac::split_adts(data).expect("ADTS")
    }

    fn aac_track(asc: Bytes) -> Arc<Track> {
        Arc::new(Track {
            id: TrackId(2),
            codec: Codec::Aac,
            // Timestamps in the sample rate, as RTMP and RTSP sources give them.
            clock_rate: crate::media::aac::aac_config(&asc).map_or(44_100, |(rate, _)| rate),
            params: CodecParams::Aac { audio_specific_config: asc },
            description: "AAC".into(),
        })
    }

    /// Feeds every frame of `data` from source pts `start`, each `received` at its source time after `t0`.
    fn transcode(data: &[u8], start: i64, t0: Instant) -> (AacToOpus, Vec<Frame>, u32) {
        let (asc, frames) = adts(data);
        let track = aac_track(asc);
        let mut t = AacToOpus::new(&track).expect("transcodable");
        let rate = t.in_rate;
        let mut out = Vec::new();
        for (i, data) in frames.into_iter().enumerate() {
            let pts = start + i as i64 * AAC_SAMPLES as i64;
            let mut f = Frame::new(Arc::clone(&track), pts, pts, true, data);
            f.received = t0 + Duration::from_secs_f64((pts - start) as f64 / f64::from(rate));
            out.extend(t.push(&f).expect("transcodes"));
        }
        (t, out, rate)
    }

    /// Decodes Opus frames back to mono samples (the left channel).
    fn decode(frames: &[Frame], channels: usize) -> Vec<f32> {
        let layout = if channels == 2 { opus::Channels::Stereo } else { opus::Channels::Mono };
        let mut decoder = opus::Decoder::new(OPUS_RATE, layout).expect("decoder");
        let mut pcm = Vec::new();
        let mut buf = vec![0f32; PACKET_SAMPLES * channels];
        for f in frames {
            let n = decoder.decode_float(&f.data, &mut buf, false).expect("decodes");
            assert_eq!(n, PACKET_SAMPLES);
            pcm.extend(buf.chunks(channels).map(|s| s[0]));
        }
        pcm
    }

    /// The frequency of a tone from its upward zero crossings, and its RMS level.
    fn tone(samples: &[f32]) -> (f64, f64) {
        let crossings = samples.windows(2).filter(|w| w[0] <= 0.0 && w[1] > 0.0).count();
        let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
        (crossings as f64 * f64::from(OPUS_RATE) / samples.len() as f64, rms)
    }

    #[test]
    fn stereo_44k_becomes_20ms_opus_packets_of_the_same_tone() {
        let (t, out, _) = transcode(STEREO_44K, 441_000, Instant::now());
        // The file's 45 AAC frames (1 s and the encoder's priming: 46 080 samples, 50 155 at 48 kHz) less what the
        // resampler and the encoder hold back: 52 packets of 20 ms.
        assert_eq!(out.len(), 52);
        assert_eq!(t.track().codec, Codec::Opus);
        assert_eq!(t.track().clock_rate, OPUS_RATE);
        // pts: the source time (10 s at 44.1 kHz = 480 000 at 48 kHz) less the delays, then 960 apart.
        assert_eq!(out[0].pts, 480_000 - t.delay);
        assert!(t.delay > 0 && t.delay < 1000, "delay {}", t.delay);
        assert!(out.windows(2).all(|w| w[1].pts - w[0].pts == PACKET_SAMPLES as i64));
        assert!(out.iter().all(|f| f.keyframe && f.track.codec == Codec::Opus && f.pts == f.dts));
        // The middle half of the decoded audio is the 1 kHz tone at about ffmpeg's sine level (1/8 full scale).
        let pcm = decode(&out, 2);
        let (freq, rms) = tone(&pcm[pcm.len() / 4..pcm.len() * 3 / 4]);
        assert!((freq - 1000.0).abs() < 20.0, "{freq} Hz");
        assert!(rms > 0.05 && rms < 0.2, "rms {rms}");
    }

    #[test]
    fn mono_48k_needs_no_resampler_and_keeps_its_tone() {
        let (t, out, rate) = transcode(MONO_48K, 0, Instant::now());
        assert_eq!(rate, 48_000);
        assert!(t.resampler.is_none());
        assert_eq!(t.track().description, "Opus 48 kHz mono, from AAC 48000 Hz");
        let pcm = decode(&out, 1);
        let (freq, rms) = tone(&pcm[pcm.len() / 4..pcm.len() * 3 / 4]);
        assert!((freq - 440.0).abs() < 10.0, "{freq} Hz");
        assert!(rms > 0.05, "rms {rms}");
    }

    #[test]
    fn packets_are_timed_from_the_aac_frames_they_came_from() {
        let t0 = Instant::now();
        let (t, out, _) = transcode(STEREO_44K, 0, t0);
        for f in &out {
            // The packet's first sample was taken at source time pts + delay (48 kHz ticks) after t0.
            let expected = t0 + Duration::from_secs_f64((f.pts + t.delay) as f64 / 48_000.0);
            let error = if f.received > expected { f.received - expected } else { expected - f.received };
            assert!(error < Duration::from_millis(1), "packet at {} off by {error:?}", f.pts);
        }
    }

    #[test]
    fn a_jump_in_the_source_restarts_the_clock_and_small_jitter_does_not() {
        let (asc, frames) = adts(STEREO_44K);
        let track = aac_track(asc);
        let mut t = AacToOpus::new(&track).expect("transcodable");
        let mut pts = 0;
        let mut last = Vec::new();
        for (i, data) in frames.iter().enumerate().take(20) {
            // RTMP carries milliseconds: pts wobble by up to a tick of 1 ms around the sample count.
            let wobble = if i % 2 == 0 { 44 } else { -44 };
            last = t.push(&Frame::new(Arc::clone(&track), pts + wobble, pts, true, data.clone())).expect("ok");
            pts += AAC_SAMPLES as i64;
        }
        let before = last.last().expect("a packet").pts;
        assert!(before > 0 && before < rescale(pts, 44_100, 48_000));
        // Ten seconds later (a publisher came back): the next packets start from there, not from `before`.
        let later = pts + 441_000;
        let mut out = Vec::new();
        for (i, data) in frames.iter().enumerate().skip(20).take(5) {
            let p = later + (i as i64 - 20) * AAC_SAMPLES as i64;
            out.extend(t.push(&Frame::new(Arc::clone(&track), p, p, true, data.clone())).expect("ok"));
        }
        assert_eq!(out[0].pts, rescale(later, 44_100, 48_000) - t.delay);
    }

    #[test]
    fn bad_frames_are_errors_and_the_stream_goes_on() {
        let (asc, frames) = adts(MONO_48K);
        let track = aac_track(asc);
        let mut t = AacToOpus::new(&track).expect("transcodable");
        let mut ok = 0;
        for (i, data) in frames.iter().enumerate() {
            let pts = i as i64 * AAC_SAMPLES as i64;
            let data = if i % 5 == 3 { Bytes::from_static(&[0xff; 40]) } else { data.clone() };
            match t.push(&Frame::new(Arc::clone(&track), pts, pts, true, data)) {
                Ok(out) => ok += out.len(),
                Err(TranscodeError::Decode(_)) => assert_eq!(i % 5, 3, "frame {i} is good"),
                Err(e) => panic!("frame {i}: {e}"),
            }
        }
        assert!(ok > 30, "{ok} packets from the good frames");
        for junk in [&[][..], &[0u8; 1], &[0x21, 0x10, 0x05], &[0xde; 600]] {
            let _ = t.push(&Frame::new(Arc::clone(&track), 0, 0, true, Bytes::copy_from_slice(junk)));
        }
    }

    #[test]
    fn what_cannot_be_transcoded_says_why() {
        // AAC-LC 44.1 kHz stereo; HE-AAC (object type 5, explicit SBR to 48 kHz); AAC-LC 5.1; a cut-off config.
        let lc = aac_track(Bytes::from_static(&[0x12, 0x10]));
        let he = aac_track(Bytes::from_static(&[0x2b, 0x11, 0x88, 0x00]));
        let surround = aac_track(Bytes::from_static(&[0x11, 0xb0]));
        let cut = aac_track(Bytes::from_static(&[0x12]));
        assert_eq!(unsupported(&lc), None);
        assert!(unsupported(&he).is_some_and(|w| w.contains("HE-AAC")), "{:?}", unsupported(&he));
        assert!(unsupported(&surround).is_some_and(|w| w.contains("6 channels")), "{:?}", unsupported(&surround));
        assert!(unsupported(&cut).is_some());
        // An explicit rate of 1 Hz (index 15, then 24 bits), and AAC-LC at 24 kHz on a 48 kHz clock.
        let one_hz = aac_track(Bytes::from_static(&[0x17, 0x80, 0x00, 0x00, 0x90]));
        assert!(unsupported(&one_hz).is_some_and(|w| w.contains("1 Hz")), "{:?}", unsupported(&one_hz));
        let implicit = Track { clock_rate: 48_000, ..(*aac_track(Bytes::from_static(&[0x13, 0x10]))).clone() };
        assert!(unsupported(&implicit).is_some_and(|w| w.contains("implicitly")), "{:?}", unsupported(&implicit));
        let implicit = Arc::new(implicit);
        for refused in [&he, &surround, &cut, &one_hz, &implicit] {
            assert!(matches!(AacToOpus::new(refused), Err(TranscodeError::Unsupported(_))));
        }
        let opus = Track { codec: Codec::Opus, params: CodecParams::None, ..(*lc).clone() };
        assert_eq!(unsupported(&opus), None, "not AAC: nothing to refuse");
    }
}
