//! The HLS muxer of one route, with no IO: fed the route's frames, it cuts fMP4 segments and parts with the muxer
//! the recorder uses (`media::fmp4`) and reports what it made as [`Event`]s, which [`super::media`] keeps for
//! viewers.
//!
//! Invariants:
//! - Every segment starts on a keyframe of the primary track (the video track; the audio track when there is no
//!   video), so a player can start at any segment, and it ends at the first such keyframe at least the segment
//!   duration after its start.
//! - A part lasts at most the part duration (unless one frame is longer) and ends where its segment ends; a part
//!   that starts on a keyframe is independent.
//! - Decode times run on from the first segment for the life of the muxer (one timeline for every segment, as one
//!   init segment serves them all): the route's timeline is continuous across publisher restarts.
//! - A sample's duration is the distance to the next sample of its track, so each track holds its latest sample
//!   back until the next arrives (one frame of latency).
//! - A change of what is muxed (a new SPS, a track appearing) starts a new init segment ("map") and the next
//!   segment is marked as a discontinuity.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

use crate::media::fmp4::mux::{self, Fragment, FragmentSample};
use crate::media::fmp4::{SampleData, TrackInfo};
use crate::media::{Codec, Frame, Track};

/// Segment and part lengths and how many segments a playlist keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A segment ends at the first keyframe at least this long after its start.
    pub segment: Duration,
    /// The longest a part lasts (the playlist's PART-TARGET).
    pub part: Duration,
    /// Complete segments a playlist lists.
    pub segments: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&crate::config::model::HlsConfig::default())
    }
}

impl From<&crate::config::model::HlsConfig> for Settings {
    fn from(c: &crate::config::model::HlsConfig) -> Self {
        Settings { segment: c.segment, part: c.part, segments: c.segments as usize }
    }
}

/// A sample this much later than the previous one of its track is after a gap in the source (seconds).
const GAP_SECONDS: i64 = 1;

/// What the muxer made, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new init segment; the segments that follow use it.
    Map(Arc<Map>),
    /// A segment begins (its parts follow).
    SegmentStart { msn: u64, map: u32, discontinuity: bool, date: SystemTime },
    /// A part of the open segment, numbered from 0 within it.
    Part { msn: u64, index: u32, part: Part },
    /// The open segment is complete.
    SegmentEnd { msn: u64 },
}

/// An init segment and what a multivariant playlist says about the stream it starts.
#[derive(Clone, PartialEq)]
pub struct Map {
    pub id: u32,
    pub init: Bytes,
    /// RFC 6381 codec names (`avc1.42e01f,mp4a.40.2`).
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
}

#[derive(Clone, PartialEq)]
pub struct Part {
    /// moof + mdat.
    pub bytes: Bytes,
    /// Seconds.
    pub duration: f64,
    /// Starts on a keyframe of the primary track.
    pub independent: bool,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Map {{ id: {}, {} bytes, {} {:?} }}", self.id, self.init.len(), self.codecs, self.resolution)
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lengths, not bytes: a part is tens of kilobytes.
        write!(f, "Part {{ {} bytes, {:.3} s, independent: {} }}", self.bytes.len(), self.duration, self.independent)
    }
}

/// A frame's bytes as the fragment holds them (shared with the route, not copied until the part is written).
#[derive(Debug)]
pub struct FrameBytes(Bytes);

impl crate::media::fmp4::Payload for FrameBytes {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Why a route track is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Not a codec (or parameters) HLS players take.
    Unplayable,
    /// Another track of its kind is muxed and flowing.
    Shadowed,
}

/// A muxed track silent this long gives its place to another track of its kind (a publisher that came back with
/// other track ids).
const STALE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct MuxTrack {
    track: Arc<Track>,
    /// When its latest frame reached the router.
    last_received: std::time::Instant,
    info: TrackInfo,
    last_dts: Option<i64>,
    last_duration: Option<u32>,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    dts: i64,
    pts: i64,
    keyframe: bool,
    data: Bytes,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    start_dts: i64,
    /// The primary track's dts of the open part's first sample.
    part_start_dts: Option<i64>,
    part_independent: bool,
    parts: u32,
}

/// One route's HLS muxer.
#[derive(Debug)]
pub struct Muxer {
    settings: Settings,
    tracks: Vec<MuxTrack>,
    /// Index into `tracks` of the track segments and parts are cut by.
    primary: usize,
    /// The instant decode times count from: a dts of the first segment's primary track, and that track's clock.
    origin: Option<(i64, u32)>,
    map: u32,
    /// The next segment follows a change of map.
    discontinuity: bool,
    segment: Option<OpenSegment>,
    next_msn: u64,
    /// The mfhd sequence number, increasing over the muxer's life.
    sequence: u32,
    fragment: Fragment<FrameBytes>,
    part_ticks: i64,
    segment_ticks: i64,
    /// Parts a segment may have before it is ended without a keyframe: three segment durations' worth.
    max_parts: u32,
    /// Route track versions seen and not muxed, and why, so their frames cost a comparison.
    ignored: Vec<(Arc<Track>, Left)>,
}

/// Why a route cannot be muxed: no track an HLS player can play.
pub const NOTHING_PLAYABLE: &str =
    "the route has no track HLS players can play (H.264 or H.265 video, AAC or Opus audio)";

impl Muxer {
    /// A muxer for `tracks` (the route's, as known now); tracks HLS players cannot play are left out.
    pub fn new(settings: Settings, tracks: &[Arc<Track>]) -> Result<(Muxer, Vec<Event>), &'static str> {
        let mut m = Muxer {
            settings,
            tracks: Vec::new(),
            primary: 0,
            origin: None,
            map: 0,
            discontinuity: false,
            segment: None,
            next_msn: 0,
            sequence: 0,
            fragment: Fragment::new(&[]),
            part_ticks: 0,
            segment_ticks: 0,
            max_parts: 0,
            ignored: Vec::new(),
        };
        let chosen = choose(tracks);
        if chosen.is_empty() {
            return Err(NOTHING_PLAYABLE);
        }
        let mut events = Vec::new();
        m.set_tracks(chosen, &mut events);
        Ok((m, events))
    }

    /// Takes one route frame; returns what it completed.
    pub fn push(&mut self, frame: &Frame, date: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        let index = match self.tracks.iter().position(|t| Arc::ptr_eq(&t.track, &frame.track)) {
            Some(i) => i,
            None => match self.choose_again(frame, &mut events) {
                Some(i) => i,
                None => return events,
            },
        };
        self.tracks[index].last_received = frame.received;
        self.sample(index, frame, date, &mut events);
        events
    }

    /// A frame of a track not muxed as it is: new parameters for a muxed track, a new track, or one left out. What
    /// is muxed changes (a new map) only when the chosen tracks differ; a muxed track of the frame's kind keeps its
    /// place while it flows, and a new one takes over once it has been silent for [`STALE`].
    fn choose_again(&mut self, frame: &Frame, events: &mut Vec<Event>) -> Option<usize> {
        let flowing = |t: &MuxTrack| {
            frame.received.saturating_duration_since(t.last_received) < STALE && t.track.id != frame.track.id
        };
        let kind = frame.track.kind();
        if let Some((_, why)) = self.ignored.iter().find(|(t, _)| Arc::ptr_eq(t, &frame.track)) {
            let shadowed = *why == Left::Shadowed && self.tracks.iter().any(|t| t.track.kind() == kind && flowing(t));
            if *why == Left::Unplayable || shadowed {
                return None;
            }
        }
        let mut candidates: Vec<Arc<Track>> = self
            .tracks
            .iter()
            .filter(|t| t.track.id != frame.track.id && (t.track.kind() != kind || flowing(t)))
            .map(|t| Arc::clone(&t.track))
            .collect();
        candidates.push(Arc::clone(&frame.track));
        let chosen = choose(&candidates);
        let same = chosen.len() == self.tracks.len()
            && chosen.iter().zip(&self.tracks).all(|(c, t)| c.id == t.track.id && TrackInfo::of(c) == t.info);
        if same {
            // The same tracks and parameters in new track versions: nothing changes for players.
            for (c, t) in chosen.into_iter().zip(&mut self.tracks) {
                t.track = c;
            }
        } else if chosen.iter().any(|c| Arc::ptr_eq(c, &frame.track)) {
            self.close_segment(events);
            self.set_tracks(chosen, events);
        }
        let index = self.tracks.iter().position(|t| Arc::ptr_eq(&t.track, &frame.track));
        if index.is_none() {
            // Not a track HLS players can play, or a second one of its kind while the first flows.
            let why =
                if choose(std::slice::from_ref(&frame.track)).is_empty() { Left::Unplayable } else { Left::Shadowed };
            self.ignored.retain(|(t, _)| t.id != frame.track.id);
            self.ignored.push((Arc::clone(&frame.track), why));
        }
        index
    }

    /// Ends the open segment (the route ended or the muxer stops).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.close_segment(&mut events);
        events
    }

    fn set_tracks(&mut self, chosen: Vec<Arc<Track>>, events: &mut Vec<Event>) {
        let last = std::mem::take(&mut self.tracks);
        for track in chosen {
            let info = TrackInfo::of(&track);
            let before = last.iter().find(|t| t.track.id == track.id);
            self.tracks.push(MuxTrack {
                last_received: before.map_or_else(std::time::Instant::now, |t| t.last_received),
                info,
                track,
                last_dts: before.and_then(|t| t.last_dts),
                last_duration: before.and_then(|t| t.last_duration),
                pending: None,
            });
        }
        self.primary = self.tracks.iter().position(|t| t.info.codec.is_video()).unwrap_or(0);
        let clock = self.tracks[self.primary].info.clock_rate;
        self.part_ticks = ticks(self.settings.part, clock);
        self.segment_ticks = ticks(self.settings.segment, clock);
        let parts_per_segment = self.settings.segment.as_secs_f64() / self.settings.part.as_secs_f64().max(0.001);
        self.max_parts = (parts_per_segment * 3.0).ceil().clamp(3.0, 10_000.0) as u32;
        let infos: Vec<TrackInfo> = self.tracks.iter().map(|t| t.info.clone()).collect();
        self.fragment = Fragment::new(&infos);
        match mux::init_segment(&infos) {
            Ok(init) => {
                self.map += 1;
                self.discontinuity = self.map > 1;
                events.push(Event::Map(Arc::new(Map {
                    id: self.map,
                    init: Bytes::from(init),
                    codecs: infos.iter().filter_map(codec_name).collect::<Vec<_>>().join(","),
                    resolution: infos.iter().find(|t| t.width > 0).map(|t| (t.width, t.height)),
                })));
            }
            Err(e) => {
                // `choose` only keeps tracks the muxer can describe; this is a malformed parameter set.
                tracing::warn!(error = %e, "HLS: cannot write an init segment; waiting for new parameters");
                self.tracks.clear();
            }
        }
    }

    /// A dts of the first segment's primary track in `clock`'s ticks, rounded to the nearest.
    fn base(&self, clock: u32) -> i64 {
        let Some((dts, origin_clock)) = self.origin else { return 0 };
        let scaled = i128::from(dts) * i128::from(clock);
        let from = i128::from(origin_clock.max(1));
        i64::try_from((scaled + scaled.signum() * from / 2) / from).unwrap_or(0)
    }

    /// Whether the source should be asked for a keyframe: none has opened a segment yet, or the open one has run
    /// past the segment duration (a WebRTC publisher sends keyframes only when asked).
    pub fn wants_keyframe(&self) -> bool {
        let primary = &self.tracks[self.primary];
        if !primary.info.codec.is_video() {
            return false;
        }
        match &self.segment {
            None => true,
            Some(seg) => primary.last_dts.is_some_and(|last| last.saturating_sub(seg.start_dts) >= self.segment_ticks),
        }
    }

    fn sample(&mut self, index: usize, frame: &Frame, date: SystemTime, events: &mut Vec<Event>) {
        let is_primary = index == self.primary;
        let primary_video = self.tracks[self.primary].info.codec.is_video();
        let base = self.base(self.tracks[index].info.clock_rate);
        let track = &self.tracks[index];
        if self.origin.is_some() && frame.dts < base || track.last_dts.is_some_and(|last| frame.dts <= last) {
            // From before the first segment (audio captured just before the keyframe), or out of decode order
            // (B-frames from a source that gives no decode times).
            return;
        }
        let clock = i64::from(track.info.clock_rate);
        let gap = track.pending.as_ref().map(|p| frame.dts.saturating_sub(p.dts));
        if is_primary && self.segment.is_some() {
            let segment_parts = self.segment.as_ref().map_or(0, |s| s.parts);
            if gap.is_some_and(|g| g > GAP_SECONDS * clock) {
                // The source stopped and went on: the segment ends, and the next starts at the next keyframe behind
                // a discontinuity (the timeline jumped).
                self.close_segment(events);
                self.discontinuity = true;
            } else if segment_parts >= self.max_parts {
                // No keyframe for three segment durations: rather than one segment growing without end, the
                // output pauses until the next keyframe.
                self.close_segment(events);
                self.discontinuity = true;
            }
        }
        // Where a segment may start: a keyframe of the primary video track, or any sample of an audio-only one.
        let starts = is_primary && (frame.keyframe || !primary_video);
        match &self.segment {
            None if !starts => {
                if !is_primary {
                    // Audio before the first keyframe of a segment is not kept (nothing would play it).
                    self.tracks[index].pending = None;
                }
                return;
            }
            None => self.open_segment(frame, date, events),
            Some(seg) if starts && frame.dts.saturating_sub(seg.start_dts) >= self.segment_ticks => {
                // The held sample's length is known now: up to this keyframe.
                let track = &mut self.tracks[index];
                if let Some(p) = &track.pending {
                    let gap = frame.dts.saturating_sub(p.dts);
                    if gap > 0 && gap <= GAP_SECONDS * i64::from(track.info.clock_rate) {
                        track.last_duration = u32::try_from(gap).ok();
                    }
                }
                self.close_segment(events);
                self.open_segment(frame, date, events);
            }
            Some(_) => {}
        }
        // (A frame before the first segment's start was dropped above, once that start was known; the frame that
        // opens the first segment is its start.)
        let track = &mut self.tracks[index];
        track.last_dts = Some(frame.dts);
        let next = Pending { dts: frame.dts, pts: frame.pts, keyframe: frame.keyframe, data: frame.data.clone() };
        let Some(p) = track.pending.replace(next) else {
            if is_primary && let Some(seg) = &mut self.segment {
                seg.part_start_dts = Some(frame.dts);
                seg.part_independent = frame.keyframe || !primary_video;
            }
            return;
        };
        let gap = frame.dts.saturating_sub(p.dts);
        let mut flush_after = false;
        let duration = if gap > GAP_SECONDS * clock {
            // After a gap in another track the held sample keeps its usual length and a new part starts, whose tfdt
            // places the next sample at its time.
            flush_after = true;
            track.last_duration.unwrap_or_else(|| default_duration(&track.info))
        } else {
            u32::try_from(gap).unwrap_or(u32::MAX)
        };
        track.last_duration = Some(duration);
        if is_primary {
            // A part lasts at most the part duration: the held sample goes into the next part when it would not fit.
            let full = self
                .segment
                .as_ref()
                .and_then(|s| s.part_start_dts)
                .is_some_and(|start| frame.dts.saturating_sub(start) > self.part_ticks);
            if full && self.fragment.samples(index) > 0 {
                self.flush_part(events);
                if let Some(seg) = &mut self.segment {
                    seg.part_start_dts = Some(p.dts);
                    seg.part_independent = p.keyframe;
                }
            }
        }
        let sample = self.fragment_sample(index, p, duration);
        self.fragment.push(index, sample);
        if !is_primary {
            // The primary track stalled (a camera whose video stopped while audio flows): this track cuts the parts
            // at the part duration. Stalled means behind by half a part; in step, the tracks differ by a frame.
            let held = self.seconds(index);
            let part = self.settings.part.as_secs_f64();
            if held >= part && held - self.seconds(self.primary) > part / 2.0 {
                flush_after = true;
            }
        }
        if flush_after {
            self.flush_part(events);
            let held = self.tracks[self.primary].pending.as_ref().map(|p| (p.dts, p.keyframe));
            if let Some(seg) = &mut self.segment {
                seg.part_start_dts = held.map(|h| h.0);
                seg.part_independent = held.is_some_and(|h| h.1) || !primary_video;
            }
        }
    }

    fn fragment_sample(&self, index: usize, p: Pending, duration: u32) -> FragmentSample<FrameBytes> {
        let track = &self.tracks[index];
        let cts = p.pts.saturating_sub(p.dts);
        let len = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
        FragmentSample {
            decode_time: u64::try_from(p.dts.saturating_sub(self.base(track.info.clock_rate))).unwrap_or(0),
            duration,
            composition_offset: i32::try_from(cts).unwrap_or(if cts < 0 { i32::MIN } else { i32::MAX }),
            sync: p.keyframe || !track.info.codec.is_video(),
            wallclock_ms: None,
            data: SampleData { payload: Arc::new(FrameBytes(p.data)), offset: 0, len },
        }
    }

    fn open_segment(&mut self, first: &Frame, date: SystemTime, events: &mut Vec<Event>) {
        let clock = self.tracks[self.primary].info.clock_rate;
        if self.origin.is_none() {
            self.origin = Some((first.dts, clock));
        }
        let msn = self.next_msn;
        self.next_msn += 1;
        events.push(Event::SegmentStart { msn, map: self.map, discontinuity: self.discontinuity, date });
        self.discontinuity = false;
        let independent = first.keyframe || !self.tracks[self.primary].info.codec.is_video();
        self.segment = Some(OpenSegment {
            msn,
            start_dts: first.dts,
            part_start_dts: None,
            part_independent: independent,
            parts: 0,
        });
    }

    /// Writes every held-back sample with its last known duration, the last part, and ends the segment.
    fn close_segment(&mut self, events: &mut Vec<Event>) {
        if self.segment.is_none() {
            return;
        }
        for index in 0..self.tracks.len() {
            if let Some(p) = self.tracks[index].pending.take() {
                let t = &self.tracks[index];
                let duration = t.last_duration.unwrap_or_else(|| default_duration(&t.info));
                let sample = self.fragment_sample(index, p, duration);
                self.fragment.push(index, sample);
            }
        }
        self.flush_part(events);
        if let Some(seg) = self.segment.take() {
            events.push(Event::SegmentEnd { msn: seg.msn });
        }
    }

    /// Seconds of track `index` in the part being collected.
    fn seconds(&self, index: usize) -> f64 {
        self.fragment.duration(index) as f64 / f64::from(self.tracks[index].info.clock_rate.max(1))
    }

    fn flush_part(&mut self, events: &mut Vec<Event>) {
        if self.segment.is_none() {
            return;
        }
        // The part's length is the primary track's, or (stalled) the longest other track's.
        let longest = (0..self.tracks.len()).map(|i| self.seconds(i)).fold(0.0, f64::max);
        let duration = match self.seconds(self.primary) {
            d if d > 0.0 && longest - d <= self.settings.part.as_secs_f64() / 2.0 => d,
            _ => longest,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let part = match self.fragment.finish(self.sequence) {
            Ok(Some(part)) => part,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "HLS: a part could not be written; it is skipped");
                return;
            }
        };
        let mut bytes =
            BytesMut::with_capacity(part.head.len() + part.data.iter().map(|d| d.len as usize).sum::<usize>());
        bytes.extend_from_slice(&part.head);
        for d in &part.data {
            bytes.extend_from_slice(d.bytes());
        }
        let Some(seg) = &mut self.segment else { return };
        let index = seg.parts;
        seg.parts += 1;
        events.push(Event::Part {
            msn: seg.msn,
            index,
            part: Part { bytes: bytes.freeze(), duration, independent: seg.part_independent },
        });
        seg.part_independent = false;
    }
}

/// The tracks an HLS player is given: the first H.264/H.265 video track and the first AAC/Opus audio track whose
/// decoder configuration the muxer can describe, video first.
fn choose(tracks: &[Arc<Track>]) -> Vec<Arc<Track>> {
    let ok = |t: &&Arc<Track>| mux::check_recordable(&TrackInfo::of(t)).is_ok();
    let video = tracks.iter().filter(|t| matches!(t.codec, Codec::H264 | Codec::H265)).find(ok);
    let audio = tracks.iter().filter(|t| matches!(t.codec, Codec::Aac | Codec::Opus)).find(ok);
    video.into_iter().chain(audio).cloned().collect()
}

/// A track's codec as RFC 6381 names it in CODECS (RFC 8216 4.4.6.2).
fn codec_name(t: &TrackInfo) -> Option<String> {
    let c = &t.config;
    match t.codec {
        // AVCDecoderConfigurationRecord: version, profile, compatibility, level.
        Codec::H264 if c.len() >= 4 => Some(format!("avc1.{:02x}{:02x}{:02x}", c[1], c[2], c[3])),
        // HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 E.3): hvc1.[space]profile.compat.tier+level.constraints
        Codec::H265 if c.len() >= 13 => {
            let space = ["", "A", "B", "C"][usize::from(c[1] >> 6)];
            let tier = if c[1] & 0x20 != 0 { 'H' } else { 'L' };
            let compat = u32::from_be_bytes([c[2], c[3], c[4], c[5]]).reverse_bits();
            let mut constraints: Vec<String> = c[6..12].iter().map(|b| format!("{b:X}")).collect();
            while constraints.len() > 1 && constraints.last().is_some_and(|b| b == "0") {
                constraints.pop();
            }
            Some(format!("hvc1.{space}{}.{compat:X}.{tier}{}.{}", c[1] & 0x1f, c[12], constraints.join(".")))
        }
        Codec::Aac => Some(format!("mp4a.40.{}", c.first().map_or(2, |b| b >> 3))),
        Codec::Opus => Some("opus".to_string()),
        _ => None,
    }
}

/// `d` in ticks of `clock`, rounded up.
fn ticks(d: Duration, clock: u32) -> i64 {
    let nanos = d.as_nanos().saturating_mul(u128::from(clock.max(1)));
    i64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(i64::MAX)
}

/// The length of a track's last sample when no later one tells: one typical frame of the codec.
fn default_duration(info: &TrackInfo) -> u32 {
    match info.codec {
        Codec::Aac => 1024,
        Codec::Opus => info.clock_rate / 50,
        _ => info.clock_rate / 30,
    }
    .max(1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::{CodecParams, TrackId};

    /// AAC-LC, 48 kHz, stereo.
    pub(crate) fn aac_track() -> Arc<Track> {
        Arc::new(Track {
            id: TrackId(1),
            codec: Codec::Aac,
            clock_rate: 48_000,
            params: CodecParams::Aac { audio_specific_config: Bytes::from_static(&[0x11, 0x90]) },
            description: String::new(),
        })
    }

    /// The demo clip (640x360, 30 fps, a keyframe every second), read here: egress sits above ingest.
    pub(crate) fn clip() -> &'static crate::media::h264::Clip {
        static CLIP: std::sync::OnceLock<crate::media::h264::Clip> = std::sync::OnceLock::new();
        CLIP.get_or_init(|| {
            crate::media::h264::parse_clip(include_bytes!("../../../assets/demo.h264"), 90_000).expect("the demo clip")
        })
    }

    fn frame(track: &Arc<Track>, dts: i64, keyframe: bool, data: Bytes) -> Frame {
        Frame::new(Arc::clone(track), dts, dts, keyframe, data)
    }

    /// `seconds` of the demo clip's video (30 fps, a keyframe every second) and AAC audio, interleaved by time.
    pub(crate) fn av(seconds: u32, video: &Arc<Track>) -> Vec<Frame> {
        let clip = clip();
        let audio = aac_track();
        let mut out = Vec::new();
        let (mut v, mut a) = (0i64, 0i64);
        while v < i64::from(seconds) * 30 {
            // Whichever is earlier in time comes first.
            if a * 1024 * 90_000 < v * 3000 * 48_000 {
                out.push(frame(&audio, a * 1024, true, Bytes::from_static(&[0x21, 0x10, 0x04])));
                a += 1;
            } else {
                let (data, key) = &clip.frames[(v as usize) % clip.frames.len()];
                out.push(frame(video, v * 3000, *key, data.clone()));
                v += 1;
            }
        }
        out
    }

    pub(crate) fn run(muxer: &mut Muxer, frames: &[Frame]) -> Vec<Event> {
        frames.iter().flat_map(|f| muxer.push(f, SystemTime::UNIX_EPOCH)).collect()
    }

    /// The tfdt of the traf of MP4 track `track_id` in a part.
    fn tfdt(part: &[u8], track_id: u32) -> Option<u64> {
        let mut at = 0;
        while let Some(i) = part[at..].windows(4).position(|w| w == b"tfhd").map(|i| i + at) {
            let id = u32::from_be_bytes(part[i + 8..i + 12].try_into().ok()?);
            let t = part[i..].windows(4).position(|w| w == b"tfdt")? + i;
            if id == track_id {
                return Some(if part[t + 4] == 1 {
                    u64::from_be_bytes(part[t + 8..t + 16].try_into().ok()?)
                } else {
                    u64::from(u32::from_be_bytes(part[t + 8..t + 12].try_into().ok()?))
                });
            }
            at = t;
        }
        None
    }

    #[test]
    fn segments_start_on_keyframes_parts_fit_the_target_and_time_runs_on() {
        let video = Arc::clone(&clip().track);
        let (mut m, first) = Muxer::new(Settings::default(), &[Arc::clone(&video), aac_track()]).expect("muxer");
        let Some(Event::Map(map)) = first.first() else { panic!("a map first: {first:?}") };
        assert!(map.codecs.starts_with("avc1.") && map.codecs.ends_with(",mp4a.40.2"), "{}", map.codecs);
        assert!(map.resolution.is_some());
        let events = run(&mut m, &av(5, &video));
        let (mut segments, mut part_seconds, mut last_video_tfdt) = (Vec::new(), 0.0, None::<(u64, f64)>);
        for e in &events {
            match e {
                Event::SegmentStart { msn, map, discontinuity, .. } => {
                    assert_eq!((*msn, *map, *discontinuity), (segments.len() as u64, 1, false));
                    segments.push(Vec::new());
                }
                Event::Part { msn, index, part } => {
                    let open = segments.len() - 1;
                    let parts = segments.last_mut().expect("a part inside a segment");
                    assert_eq!((*msn as usize, *index as usize), (open, parts.len()));
                    assert!(part.duration <= 0.2 + 1e-9 && part.duration > 0.1, "part of {} s", part.duration);
                    assert_eq!(part.independent, parts.is_empty(), "only a segment's first part starts on a keyframe");
                    assert_eq!(&part.bytes[4..8], b"moof");
                    let t = tfdt(&part.bytes, 1).expect("a video traf");
                    if let Some((prev, d)) = last_video_tfdt {
                        assert_eq!(t, prev + (d * 90_000.0).round() as u64, "decode times run on across parts");
                    }
                    last_video_tfdt = Some((t, part.duration));
                    assert!(tfdt(&part.bytes, 2).is_some(), "audio in every part");
                    part_seconds += part.duration;
                    parts.push(part.duration);
                }
                Event::SegmentEnd { msn } => assert_eq!(*msn as usize, segments.len() - 1),
                Event::Map(_) => panic!("one map"),
            }
        }
        // Five seconds with a keyframe every second: four complete segments of one second, five parts each.
        assert_eq!(segments.len(), 5);
        for parts in &segments[..4] {
            assert_eq!(parts.len(), 5);
            assert!((parts.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        }
        assert!(part_seconds > 4.0);
        let ends = events.iter().filter(|e| matches!(e, Event::SegmentEnd { .. })).count();
        assert_eq!(ends, 4, "the fifth segment is open");
        assert!(matches!(m.finish().last(), Some(Event::SegmentEnd { msn: 4 })));
    }

    #[test]
    fn new_parameters_start_a_new_map_and_a_discontinuity() {
        let video = Arc::clone(&clip().track);
        let (mut m, _) = Muxer::new(Settings::default(), std::slice::from_ref(&video)).expect("muxer");
        let first: Vec<Frame> = av(2, &video).into_iter().filter(|f| f.track.codec.is_video()).collect();
        assert!(!run(&mut m, &first).iter().any(|e| matches!(e, Event::Map(_))));
        let CodecParams::H264 { sps, pps } = &video.params else { panic!("H.264") };
        let mut pps2 = pps.to_vec();
        pps2.push(0x80);
        let changed = Arc::new(Track {
            params: CodecParams::H264 { sps: sps.clone(), pps: Bytes::from(pps2) },
            ..(*video).clone()
        });
        let later: Vec<Frame> =
            av(4, &changed).into_iter().filter(|f| f.dts >= 2 * 90_000 && f.track.codec.is_video()).collect();
        let events = run(&mut m, &later);
        // The open segment's last part and its end, then the new map and a segment that starts on it.
        let end = events.iter().position(|e| matches!(e, Event::SegmentEnd { msn: 1 })).expect("segment 1 ends");
        assert!(matches!(&events[end - 1], Event::Part { msn: 1, .. }), "{:?}", &events[..end]);
        assert!(matches!(&events[end + 1], Event::Map(map) if map.id == 2), "{:?}", &events[end..end + 3]);
        assert!(matches!(&events[end + 2], Event::SegmentStart { msn: 2, map: 2, discontinuity: true, .. }));
        assert!(
            events.iter().filter(|e| matches!(e, Event::SegmentStart { discontinuity: true, .. })).count() == 1,
            "only the first segment after the change"
        );
        // The same parameters in a new track version change nothing.
        let same = Arc::new((*changed).clone());
        let more: Vec<Frame> =
            av(5, &same).into_iter().filter(|f| f.dts >= 4 * 90_000 && f.track.codec.is_video()).collect();
        assert!(!run(&mut m, &more).iter().any(|e| matches!(e, Event::Map(_))));
    }

    fn video_only(seconds: u32, video: &Arc<Track>) -> Vec<Frame> {
        av(seconds, video).into_iter().filter(|f| f.track.codec.is_video()).collect()
    }

    #[test]
    fn late_frames_gaps_and_stalls_keep_segments_whole_and_bounded() {
        let video = Arc::clone(&clip().track);
        let (mut m, _) = Muxer::new(Settings::default(), std::slice::from_ref(&video)).expect("muxer");
        assert!(m.wants_keyframe(), "no segment yet: ask the source for a keyframe");
        let frames = video_only(3, &video);
        run(&mut m, &frames);
        assert!(!m.wants_keyframe(), "the open segment is younger than a segment");
        // A keyframe that comes again (a replay, a late duplicate) changes nothing.
        assert!(m.push(&frames[30], SystemTime::UNIX_EPOCH).is_empty());

        // The source pauses 5 s: the segment ends, and the next starts at the next keyframe behind a discontinuity.
        let later: Vec<Frame> = video_only(10, &video).into_iter().filter(|f| f.dts >= 8 * 90_000).collect();
        let events = run(&mut m, &later);
        let start = events.iter().position(|e| matches!(e, Event::SegmentStart { .. })).expect("a new segment");
        assert!(matches!(events[start - 1], Event::SegmentEnd { msn: 2 }), "{:?}", &events[..start]);
        assert!(matches!(events[start], Event::SegmentStart { msn: 3, discontinuity: true, .. }));

        // Keyframes stop (a WebRTC publisher nobody asked): the segment ends after three segment durations and the
        // output waits for a keyframe, asking for one, rather than growing a segment without end.
        let clip_frames = &clip().frames;
        let no_keys: Vec<Frame> =
            (300..600).map(|n| frame(&video, n * 3000, false, clip_frames[(n % 30 + 1) as usize].0.clone())).collect();
        let events = run(&mut m, &no_keys);
        assert!(m.wants_keyframe());
        let parts = events.iter().filter(|e| matches!(e, Event::Part { .. })).count();
        assert!(parts <= 16, "{parts} parts without a keyframe");
        assert!(matches!(events.last(), Some(Event::SegmentEnd { .. })));
    }

    #[test]
    fn stalled_video_lets_audio_cut_parts_of_the_part_duration() {
        let video = Arc::clone(&clip().track);
        let (mut m, _) = Muxer::new(Settings::default(), &[Arc::clone(&video), aac_track()]).expect("muxer");
        let frames = av(2, &video);
        run(&mut m, &frames);
        // Audio alone for two seconds.
        let audio = aac_track();
        let start = frames.iter().filter(|f| !f.track.codec.is_video()).count() as i64;
        let alone: Vec<Frame> =
            (start..start + 94).map(|i| frame(&audio, i * 1024, true, Bytes::from_static(&[1, 2, 3]))).collect();
        let events = run(&mut m, &alone);
        let parts: Vec<&Part> =
            events.iter().filter_map(|e| if let Event::Part { part, .. } = e { Some(part) } else { None }).collect();
        assert!(parts.len() >= 8, "{} parts", parts.len());
        // The part the video stalled in runs on until the audio is half a part ahead; then parts of the part
        // duration, give or take one audio frame (21 ms), rather than parts of several.
        assert!(parts[0].duration < 0.3, "{parts:?}");
        assert!(parts[1..].iter().all(|p| p.duration <= 0.2 + 0.022), "{parts:?}");
    }

    #[test]
    fn a_publisher_back_with_other_track_ids_takes_over_once_the_old_tracks_are_silent() {
        let video = Arc::clone(&clip().track);
        let (mut m, _) = Muxer::new(Settings::default(), std::slice::from_ref(&video)).expect("muxer");
        run(&mut m, &video_only(2, &video));
        let renumbered = Arc::new(Track { id: crate::media::TrackId(7), ..(*video).clone() });
        let mut late = frame(&renumbered, 3 * 90_000, true, clip().frames[0].0.clone());
        // While the old track flows, the new one is a second video track and is left out.
        assert!(run(&mut m, std::slice::from_ref(&late)).is_empty());
        late.received += STALE + Duration::from_millis(1);
        let events = run(&mut m, std::slice::from_ref(&late));
        assert!(events.iter().any(|e| matches!(e, Event::Map(map) if map.id == 2)), "{events:?}");
    }

    #[test]
    fn routes_without_a_playable_track_are_refused_and_extra_tracks_ignored() {
        let pcmu = Arc::new(Track {
            id: TrackId(3),
            codec: Codec::Pcmu,
            clock_rate: 8000,
            params: CodecParams::None,
            description: String::new(),
        });
        assert_eq!(Muxer::new(Settings::default(), std::slice::from_ref(&pcmu)).err(), Some(NOTHING_PLAYABLE));
        // An audio-only AAC route: segments start anywhere, every part is independent.
        let (mut m, _) = Muxer::new(Settings::default(), &[aac_track(), Arc::clone(&pcmu)]).expect("muxer");
        let audio = aac_track();
        let mut frames: Vec<Frame> =
            (0..200).map(|i| frame(&audio, i * 1024, true, Bytes::from_static(&[1, 2, 3]))).collect();
        frames.insert(5, frame(&pcmu, 0, true, Bytes::from_static(&[0; 160])));
        let events = run(&mut m, &frames);
        let parts: Vec<&Part> =
            events.iter().filter_map(|e| if let Event::Part { part, .. } = e { Some(part) } else { None }).collect();
        assert!(parts.len() > 10 && parts.iter().all(|p| p.independent && p.duration <= 0.2));
        assert!(events.iter().filter(|e| matches!(e, Event::SegmentEnd { .. })).count() >= 3);
    }
}
