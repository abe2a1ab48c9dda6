//! RTP payloads back into access units, for publishers that send RTP (RTSP RECORD): RFC 6184 (H.264: single NAL
//! units, STAP-A, FU-A), RFC 7798 (H.265: single, AP, FU), RFC 3640 (AAC in `mpeg4-generic`, any header bit
//! widths, several or fragmented units per packet); Opus, G.711 and VP8-less "whole frame" payloads as they are.
//!
//! A state machine fed one packet at a time ([`Depacketizer::push`]), pure: no clocks, no IO. A lost packet
//! (a gap in sequence numbers) discards the access unit it fell in, and video then waits for the next keyframe:
//! a picture that references one never delivered would only decode into garbage. RTP's 32-bit timestamps come
//! out extended to 64 bits, so a long session never wraps.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::h264::{NAL_IDR, nal_type as h264_nal_type};
use crate::{Codec, h265};

/// An access unit larger than this is refused (a 4K keyframe is a few MB): a sender cannot make us buffer more.
pub const MAX_UNIT: usize = 16 * 1024 * 1024;
/// NAL units per access unit at most.
const MAX_NALS: usize = 1024;

/// One access unit out of the depacketizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The RTP timestamp, extended past 32 bits (the first packet's value as it came).
    pub timestamp: i64,
    /// A video picture's NAL units (without start codes), or one audio frame as the only element.
    pub parts: Vec<Bytes>,
    /// A picture a decoder can start from (IDR / IRAP); always true for audio.
    pub keyframe: bool,
    /// The first unit after the sender's numbering jumped (it restarted): its timestamps start afresh, and the
    /// receiver should place them after what came before.
    pub restarted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepacketizeError {
    #[error("malformed {codec} payload: {what}")]
    Malformed { codec: Codec, what: &'static str },
    #[error("an access unit over {} MB", MAX_UNIT / 1024 / 1024)]
    TooLarge,
}

/// How AAC access units are framed in `mpeg4-generic` payloads, from the SDP's `fmtp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacFraming {
    pub size_length: u32,
    pub index_length: u32,
    pub index_delta_length: u32,
    /// Samples per access unit (1024 for AAC-LC; `constantDuration` when given).
    pub frame_length: u32,
}

impl AacFraming {
    /// From `fmtp` parameters (`mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3`); the defaults are
    /// AAC-hbr's. A size length of 0 (no AU headers) or over 16 bits is refused.
    pub fn from_fmtp(fmtp: &str) -> Result<AacFraming, String> {
        let mut f = AacFraming { size_length: 13, index_length: 3, index_delta_length: 3, frame_length: 1024 };
        let mut lbr = false;
        for (key, value) in fmtp.split(';').filter_map(|p| p.trim().split_once('=')) {
            let number = || value.trim().parse::<u32>().map_err(|_| format!("fmtp `{key}={value}` is not a number"));
            match key.trim().to_ascii_lowercase().as_str() {
                "sizelength" => f.size_length = number()?,
                "indexlength" => f.index_length = number()?,
                "indexdeltalength" => f.index_delta_length = number()?,
                "constantduration" => f.frame_length = number()?,
                "mode" => lbr = value.trim().eq_ignore_ascii_case("aac-lbr"),
                _ => {}
            }
        }
        if lbr && !fmtp.to_ascii_lowercase().contains("sizelength") {
            f = AacFraming { size_length: 6, index_length: 2, index_delta_length: 2, ..f };
        }
        if !(1..=16).contains(&f.size_length) || f.index_length > 8 || f.index_delta_length > 8 {
            return Err(format!("AAC headers of {} size bits are not supported", f.size_length));
        }
        if f.frame_length == 0 || f.frame_length > 8192 {
            return Err("constantDuration out of range".into());
        }
        Ok(f)
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    H264,
    H265,
    Aac(AacFraming),
    /// One frame per packet (Opus, G.711).
    Whole,
}

/// Extends 32-bit RTP timestamps: each one is taken as the nearest value to the one before.
#[derive(Debug, Default, Clone, Copy)]
struct Extender {
    last: Option<(u32, i64)>,
}

impl Extender {
    fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(ts),
            Some((raw, ext)) => ext + i64::from(ts.wrapping_sub(raw) as i32),
        };
        self.last = Some((ts, ext));
        ext
    }
}

/// The access unit being assembled.
#[derive(Debug, Default)]
struct Assembly {
    timestamp: Option<i64>,
    nals: Vec<Bytes>,
    size: usize,
    /// A fragmented NAL unit (FU-A / FU) in progress.
    fragment: Option<BytesMut>,
    /// A packet of this unit was lost or malformed: it is discarded when it ends.
    damaged: bool,
}

/// One RTP stream's depacketizer.
#[derive(Debug)]
pub struct Depacketizer {
    codec: Codec,
    format: Format,
    extender: Extender,
    last_seq: Option<u16>,
    unit: Assembly,
    /// Video after a loss: nothing out until a keyframe.
    wait_keyframe: bool,
    /// An AAC unit split over packets.
    aac_fragment: Option<(i64, usize, BytesMut)>,
    ready: VecDeque<Unit>,
    lost: u64,
    /// The last packet taken as a jump: one more in sequence after it restarts the stream there.
    probation: Option<u16>,
    /// The next unit out is the first after a restart.
    restarted: bool,
}

impl Depacketizer {
    /// A depacketizer for `codec`, with the SDP's `fmtp` parameters (AAC needs them).
    pub fn new(codec: Codec, fmtp: Option<&str>) -> Result<Depacketizer, String> {
        let format = match codec {
            Codec::H264 => Format::H264,
            Codec::H265 => Format::H265,
            Codec::Aac => Format::Aac(AacFraming::from_fmtp(fmtp.unwrap_or_default())?),
            Codec::Opus | Codec::Pcmu | Codec::Pcma => Format::Whole,
            Codec::Vp8 => return Err("VP8 over RTSP is not supported".into()),
        };
        Ok(Depacketizer {
            codec,
            format,
            extender: Extender::default(),
            last_seq: None,
            unit: Assembly::default(),
            wait_keyframe: codec.is_video(),
            aac_fragment: None,
            ready: VecDeque::new(),
            lost: 0,
            probation: None,
            restarted: false,
        })
    }

    /// Packets lost so far (gaps in sequence numbers).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// A finished access unit, if one is ready; call until `None` after each [`push`](Self::push).
    pub fn pull(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    /// Feeds one packet. An error discards what the packet belonged to; the stream goes on with the next packet.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: Bytes) -> Result<(), DepacketizeError> {
        if let Some(last) = self.last_seq {
            let gap = seq.wrapping_sub(last);
            // RFC 3550 A.1: up to 100 behind is a duplicate or a late packet (already counted as lost); more than
            // 100 behind or 3,000 ahead is a jump, believed once a second packet follows it in order (the
            // sender restarted its numbering).
            let late = gap == 0 || (gap > 0x8000 && gap.wrapping_neg() <= 100);
            let jump = !late && gap > 3000;
            if late {
                return Ok(());
            }
            if jump {
                let follows = self.probation.is_some_and(|p| seq == p.wrapping_add(1));
                self.probation = Some(seq);
                if !follows {
                    return Ok(());
                }
                self.restart();
            }
        }
        self.probation = None;
        let timestamp = self.extender.extend(timestamp);
        if let Some(last) = self.last_seq {
            let gap = seq.wrapping_sub(last);
            if gap > 1 {
                self.lost += u64::from(gap - 1);
                self.unit.damaged = true;
                self.aac_fragment = None;
                if self.codec.is_video() {
                    self.wait_keyframe = true;
                }
            }
        }
        self.last_seq = Some(seq);
        match self.format {
            Format::Whole => {
                if !payload.is_empty() {
                    self.emit(timestamp, vec![payload], true);
                }
                Ok(())
            }
            Format::Aac(framing) => self.push_aac(framing, timestamp, payload),
            Format::H264 | Format::H265 => {
                if self.unit.timestamp.is_some_and(|t| t != timestamp) {
                    // The previous picture's last packet (with the marker) was lost.
                    self.finish_unit();
                }
                self.unit.timestamp = Some(timestamp);
                let pushed = match self.format {
                    Format::H264 => self.push_h264(payload),
                    _ => self.push_h265(payload),
                };
                if pushed.is_err() {
                    self.unit.damaged = true;
                }
                if marker {
                    self.finish_unit();
                }
                pushed
            }
        }
    }

    /// Starts over after the sender's numbering jumped: what was being assembled is dropped, the timestamps
    /// are taken afresh, and video waits for a keyframe.
    fn restart(&mut self) {
        self.last_seq = None;
        self.extender = Extender::default();
        self.restarted = true;
        self.unit = Assembly::default();
        self.aac_fragment = None;
        self.wait_keyframe = self.codec.is_video();
    }

    fn emit(&mut self, timestamp: i64, parts: Vec<Bytes>, keyframe: bool) {
        let restarted = std::mem::take(&mut self.restarted);
        self.ready.push_back(Unit { timestamp, parts, keyframe, restarted });
    }

    fn malformed(&self, what: &'static str) -> DepacketizeError {
        DepacketizeError::Malformed { codec: self.codec, what }
    }

    fn add_nal(&mut self, nal: Bytes) -> Result<(), DepacketizeError> {
        if nal.is_empty() {
            return Ok(());
        }
        self.unit.size += nal.len();
        if self.unit.size > MAX_UNIT {
            return Err(DepacketizeError::TooLarge);
        }
        if self.unit.nals.len() >= MAX_NALS {
            return Err(self.malformed("too many NAL units in one picture"));
        }
        self.unit.nals.push(nal);
        Ok(())
    }

    /// Adds a fragment's bytes; `start` begins a NAL unit with `header`, `end` completes it.
    fn add_fragment(&mut self, header: &[u8], body: &[u8], start: bool, end: bool) -> Result<(), DepacketizeError> {
        if start {
            if self.unit.fragment.is_some() {
                // A start without the previous fragment's end: that NAL unit is incomplete.
                self.unit.damaged = true;
            }
            let mut buf = BytesMut::with_capacity(header.len() + body.len() * 4);
            buf.extend_from_slice(header);
            self.unit.fragment = Some(buf);
        }
        let Some(buf) = self.unit.fragment.as_mut() else {
            // The fragment's start was lost (or never sent).
            self.unit.damaged = true;
            return Ok(());
        };
        if self.unit.size + buf.len() + body.len() > MAX_UNIT {
            self.unit.fragment = None;
            return Err(DepacketizeError::TooLarge);
        }
        buf.extend_from_slice(body);
        if end && let Some(nal) = self.unit.fragment.take() {
            self.add_nal(nal.freeze())?;
        }
        Ok(())
    }

    fn push_h264(&mut self, payload: Bytes) -> Result<(), DepacketizeError> {
        let Some(&first) = payload.first() else { return Err(self.malformed("an empty payload")) };
        match first & 0x1f {
            1..=23 => self.add_nal(payload),
            24 => {
                // STAP-A: 16-bit sizes, each followed by a NAL unit.
                let mut at = 1;
                while at < payload.len() {
                    let Some(size) = payload.get(at..at + 2) else { return Err(self.malformed("a cut STAP-A")) };
                    let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                    let end = at + 2 + size;
                    if end > payload.len() {
                        return Err(self.malformed("a STAP-A unit past the payload"));
                    }
                    self.add_nal(payload.slice(at + 2..end))?;
                    at = end;
                }
                Ok(())
            }
            28 => {
                let Some(&fu) = payload.get(1) else { return Err(self.malformed("a cut FU-A")) };
                let header = [(first & 0xe0) | (fu & 0x1f)];
                self.add_fragment(&header, &payload[2..], fu & 0x80 != 0, fu & 0x40 != 0)
            }
            _ => Err(self.malformed("a packet type other than single NAL unit, STAP-A and FU-A")),
        }
    }

    fn push_h265(&mut self, payload: Bytes) -> Result<(), DepacketizeError> {
        if payload.len() < 3 {
            return Err(self.malformed("a payload shorter than its header"));
        }
        match h265::nal_type(&payload) {
            h265::AP => {
                let mut at = 2;
                while at < payload.len() {
                    let Some(size) = payload.get(at..at + 2) else { return Err(self.malformed("a cut AP")) };
                    let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                    let end = at + 2 + size;
                    if end > payload.len() || size < 2 {
                        return Err(self.malformed("an AP unit past the payload"));
                    }
                    self.add_nal(payload.slice(at + 2..end))?;
                    at = end;
                }
                Ok(())
            }
            h265::FU => {
                let fu = payload[2];
                let header = [(payload[0] & 0x81) | (fu & 0x3f) << 1, payload[1]];
                self.add_fragment(&header, &payload[3..], fu & 0x80 != 0, fu & 0x40 != 0)
            }
            // PACI carries information a decoder can do without.
            50 => Ok(()),
            51..=63 => Err(self.malformed("an unknown packet type")),
            _ => self.add_nal(payload),
        }
    }

    fn finish_unit(&mut self) {
        let unit = std::mem::take(&mut self.unit);
        let Some(timestamp) = unit.timestamp else { return };
        if unit.damaged || unit.fragment.is_some() {
            self.wait_keyframe = true;
            return;
        }
        if unit.nals.is_empty() {
            return;
        }
        let keyframe = match self.format {
            Format::H264 => unit.nals.iter().any(|n| h264_nal_type(n) == NAL_IDR),
            _ => unit.nals.iter().any(|n| h265::is_irap(h265::nal_type(n))),
        };
        if self.wait_keyframe && !keyframe {
            return;
        }
        self.wait_keyframe = false;
        self.emit(timestamp, unit.nals, keyframe);
    }

    fn push_aac(&mut self, f: AacFraming, timestamp: i64, payload: Bytes) -> Result<(), DepacketizeError> {
        let Some(header_bits) = payload.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return Err(self.malformed("no AU-headers-length"));
        };
        let header_bytes = header_bits.div_ceil(8);
        let Some(headers) = payload.get(2..2 + header_bytes) else {
            return Err(self.malformed("AU headers past the payload"));
        };
        let mut bits = BitReader { data: headers, at: 0, end: header_bits };
        let mut sizes = Vec::new();
        while bits.remaining() > 0 {
            let index_bits = if sizes.is_empty() { f.index_length } else { f.index_delta_length };
            let (Some(size), Some(_)) = (bits.read(f.size_length), bits.read(index_bits)) else {
                return Err(self.malformed("a cut AU header"));
            };
            sizes.push(size as usize);
            if sizes.len() > 64 {
                return Err(self.malformed("more than 64 access units in one packet"));
            }
        }
        let data = payload.slice(2 + header_bytes..);
        // A fragment of a unit split over packets: one header, the whole unit's size, less data than that.
        if let [size] = sizes[..]
            && size > data.len()
        {
            let (ts, want, mut buf) = match self.aac_fragment.take() {
                Some((ts, want, buf)) if ts == timestamp && want == size => (ts, want, buf),
                _ => (timestamp, size, BytesMut::with_capacity(size)),
            };
            buf.extend_from_slice(&data);
            if buf.len() > want {
                return Err(self.malformed("fragments longer than their unit"));
            }
            if buf.len() == want {
                self.emit(ts, vec![buf.freeze()], true);
            } else {
                self.aac_fragment = Some((ts, want, buf));
            }
            return Ok(());
        }
        self.aac_fragment = None;
        let mut at = 0;
        for (i, size) in sizes.into_iter().enumerate() {
            if at + size > data.len() {
                return Err(self.malformed("an access unit past the payload"));
            }
            let ts = timestamp + i as i64 * i64::from(f.frame_length);
            self.emit(ts, vec![data.slice(at..at + size)], true);
            at += size;
        }
        Ok(())
    }
}

/// Big-endian bits of the AU-header section.
struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
    end: usize,
}

impl BitReader<'_> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.at)
    }

    fn read(&mut self, n: u32) -> Option<u32> {
        let n = n as usize;
        if n > self.remaining() {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v = v << 1 | u32::from(byte >> (7 - self.at % 8) & 1);
            self.at += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rtp::{RtpFrame, packetize};
    use crate::{CodecParams, Frame, Track, TrackId, h264};

    fn track(codec: Codec, params: CodecParams) -> Arc<Track> {
        let clock_rate = if codec.is_video() { 90_000 } else { 48_000 };
        Arc::new(Track { id: TrackId(0), codec, clock_rate, params, description: String::new() })
    }

    fn feed(d: &mut Depacketizer, seq: &mut u16, rtp: &RtpFrame) -> Vec<Unit> {
        for p in &rtp.payloads {
            d.push(*seq, rtp.timestamp, p.marker, Bytes::copy_from_slice(&p.data)).expect("valid");
            *seq = seq.wrapping_add(1);
        }
        std::iter::from_fn(|| d.pull()).collect()
    }

    /// The demo clip's pictures, as route frames.
    fn demo_frames() -> Vec<Frame> {
        let nals = h264::split_annex_b(include_bytes!("../../assets/demo.h264"));
        let track = track(Codec::H264, CodecParams::None);
        h264::group_access_units(&nals)
            .into_iter()
            .enumerate()
            .map(|(i, au)| {
                let keyframe = au.iter().any(|n| h264::nal_type(n) == NAL_IDR);
                let data = h264::to_avcc(au.into_iter().filter(|n| h264::nal_type(n) != h264::NAL_AUD));
                Frame::new(Arc::clone(&track), i as i64 * 3000, i as i64 * 3000, keyframe, data)
            })
            .collect()
    }

    #[test]
    fn h264_pictures_round_trip_through_our_packetizer() {
        let mut d = Depacketizer::new(Codec::H264, None).expect("h264");
        let mut seq = 65_500; // wraps inside the clip
        for frame in demo_frames().iter().take(60) {
            let units = feed(&mut d, &mut seq, &packetize(frame).expect("rtp"));
            assert_eq!(units.len(), 1);
            let expected: Vec<&[u8]> = h264::avcc_nals(&frame.data).collect();
            let got: Vec<&[u8]> = units[0].parts.iter().map(|b| &b[..]).collect();
            assert_eq!(got, expected);
            assert_eq!(units[0].keyframe, frame.keyframe);
            assert_eq!(units[0].timestamp, frame.pts);
        }
    }

    #[test]
    fn a_lost_packet_drops_its_picture_and_waits_for_a_keyframe() {
        let mut d = Depacketizer::new(Codec::H264, None).expect("h264");
        let frames = demo_frames();
        let mut seq = 0u16;
        let mut delivered = Vec::new();
        for (i, frame) in frames.iter().enumerate().take(80) {
            let rtp = packetize(frame).expect("rtp");
            for (k, p) in rtp.payloads.iter().enumerate() {
                // Frame 3's first packet is lost.
                if !(i == 3 && k == 0) {
                    d.push(seq, rtp.timestamp, p.marker, Bytes::copy_from_slice(&p.data)).expect("valid");
                }
                seq = seq.wrapping_add(1);
            }
            delivered.extend(std::iter::from_fn(|| d.pull()).map(|u| (i, u.keyframe)));
        }
        assert_eq!(d.lost(), 1);
        let next_key = frames.iter().skip(4).position(|f| f.keyframe).map(|p| p + 4).expect("a later keyframe");
        assert!(delivered.iter().take_while(|(i, _)| *i < 3).count() == 3);
        assert_eq!(delivered[3], (next_key, true), "nothing between the loss and the next keyframe");
    }

    #[test]
    fn h265_aggregates_and_fragments_round_trip() {
        let vps = Bytes::from_static(&[0x40, 0x01, 1, 2, 3]);
        let sps = Bytes::from_static(&[0x42, 0x01, 4, 5, 6]);
        let pps = Bytes::from_static(&[0x44, 0x01, 7]);
        let idr: Vec<u8> = [0x26, 0x01].into_iter().chain((0..5000).map(|i| (i % 251) as u8)).collect();
        let t = track(Codec::H265, CodecParams::H265 { vps: vps.clone(), sps: sps.clone(), pps: pps.clone() });
        let frame = Frame::new(t, 90_000, 90_000, true, h264::to_avcc([&idr[..]]));
        let rtp = packetize(&frame).expect("rtp");
        assert_eq!(h265::nal_type(&rtp.payloads[0].data), h265::AP, "parameter sets aggregated");
        assert!(rtp.payloads[1..].iter().all(|p| h265::nal_type(&p.data) == h265::FU));
        let mut d = Depacketizer::new(Codec::H265, None).expect("h265");
        let units = feed(&mut d, &mut 7, &rtp);
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        let got: Vec<&[u8]> = units[0].parts.iter().map(|b| &b[..]).collect();
        assert_eq!(got, vec![&vps[..], &sps[..], &pps[..], &idr[..]]);
    }

    #[test]
    fn aac_units_single_fragmented_and_several_per_packet() {
        let f = AacFraming::from_fmtp("streamtype=5; profile-level-id=1; mode=AAC-hbr; sizelength=13; indexlength=3; indexdeltalength=3; config=1190").expect("fmtp");
        let mut d = Depacketizer::new(Codec::Aac, Some("mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3"))
            .expect("aac");
        assert_eq!(f.size_length, 13);
        // Ours: one unit, then one over a packet.
        let t = track(Codec::Aac, CodecParams::None);
        let small = Frame::new(Arc::clone(&t), 1024, 1024, true, Bytes::from_static(&[1, 2, 3]));
        let big = Frame::new(t, 2048, 2048, true, Bytes::from(vec![9u8; 2000]));
        let mut seq = 0;
        let units = feed(&mut d, &mut seq, &packetize(&small).expect("rtp"));
        assert_eq!(units[0].parts[0], Bytes::from_static(&[1, 2, 3]));
        assert_eq!(packetize(&big).expect("rtp").payloads.len(), 2);
        let units = feed(&mut d, &mut seq, &packetize(&big).expect("rtp"));
        assert_eq!((units.len(), units[0].parts[0].len(), units[0].timestamp), (1, 2000, 2048));
        // ffmpeg's: two units in one packet, each with a 16-bit header.
        let packet = [0x00, 0x20, 0x00, 0x10, 0x00, 0x18, 0xaa, 0xaa, 0xbb, 0xbb, 0xbb];
        d.push(seq, 4096, true, Bytes::copy_from_slice(&packet)).expect("valid");
        let units: Vec<Unit> = std::iter::from_fn(|| d.pull()).collect();
        assert_eq!(units.iter().map(|u| (u.timestamp, u.parts[0].len())).collect::<Vec<_>>(), [(4096, 2), (5120, 3)]);
    }

    #[test]
    fn hostile_payloads_are_errors_not_panics() {
        let mut h264 = Depacketizer::new(Codec::H264, None).expect("h264");
        let mut h265 = Depacketizer::new(Codec::H265, None).expect("h265");
        let mut aac = Depacketizer::new(Codec::Aac, None).expect("aac");
        let cases: [&[u8]; 8] =
            [&[], &[24, 0xff, 0xff, 1], &[28], &[30, 1], &[0x60, 1, 0], &[0x62, 1], &[0xff, 0xff], &[0, 16, 0xff]];
        for (seq, case) in cases.iter().enumerate() {
            for d in [&mut h264, &mut h265, &mut aac] {
                let _ = d.push(seq as u16, 0, true, Bytes::copy_from_slice(case));
                while d.pull().is_some() {}
            }
        }
        assert!(AacFraming::from_fmtp("sizelength=40").is_err());
        assert!(AacFraming::from_fmtp("sizelength=x").is_err());
    }

    #[test]
    fn a_jump_in_sequence_numbers_resyncs_after_two_packets_in_a_row() {
        let mut d = Depacketizer::new(Codec::Opus, None).expect("opus");
        let mut got = Vec::new();
        for (seq, ts) in [(100u16, 0u32), (101, 960), (40_000, 5000), (40_001, 5960), (40_002, 6920), (39_999, 1920)] {
            d.push(seq, ts, false, Bytes::from_static(&[1])).expect("valid");
            got.extend(std::iter::from_fn(|| d.pull()).map(|u| (u.timestamp, u.restarted)));
        }
        // 40 000 alone is taken as a jump; 40 001 right after it restarts the stream; 39 999 is now a late one.
        assert_eq!(got, [(0, false), (960, false), (5960, true), (6920, false)]);
    }

    #[test]
    fn reordering_within_a_hundred_packets_is_not_a_restart() {
        let mut d = Depacketizer::new(Codec::Opus, None).expect("opus");
        let mut got = Vec::new();
        for seq in [10u16, 13, 11, 12, 14] {
            d.push(seq, u32::from(seq) * 960, false, Bytes::from_static(&[1])).expect("valid");
            got.extend(std::iter::from_fn(|| d.pull()).map(|u| (u.timestamp / 960, u.restarted)));
        }
        assert_eq!(got, [(10, false), (13, false), (14, false)], "11 and 12 came late and were dropped");
    }

    #[test]
    fn timestamps_extend_past_32_bits() {
        let mut d = Depacketizer::new(Codec::Opus, None).expect("opus");
        for (seq, ts) in [(0u16, u32::MAX - 959), (1, 0), (2, 960)] {
            d.push(seq, ts, false, Bytes::from_static(&[1])).expect("valid");
        }
        let got: Vec<i64> = std::iter::from_fn(|| d.pull()).map(|u| u.timestamp).collect();
        let first = i64::from(u32::MAX - 959);
        assert_eq!(got, [first, first + 960, first + 1920]);
    }
}
