//! H.264 helpers: Annex B splitting, access-unit grouping, SPS fields, AVCC payloads.
//!
//! Pure functions over bytes; every parser here takes untrusted input and reports problems as values.

use bytes::{BufMut, Bytes, BytesMut};

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

fn is_vcl(t: u8) -> bool {
    (1..=5).contains(&t)
}

/// Splits an Annex B byte stream (00 00 01 / 00 00 00 01 start codes) into NAL units, start codes removed.
/// Bytes before the first start code are ignored; empty NAL units are skipped.
pub fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // (start code position, payload position)
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, payload)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(stream.len(), |&(sc, _)| sc);
        // A 4-byte start code's leading zero (and trailing_zero_8bits) belongs to no NAL unit.
        while end > payload && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > payload {
            nals.push(&stream[payload..end]);
        }
    }
    nals
}

/// Groups NAL units into access units (ITU-T H.264 7.4.1.2.3): a new access unit starts at an AUD, at an
/// SPS/PPS/SEI following a picture, or at a slice with `first_mb_in_slice == 0` following a picture.
pub fn group_access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut grouper = AccessUnits::default();
    let mut units: Vec<Vec<&'a [u8]>> = nals.iter().filter_map(|&nal| grouper.push(nal)).collect();
    units.extend(grouper.finish());
    units
}

/// More NAL units than any picture has (slices, SEI, parameter sets): a stream past this is not H.264.
const MAX_NALS_PER_UNIT: usize = 1024;

/// [`group_access_units`] for NAL units that arrive one at a time (a camera pipe): an access unit is known to be
/// complete when the first NAL unit of the next one arrives.
#[derive(Debug)]
pub struct AccessUnits<T> {
    current: Vec<T>,
    has_picture: bool,
}

impl<T> Default for AccessUnits<T> {
    fn default() -> Self {
        AccessUnits { current: Vec::new(), has_picture: false }
    }
}

impl<T: AsRef<[u8]>> AccessUnits<T> {
    /// Takes the next NAL unit; returns the access unit it completes, if it starts a new one.
    pub fn push(&mut self, nal: T) -> Option<Vec<T>> {
        let bytes = nal.as_ref();
        let t = nal_type(bytes);
        let starts_new = self.has_picture
            && match t {
                NAL_AUD | NAL_SPS | NAL_PPS | NAL_SEI => true,
                t if is_vcl(t) => first_mb_is_zero(bytes),
                _ => false,
            };
        let done = if starts_new {
            self.has_picture = false;
            Some(std::mem::take(&mut self.current))
        } else {
            None
        };
        if self.current.len() >= MAX_NALS_PER_UNIT {
            // No picture among this many NAL units (SEI or garbage without end): not an access unit to keep.
            self.current.clear();
            self.has_picture = false;
        }
        self.has_picture |= is_vcl(t);
        self.current.push(nal);
        done
    }

    /// The access unit collected so far, if it has a picture: at the end of the stream, or when the input says
    /// an access unit ended (an encoder's buffer). Parameter sets with no picture yet stay for the next one.
    pub fn finish(&mut self) -> Option<Vec<T>> {
        if !self.has_picture {
            return None;
        }
        self.has_picture = false;
        Some(std::mem::take(&mut self.current))
    }
}

/// [`split_annex_b`] for a byte stream that arrives in pieces of any size (a pipe): NAL units come out as soon as
/// the start code after them has arrived. A NAL unit longer than `max_nal` is dropped (counted in
/// [`AnnexBSplitter::oversized`]) so garbage without start codes cannot grow the buffer without end.
#[derive(Debug)]
pub struct AnnexBSplitter {
    buf: BytesMut,
    /// Where the payload of the NAL unit being collected starts in `buf` (just after the start code `buf` begins
    /// with), once a start code was seen.
    nal_start: Option<usize>,
    /// How far `buf` has been searched for start codes.
    scanned: usize,
    max_nal: usize,
    pub oversized: u64,
}

impl AnnexBSplitter {
    pub fn new(max_nal: usize) -> AnnexBSplitter {
        AnnexBSplitter { buf: BytesMut::new(), nal_start: None, scanned: 0, max_nal, oversized: 0 }
    }

    /// Appends bytes; every NAL unit they complete is pushed to `out`, sharing the buffer (no copy).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        self.buf.extend_from_slice(data);
        let mut i = self.scanned;
        while i + 3 <= self.buf.len() {
            if self.buf[i + 2] > 1 {
                i += 3;
            } else if self.buf[i] == 0 && self.buf[i + 1] == 0 && self.buf[i + 2] == 1 {
                // Everything before this start code: the NAL unit being collected, or bytes before the first one.
                let head = self.buf.split_to(i).freeze();
                if let Some(start) = self.nal_start {
                    self.oversized += u64::from(!emit(head, start, self.max_nal, out));
                }
                self.nal_start = Some(3);
                i = 3;
            } else {
                i += 1;
            }
        }
        self.scanned = i;
        if self.nal_start.is_none() {
            // No start code yet: what was searched is garbage, but for a start code's first two bytes.
            let drop = self.scanned.saturating_sub(2);
            let _ = self.buf.split_to(drop);
            self.scanned -= drop;
        }
        if self.buf.len() > self.max_nal {
            // Keep the last two bytes: they may begin the next start code.
            self.oversized += 1;
            let _ = self.buf.split_to(self.buf.len().saturating_sub(2));
            self.scanned = 0;
            self.nal_start = None;
        }
    }

    /// The NAL unit still collected at the end of the stream.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        let rest = std::mem::take(&mut self.buf).freeze();
        if let Some(start) = self.nal_start.take() {
            self.oversized += u64::from(!emit(rest, start, self.max_nal, out));
        }
        self.scanned = 0;
    }
}

/// Pushes `chunk[start..]` without its trailing zeros (a 4-byte start code's leading zero, trailing_zero_8bits,
/// belong to no NAL unit), if anything is left; `false` when it is longer than `max` and was dropped.
fn emit(chunk: Bytes, start: usize, max: usize, out: &mut Vec<Bytes>) -> bool {
    let mut end = chunk.len();
    while end > start && chunk[end - 1] == 0 {
        end -= 1;
    }
    if end - start > max {
        return false;
    }
    if end > start {
        out.push(chunk.slice(start..end));
    }
    true
}

/// `first_mb_in_slice` is the first ue(v) of the slice header: it is 0 exactly when its first bit is 1.
fn first_mb_is_zero(nal: &[u8]) -> bool {
    nal.get(1).is_some_and(|b| b & 0x80 != 0)
}

/// Builds a length-prefixed (4-byte) payload from NAL units.
pub fn to_avcc<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// Iterates the NAL units of a length-prefixed payload; stops at the first malformed length.
pub fn avcc_nals(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() - 4 < len {
            return None;
        }
        let nal = &rest[4..4 + len];
        rest = &rest[4 + len..];
        Some(nal)
    })
}

/// An AVCDecoderConfigurationRecord for one SPS and one PPS.
pub fn avc_decoder_config(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(11 + sps.len() + pps.len());
    b.put_u8(1);
    b.put_slice(sps.get(1..4).unwrap_or(&[0x42, 0xc0, 0x1f]));
    b.put_u8(0xff); // 4-byte NAL lengths
    b.put_u8(0xe1); // one SPS
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1);
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    b.freeze()
}

/// SPS and PPS from an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1, the `avcC` box and RTMP's
/// sequence header): the first of each.
pub fn parse_avc_decoder_config(record: &[u8]) -> Result<(Bytes, Bytes), &'static str> {
    let sps_count = record.get(5).ok_or("AVCDecoderConfigurationRecord too short")? & 0x1f;
    let mut r = &record[6..];
    let take = |r: &mut &[u8]| -> Result<Bytes, &'static str> {
        let len = usize::from(u16::from_be_bytes([*r.first().ok_or("truncated")?, *r.get(1).ok_or("truncated")?]));
        let nal = r.get(2..2 + len).ok_or("parameter set longer than the record")?;
        *r = &r[2 + len..];
        Ok(Bytes::copy_from_slice(nal))
    };
    if sps_count == 0 {
        return Err("no SPS in the record");
    }
    let sps = take(&mut r)?;
    for _ in 1..sps_count {
        take(&mut r)?;
    }
    let pps_count = *r.first().ok_or("no PPS count")?;
    r = &r[1..];
    if pps_count == 0 {
        return Err("no PPS in the record");
    }
    let pps = take(&mut r)?;
    Ok((sps, pps))
}

/// VPS, SPS and PPS from an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1, the `hvcC` box).
pub fn parse_hevc_decoder_config(record: &[u8]) -> Result<(Bytes, Bytes, Bytes), &'static str> {
    let mut r = record.get(22..).ok_or("HEVCDecoderConfigurationRecord too short")?;
    let arrays = *r.first().ok_or("truncated")?;
    r = &r[1..];
    let (mut vps, mut sps, mut pps) = (None, None, None);
    for _ in 0..arrays {
        let nal_type = r.first().ok_or("truncated")? & 0x3f;
        let count = u16::from_be_bytes([*r.get(1).ok_or("truncated")?, *r.get(2).ok_or("truncated")?]);
        r = &r[3..];
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*r.first().ok_or("truncated")?, *r.get(1).ok_or("truncated")?]));
            let nal = Bytes::copy_from_slice(r.get(2..2 + len).ok_or("parameter set longer than the record")?);
            r = &r[2 + len..];
            let slot = match nal_type {
                32 => &mut vps,
                33 => &mut sps,
                34 => &mut pps,
                _ => continue,
            };
            slot.get_or_insert(nal);
        }
    }
    match (vps, sps, pps) {
        (Some(v), Some(s), Some(p)) => Ok((v, s, p)),
        _ => Err("the record lacks a VPS, SPS or PPS"),
    }
}

/// An HEVCDecoderConfigurationRecord for one VPS, SPS and PPS (the inverse of [`parse_hevc_decoder_config`]), with
/// the general profile, tier and level copied from the SPS, 4-byte NAL lengths and 4:2:0 8-bit defaults where
/// the SPS would need full parsing (decoders read those from the SPS itself).
pub fn hevc_decoder_config(vps: &[u8], sps: &[u8], pps: &[u8]) -> Bytes {
    // SPS: 2-byte NAL header, 1 byte of ids, then general_profile_tier_level: 12 bytes.
    let rbsp = remove_emulation_prevention(sps.get(..32).unwrap_or(sps));
    let ptl = rbsp.get(3..15).map_or([0; 12], |p| <[u8; 12]>::try_from(p).unwrap_or([0; 12]));
    let mut b = Vec::with_capacity(23 + 15 + vps.len() + sps.len() + pps.len());
    b.push(1); // configurationVersion
    b.extend_from_slice(&ptl); // profile space/tier/idc, compatibility flags, constraint flags, level
    b.extend_from_slice(&[0xf0, 0x00]); // min_spatial_segmentation_idc = 0
    b.push(0xfc); // parallelismType = 0
    b.push(0xfd); // chroma_format_idc = 1 (4:2:0)
    b.push(0xf8); // bit_depth_luma_minus8 = 0
    b.push(0xf8); // bit_depth_chroma_minus8 = 0
    b.extend_from_slice(&[0, 0]); // avgFrameRate unknown
    b.push(0x0f); // constantFrameRate 0, numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne 3
    b.push(3);
    for (nal_type, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        b.push(0x80 | nal_type); // array_completeness: all parameter sets of this type are here
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(nal.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        b.extend_from_slice(&nal[..nal.len().min(usize::from(u16::MAX))]);
    }
    Bytes::from(b)
}

/// The fields of a sequence parameter set that the router reports and negotiates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl SpsInfo {
    /// The `profile-level-id` SDP parameter (RFC 6184), e.g. `42e01f`.
    pub fn profile_level_id(&self) -> String {
        format!("{:02x}{:02x}{:02x}", self.profile_idc, self.constraint_flags, self.level_idc)
    }

    pub fn profile_name(&self) -> &'static str {
        match (self.profile_idc, self.constraint_flags & 0x40 != 0) {
            (66, true) => "Constrained Baseline",
            (66, false) => "Baseline",
            (77, _) => "Main",
            (88, _) => "Extended",
            (100, _) => "High",
            (110, _) => "High 10",
            (122, _) => "High 4:2:2",
            (244, _) => "High 4:4:4",
            _ => "unknown profile",
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}x{} {} {}.{}",
            self.width,
            self.height,
            self.profile_name(),
            self.level_idc / 10,
            self.level_idc % 10
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    #[error("not an SPS NAL unit (type {0})")]
    NotSps(u8),
    #[error("SPS ends early")]
    Truncated,
    #[error("SPS has an out-of-range value for {0}")]
    OutOfRange(&'static str),
}

/// Parses the profile, level and coded picture size from an SPS NAL unit (header byte included).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal_type(nal) != NAL_SPS {
        return Err(SpsError::NotSps(nal_type(nal)));
    }
    let rbsp = remove_emulation_prevention(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(SpsError::OutOfRange("chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(SpsError::OutOfRange("num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err(SpsError::OutOfRange("pic_order_cnt_type")),
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        crop_l = r.ue()?;
        crop_r = r.ue()?;
        crop_t = r.ue()?;
        crop_b = r.ue()?;
    }
    if width_mbs > 1024 || height_map_units > 1024 {
        return Err(SpsError::OutOfRange("picture size"));
    }
    // u64 arithmetic: crop offsets are attacker-controlled ue(v) values up to 2^32.
    let (crop_unit_x, crop_unit_y): (u64, u64) = match chroma_format_idc {
        0 | 3 => (1, u64::from(2 - frame_mbs_only)),
        1 => (2, 2 * u64::from(2 - frame_mbs_only)),
        _ => (2, u64::from(2 - frame_mbs_only)),
    };
    let (crop_x, crop_y) = (u64::from(crop_l) + u64::from(crop_r), u64::from(crop_t) + u64::from(crop_b));
    let width = (u64::from(width_mbs) * 16).checked_sub(crop_unit_x * crop_x);
    let height = (u64::from(2 - frame_mbs_only) * u64::from(height_map_units) * 16).checked_sub(crop_unit_y * crop_y);
    match (width, height) {
        (Some(width), Some(height)) if width > 0 && height > 0 => {
            Ok(SpsInfo { profile_idc, constraint_flags, level_idc, width: width as u32, height: height as u32 })
        }
        _ => Err(SpsError::OutOfRange("frame cropping")),
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), SpsError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Removes the 0x03 bytes an encoder inserts after two zero bytes (7.4.1).
pub fn remove_emulation_prevention(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
    }

    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange("exp-Golomb code"));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Result<i64, SpsError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hevc_record_round_trips() {
        let (vps, sps, pps) =
            (&[0x40, 1, 0xc][..], &[0x42, 1, 1, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d][..], &[0x44, 1, 0xc1][..]);
        let record = hevc_decoder_config(vps, sps, pps);
        let (v, s, p) = parse_hevc_decoder_config(&record).expect("parses");
        assert_eq!((&v[..], &s[..], &p[..]), (vps, sps, pps));
        assert_eq!(record[1], 0x01, "general_profile_idc Main");
        assert_eq!(record[12], 0x5d, "general_level_idc 3.1");
    }

    /// The SPS x264 wrote for the demo clip (640x360 Constrained Baseline 3.1).
    fn demo_sps() -> Vec<u8> {
        let clip = include_bytes!("../../assets/demo.h264");
        split_annex_b(clip).into_iter().find(|n| nal_type(n) == NAL_SPS).expect("sps").to_vec()
    }

    #[test]
    fn parses_demo_sps() {
        let info = parse_sps(&demo_sps()).expect("parse");
        assert_eq!(info.width, 640);
        assert_eq!(info.height, 360);
        assert_eq!(info.profile_level_id(), "42c01f");
        assert_eq!(info.describe(), "640x360 Constrained Baseline 3.1");
    }

    #[test]
    fn truncated_sps_is_an_error_not_a_panic() {
        let sps = demo_sps();
        for len in 0..sps.len() - 1 {
            let _ = parse_sps(&sps[..len]);
        }
        assert_eq!(parse_sps(&sps[..4]), Err(SpsError::Truncated));
        assert_eq!(parse_sps(&[0x68, 1, 2]), Err(SpsError::NotSps(8)));
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0x88, 0];
        let nals = split_annex_b(&stream);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 0x88][..]]);
    }

    #[test]
    fn groups_demo_clip_into_frames() {
        let clip = include_bytes!("../../assets/demo.h264");
        let nals = split_annex_b(clip);
        let units = group_access_units(&nals);
        assert_eq!(units.len(), 120, "ffprobe counts 120 frames");
        let keyframes = units.iter().filter(|u| u.iter().any(|n| nal_type(n) == NAL_IDR)).count();
        assert_eq!(keyframes, 4, "a keyframe every 30 frames");
        assert!(units[0].iter().any(|n| nal_type(n) == NAL_SPS));
    }

    #[test]
    fn second_slice_of_a_picture_stays_in_its_access_unit() {
        // first_mb_in_slice = 0 (bit 1) then a second slice with first_mb_in_slice = 1 ("010").
        let nals: Vec<&[u8]> = vec![&[0x65, 0x88], &[0x65, 0x40], &[0x41, 0x9a]];
        let units = group_access_units(&nals);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].len(), 2);
    }

    #[test]
    fn avcc_round_trip_and_malformed_lengths() {
        let payload = to_avcc([&[0x65u8, 1][..], &[0x41, 2, 3][..]]);
        let nals: Vec<&[u8]> = avcc_nals(&payload).collect();
        assert_eq!(nals, vec![&[0x65, 1][..], &[0x41, 2, 3][..]]);
        let broken = [0, 0, 0, 9, 1, 2];
        assert_eq!(avcc_nals(&broken).count(), 0);
    }

    #[test]
    fn avc_decoder_config_round_trip() {
        let sps = demo_sps();
        let pps = [0x68u8, 0xce, 0x3c, 0x80];
        let mut record = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        record.extend_from_slice(&sps);
        record.push(1);
        record.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        record.extend_from_slice(&pps);
        let (s, p) = parse_avc_decoder_config(&record).expect("valid");
        assert_eq!((&s[..], &p[..]), (&sps[..], &pps[..]));
        for len in 0..record.len() {
            assert!(parse_avc_decoder_config(&record[..len]).is_err(), "truncated at {len}");
        }
    }

    #[test]
    fn hevc_decoder_config_needs_all_three_sets() {
        let mut record = vec![0u8; 22];
        record.push(3);
        for (t, nal) in [(32u8, &[0x40u8, 1][..]), (33, &[0x42, 1]), (34, &[0x44, 1])] {
            record.extend_from_slice(&[0x80 | t, 0, 1, 0, nal.len() as u8]);
            record.extend_from_slice(nal);
        }
        let (v, s, p) = parse_hevc_decoder_config(&record).expect("valid");
        assert_eq!((&v[..], &s[..], &p[..]), (&[0x40, 1][..], &[0x42, 1][..], &[0x44, 1][..]));
        assert!(parse_hevc_decoder_config(&record[..record.len() - 3]).is_err());
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn the_streaming_splitter_and_grouper_agree_with_the_whole_buffer_ones_at_any_piece_size() {
        let clip = include_bytes!("../../assets/demo.h264");
        let whole: Vec<Vec<Vec<u8>>> = group_access_units(&split_annex_b(clip))
            .into_iter()
            .map(|u| u.into_iter().map(<[u8]>::to_vec).collect())
            .collect();
        for piece in [1, 2, 3, 7, 1000, 65536] {
            let mut splitter = AnnexBSplitter::new(1 << 20);
            let mut grouper = AccessUnits::default();
            let mut units = Vec::new();
            let mut nals = Vec::new();
            for chunk in clip.chunks(piece) {
                splitter.push(chunk, &mut nals);
                units.extend(nals.drain(..).filter_map(|n| grouper.push(n)));
            }
            splitter.finish(&mut nals);
            units.extend(nals.drain(..).filter_map(|n| grouper.push(n)));
            units.extend(grouper.finish());
            let units: Vec<Vec<Vec<u8>>> =
                units.into_iter().map(|u| u.into_iter().map(|n| n.to_vec()).collect()).collect();
            assert_eq!(units.len(), whole.len(), "piece size {piece}");
            assert!(units == whole, "piece size {piece}: the access units differ");
        }
    }

    #[test]
    fn garbage_without_start_codes_is_dropped_at_the_limit() {
        let mut splitter = AnnexBSplitter::new(1000);
        let mut out = Vec::new();
        splitter.push(&[0, 0, 1, 0x65], &mut out);
        for _ in 0..10 {
            splitter.push(&[0xaa; 300], &mut out);
        }
        assert!(out.is_empty());
        assert!(splitter.oversized >= 1, "the oversized NAL unit was dropped");
        splitter.push(&[0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2], &mut out);
        splitter.finish(&mut out);
        assert_eq!(out, vec![Bytes::from_static(&[0x67, 1]), Bytes::from_static(&[0x68, 2])]);
    }
}

/// An H.264 elementary stream as a track and its access units.
#[derive(Debug)]
pub struct Clip {
    pub track: std::sync::Arc<crate::Track>,
    /// (AVCC payload, keyframe) per access unit.
    pub frames: Vec<(Bytes, bool)>,
}

/// Reads an Annex B stream that starts with a keyframe (the demo clip, test fixtures) into a [`Clip`]: track 0 at
/// `clock_rate`, with the stream's first SPS and PPS, and one AVCC payload per access unit.
pub fn parse_clip(data: &[u8], clock_rate: u32) -> Result<Clip, String> {
    let nals = split_annex_b(data);
    let sps = nals.iter().find(|n| nal_type(n) == NAL_SPS).ok_or("no SPS")?;
    let pps = nals.iter().find(|n| nal_type(n) == NAL_PPS).ok_or("no PPS")?;
    let info = parse_sps(sps).map_err(|e| e.to_string())?;
    let track = std::sync::Arc::new(crate::Track {
        id: crate::TrackId(0),
        codec: crate::Codec::H264,
        clock_rate,
        params: crate::CodecParams::H264 { sps: Bytes::copy_from_slice(sps), pps: Bytes::copy_from_slice(pps) },
        description: info.describe(),
    });
    let frames: Vec<(Bytes, bool)> = group_access_units(&nals)
        .into_iter()
        .map(|au| {
            let keyframe = au.iter().any(|n| nal_type(n) == NAL_IDR);
            // Access unit delimiters carry nothing a length-prefixed payload needs.
            (to_avcc(au.into_iter().filter(|n| nal_type(n) != NAL_AUD)), keyframe)
        })
        .collect();
    if !frames.first().is_some_and(|f| f.1) {
        return Err("the clip must start with a keyframe".into());
    }
    Ok(Clip { track, frames })
}
