//! What one route's HLS muxer has made and its viewers read: init segments, the last segments and their parts,
//! kept in memory. [`Media::apply`] takes the muxer's [`Event`]s; the HTTP side asks for playlists and files.
//! No IO: the driver (`super::stream`) owns it behind a lock and wakes waiting requests after each change.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::muxer::{Event, Map, Part, Settings};

/// Complete segments whose parts are still listed (and served) besides the open one: a player joining at the live
/// edge finds parts of the last few segments (RFC 8216bis 6.2.2: parts older than three target durations may go).
const SEGMENTS_WITH_PARTS: usize = 3;

#[derive(Debug)]
pub struct Segment {
    pub msn: u64,
    pub map: u32,
    pub discontinuity: bool,
    pub date: SystemTime,
    /// Emptied once the segment is older than [`SEGMENTS_WITH_PARTS`].
    pub parts: Vec<Part>,
    /// How many parts it had (its parts may have been dropped since).
    pub part_count: u32,
    /// Seconds, the sum of its parts'.
    pub duration: f64,
    /// The whole segment, once complete.
    pub bytes: Option<Bytes>,
}

/// A file a viewer asked for, as the store can answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Ready(Bytes),
    /// Not made yet, but the next part or so: worth waiting for (a preload hint, a blocking part request).
    Soon,
    /// Too old, or too far ahead.
    Gone,
}

/// How a playlist is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// With parts, preload hints and server control (LL-HLS).
    LowLatency,
    /// Complete segments only, for players that predate LL-HLS.
    Plain,
}

#[derive(Debug)]
pub struct Media {
    settings: Settings,
    maps: Vec<Arc<Map>>,
    segments: VecDeque<Segment>,
    /// Discontinuity tags dropped off the front (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    /// Whole seconds; grows when a segment lasts longer (a camera's GOP longer than the segment duration).
    target_duration: u64,
    /// The route ended or the muxer stopped: the playlist is final.
    pub ended: bool,
}

impl Media {
    pub fn new(settings: Settings) -> Media {
        Media {
            settings,
            maps: Vec::new(),
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            target_duration: settings.segment.as_secs_f64().ceil().max(1.0) as u64,
            ended: false,
        }
    }

    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Map(map) => self.maps.push(map),
            Event::SegmentStart { msn, map, discontinuity, date } => self.segments.push_back(Segment {
                msn,
                map,
                discontinuity,
                date,
                parts: Vec::new(),
                part_count: 0,
                duration: 0.0,
                bytes: None,
            }),
            Event::Part { msn, part, .. } => {
                if let Some(s) = self.segments.back_mut().filter(|s| s.msn == msn) {
                    s.duration += part.duration;
                    s.part_count += 1;
                    s.parts.push(part);
                }
            }
            Event::SegmentEnd { msn } => {
                if let Some(s) = self.segments.back_mut().filter(|s| s.msn == msn) {
                    let mut whole = BytesMut::with_capacity(s.parts.iter().map(|p| p.bytes.len()).sum());
                    for p in &s.parts {
                        whole.extend_from_slice(&p.bytes);
                    }
                    s.bytes = Some(whole.freeze());
                    // EXTINF rounded to the nearest second must not exceed the target duration.
                    self.target_duration = self.target_duration.max(s.duration.round() as u64);
                }
                self.prune();
            }
        }
    }

    fn prune(&mut self) {
        let complete = |m: &Media| m.segments.iter().filter(|s| s.bytes.is_some()).count();
        while complete(self) > self.settings.segments.max(1) {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
        for s in self.segments.iter_mut().rev().filter(|s| s.bytes.is_some()).skip(SEGMENTS_WITH_PARTS) {
            s.parts = Vec::new();
        }
        let newest = self.maps.last().map(|m| m.id);
        let segments = &self.segments;
        self.maps.retain(|m| Some(m.id) == newest || segments.iter().any(|s| s.map == m.id));
    }

    /// How long a blocking request is held at most: three target durations (RFC 8216bis 6.2.5.2).
    pub fn hold_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.target_duration * 3)
    }

    /// A playlist can be given out: two segments are complete. With one, hls.js starting at a cold muxer loads the
    /// first segment's parts over and over until the second completes (seen with hls.js 1.7).
    pub fn ready(&self) -> bool {
        self.segments.iter().filter(|s| s.bytes.is_some()).count() >= 2
    }

    /// The newest map, for the multivariant playlist.
    pub fn current_map(&self) -> Option<&Arc<Map>> {
        self.maps.last()
    }

    /// The media sequence number of the newest segment, complete or not.
    pub fn last_msn(&self) -> Option<u64> {
        self.segments.back().map(|s| s.msn)
    }

    /// Whether the playlist shows segment `msn` complete, or (with `part`) that part of it: what a blocking
    /// playlist request (`_HLS_msn`, `_HLS_part`) waits for. A later segment answers any earlier request.
    pub fn has(&self, msn: u64, part: Option<u32>) -> bool {
        let Some(last) = self.segments.back() else { return self.ended };
        if self.ended {
            return true;
        }
        if last.msn > msn {
            // A part index past the end of a complete segment names the next segment's first part (RFC 8216bis
            // 6.2.5.2): wait for that one.
            let past_end = |s: &Segment| part.is_some_and(|p| p >= s.part_count) && s.bytes.is_some();
            return match self.segments.iter().find(|s| s.msn == msn) {
                Some(s) if past_end(s) => {
                    self.segments.iter().any(|n| n.msn > msn && (n.part_count > 0 || n.msn > msn + 1))
                }
                _ => true,
            };
        }
        if last.msn < msn {
            return false;
        }
        match part {
            _ if last.bytes.is_some() => true,
            Some(p) => last.part_count > p,
            None => false,
        }
    }

    pub fn map(&self, id: u32) -> Lookup {
        match self.maps.iter().find(|m| m.id == id) {
            Some(m) => Lookup::Ready(m.init.clone()),
            None => Lookup::Gone,
        }
    }

    pub fn segment(&self, msn: u64) -> Lookup {
        match self.segments.iter().find(|s| s.msn == msn) {
            Some(Segment { bytes: Some(b), .. }) => Lookup::Ready(b.clone()),
            Some(_) => Lookup::Soon,
            None if !self.ended && self.last_msn().is_some_and(|last| msn == last + 1) => Lookup::Soon,
            None => Lookup::Gone,
        }
    }

    pub fn part(&self, msn: u64, index: u32) -> Lookup {
        let last = self.segments.back();
        match self.segments.iter().find(|s| s.msn == msn) {
            Some(s) => match s.parts.get(index as usize) {
                Some(p) => Lookup::Ready(p.bytes.clone()),
                // The hinted part of the open segment, or a little beyond.
                None if s.bytes.is_none() && !self.ended && index <= s.part_count + 1 => Lookup::Soon,
                None => Lookup::Gone,
            },
            // The first parts of the next segment (the hint when the last one just completed).
            None if !self.ended && last.is_some_and(|l| msn == l.msn + 1) && index <= 1 => Lookup::Soon,
            None => Lookup::Gone,
        }
    }

    /// The media playlist. `query` is appended to every URI in it (the viewer's session).
    pub fn playlist(&self, flavor: Flavor, query: &str) -> String {
        let ll = flavor == Flavor::LowLatency;
        // A segment shows once it has a part (LL) or is complete (plain).
        let listed: Vec<&Segment> =
            self.segments.iter().filter(|s| s.bytes.is_some() || (ll && !s.parts.is_empty())).collect();
        let mut out = String::with_capacity(512 + listed.len() * 160);
        let part = self.settings.part.as_secs_f64();
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{}", if ll { 9 } else { 6 });
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        if ll {
            // PART-HOLD-BACK: at least twice the part target; three, as Apple recommends, keeps a player from stalling.
            let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", part * 3.0);
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part:.3}");
        }
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", listed.first().map_or(0, |s| s.msn));
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut map = None;
        for s in &listed {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(s.map) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"init{}.mp4{query}\"", s.map);
                map = Some(s.map);
            }
            let ms = s.date.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::media::wallclock::format_time(ms));
            if ll {
                for (i, p) in s.parts.iter().enumerate() {
                    let independent = if p.independent { ",INDEPENDENT=YES" } else { "" };
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={:.5},URI=\"part{}.{i}.mp4{query}\"{independent}",
                        p.duration, s.msn
                    );
                }
            }
            if s.bytes.is_some() {
                let _ = writeln!(out, "#EXTINF:{:.5},\nseg{}.mp4{query}", s.duration, s.msn);
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if ll && let Some(last) = self.segments.back() {
            let (msn, index) = if last.bytes.is_some() { (last.msn + 1, 0) } else { (last.msn, last.part_count) };
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{msn}.{index}.mp4{query}\"");
        }
        out
    }

    /// The multivariant playlist: one variant, `uri`, with the stream's codecs, resolution and a bandwidth.
    pub fn multivariant(&self, uri: &str) -> String {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let map = self.current_map();
        // The peak bit rate of the segments at hand (players pick variants by it; there is one).
        let bandwidth = self
            .segments
            .iter()
            .filter_map(|s| s.bytes.as_ref().map(|b| b.len() as f64 * 8.0 / s.duration.max(0.001)))
            .fold(0.0, f64::max)
            .max(100_000.0) as u64;
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}");
        if let Some(map) = map {
            let _ = write!(out, ",CODECS=\"{}\"", map.codecs);
            if let Some((w, h)) = map.resolution {
                let _ = write!(out, ",RESOLUTION={w}x{h}");
            }
        }
        let _ = writeln!(out, "\n{uri}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::hls::muxer::Muxer;
    use crate::egress::hls::muxer::tests::{aac_track, av, run};

    /// A store fed `seconds` of the demo clip with AAC, and the events that made it.
    fn fed(seconds: u32) -> (Media, Vec<Event>) {
        let video = std::sync::Arc::clone(&crate::egress::hls::muxer::tests::clip().track);
        let (mut muxer, mut events) =
            Muxer::new(Settings::default(), &[std::sync::Arc::clone(&video), aac_track()]).expect("muxer");
        events.extend(run(&mut muxer, &av(seconds, &video)));
        let mut media = Media::new(Settings::default());
        for e in events.clone() {
            media.apply(e);
        }
        (media, events)
    }

    fn lines<'a>(playlist: &'a str, tag: &str) -> Vec<&'a str> {
        playlist.lines().filter(|l| l.starts_with(tag)).collect()
    }

    #[test]
    fn the_low_latency_playlist_lists_parts_a_hint_and_complete_segments() {
        assert!(!fed(2).0.ready(), "one complete segment is not enough to start hls.js well");
        let (media, _) = fed(4);
        assert!(media.ready());
        let p = media.playlist(Flavor::LowLatency, "?session=s");
        assert!(p.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n"), "{p}");
        assert_eq!(
            lines(&p, "#EXT-X-SERVER-CONTROL"),
            ["#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600"]
        );
        assert_eq!(lines(&p, "#EXT-X-PART-INF"), ["#EXT-X-PART-INF:PART-TARGET=0.200"]);
        assert_eq!(lines(&p, "#EXT-X-MAP"), ["#EXT-X-MAP:URI=\"init1.mp4?session=s\""]);
        // Three complete segments (0, 1, 2) and the open one (3), whose parts so far are listed.
        assert_eq!(lines(&p, "seg"), ["seg0.mp4?session=s", "seg1.mp4?session=s", "seg2.mp4?session=s"]);
        assert_eq!(lines(&p, "#EXTINF"), ["#EXTINF:1.00000,"; 3]);
        let parts = lines(&p, "#EXT-X-PART:");
        assert_eq!(parts.iter().filter(|l| l.contains("INDEPENDENT=YES")).count(), 4, "one per segment");
        assert!(parts.iter().all(|l| l.starts_with("#EXT-X-PART:DURATION=0.20000,URI=\"part")));
        let open = media.segments.back().expect("open");
        assert_eq!(
            lines(&p, "#EXT-X-PRELOAD-HINT"),
            [format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part3.{}.mp4?session=s\"", open.part_count)]
        );
        assert_eq!(lines(&p, "#EXT-X-PROGRAM-DATE-TIME").len(), 4);
        // Every URI it names is there.
        assert!(matches!(media.map(1), Lookup::Ready(b) if &b[4..8] == b"ftyp"));
        for msn in 0..3 {
            assert!(matches!(media.segment(msn), Lookup::Ready(b) if &b[4..8] == b"moof"));
        }
        assert!(matches!(media.part(3, 0), Lookup::Ready(_)));
        // The hinted part and the next segment are on their way; older or further ones are not.
        assert_eq!(media.part(3, open.part_count), Lookup::Soon);
        assert_eq!(media.segment(3), Lookup::Soon);
        assert_eq!(media.segment(4), Lookup::Soon);
        assert_eq!(media.segment(9), Lookup::Gone);
        assert_eq!(media.part(5, 0), Lookup::Gone);

        let plain = media.playlist(Flavor::Plain, "");
        assert!(plain.contains("#EXT-X-VERSION:6\n") && plain.contains("seg2.mp4\n"));
        for ll in ["#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-SERVER-CONTROL", "part3."] {
            assert!(!plain.contains(ll), "{ll} in {plain}");
        }
        let mv = media.multivariant("stream.m3u8?session=s");
        assert!(mv.contains(",CODECS=\"avc1.42c01f,mp4a.40.2\",RESOLUTION=640x360\nstream.m3u8?session=s\n"), "{mv}");
    }

    #[test]
    fn blocking_requests_are_answered_by_the_part_or_anything_later() {
        let (media, _) = fed(3);
        let open = media.segments.back().expect("open");
        let (msn, parts) = (open.msn, open.part_count);
        assert!(media.has(msn - 1, None) && media.has(msn - 1, Some(4)), "a complete segment answers its parts");
        // Past its last part: the next segment's first part, made already here.
        assert!(media.has(msn - 1, Some(5)) == (parts > 0));
        assert!(media.has(msn, Some(parts - 1)));
        assert!(!media.has(msn, Some(parts)), "the hinted part is not made yet");
        assert!(!media.has(msn, None), "nor the open segment complete");
        assert!(!media.has(msn + 1, Some(0)));
        assert_eq!(media.hold_limit(), std::time::Duration::from_secs(3));
    }

    #[test]
    fn old_segments_go_and_their_parts_before_them() {
        let (media, events) = fed(20);
        let starts = events.iter().filter(|e| matches!(e, Event::SegmentStart { .. })).count() as u64;
        let p = media.playlist(Flavor::LowLatency, "");
        // Seven complete segments and the open one.
        assert_eq!(lines(&p, "#EXTINF").len(), 7);
        assert_eq!(lines(&p, "#EXT-X-MEDIA-SEQUENCE"), [format!("#EXT-X-MEDIA-SEQUENCE:{}", starts - 8)]);
        // Parts only for the newest segments: three complete ones and the open one.
        let with_parts: std::collections::BTreeSet<&str> =
            lines(&p, "#EXT-X-PART:").iter().filter_map(|l| l.split("URI=\"part").nth(1)?.split('.').next()).collect();
        assert_eq!(with_parts.len(), 4, "{with_parts:?}");
        assert_eq!(media.segment(starts - 9), Lookup::Gone);
        assert_eq!(media.part(starts - 6, 0), Lookup::Gone, "its parts are gone, the segment stays");
        assert!(matches!(media.segment(starts - 6), Lookup::Ready(_)));
    }
}
