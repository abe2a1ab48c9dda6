//! RTP payloads made once per route frame and shared by every reader, WebRTC viewers and RTSP players alike
//! (RFC 6184 for H.264, RFC 7798 for H.265, RFC 7741 for VP8, RFC 3640 AAC-hbr for AAC; Opus and G.711 as they
//! are).
//!
//! Pure functions: a frame in, payloads out. Per reader only the RTP header (SSRC, sequence number, payload
//! type), SRTP or interleaving and the send remain; the payload bytes are one `Arc<[u8]>` for all of them.

use std::sync::Arc;

use crate::h264::{self, NAL_AUD, NAL_IDR, NAL_SPS};
use crate::h265;
use crate::{Codec, CodecParams, Frame};

/// Largest RTP payload we produce. 1200 bytes leaves room for the RTP header (12), header extensions (~20),
/// the SRTP tag (10-16) and IPv6/UDP headers (48) under the 1280-byte minimum IPv6 MTU.
pub const MAX_PAYLOAD: usize = 1200;

const NAL_FILLER: u8 = 12;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// One RTP packet's payload and marker bit.
#[derive(Debug, Clone)]
pub struct RtpPayload {
    pub data: Arc<[u8]>,
    pub marker: bool,
}

/// A frame as RTP: what every viewer of the route sends.
#[derive(Debug)]
pub struct RtpFrame {
    pub codec: Codec,
    /// RTP timestamp (the route's pts in the track clock, truncated to 32 bits as RTP does).
    pub timestamp: u32,
    pub keyframe: bool,
    pub payloads: Vec<RtpPayload>,
}

/// Packetizes a frame for every RTP reader (WebRTC skips the codecs it cannot carry: AAC, H.265). Readers ask
/// [`Frame::rtp`], which makes this once per route frame. `Option` for codecs no RTP format is written for.
pub fn packetize(frame: &Frame) -> Option<RtpFrame> {
    let payloads = match frame.track.codec {
        Codec::H264 => h264_payloads(frame),
        Codec::H265 => h265_payloads(frame),
        Codec::Vp8 => vp8_payloads(&frame.data),
        Codec::Aac => aac_payloads(&frame.data),
        Codec::Opus | Codec::Pcmu | Codec::Pcma => {
            vec![RtpPayload { data: Arc::from(&frame.data[..]), marker: false }]
        }
    };
    Some(RtpFrame { codec: frame.track.codec, timestamp: frame.pts as u32, keyframe: frame.keyframe, payloads })
}

/// H.264 in packetization mode 1: small NAL units aggregated into STAP-A, large ones fragmented into FU-A.
/// Keyframes get the track's SPS/PPS when the source did not send them in-band, so a viewer can always decode
/// the first frame it receives.
fn h264_payloads(frame: &Frame) -> Vec<RtpPayload> {
    let mut nals: Vec<&[u8]> = h264::avcc_nals(&frame.data)
        .filter(|n| !n.is_empty() && !matches!(h264::nal_type(n), NAL_AUD | NAL_FILLER))
        .collect();
    let has_idr = nals.iter().any(|n| h264::nal_type(n) == NAL_IDR);
    let has_sps = nals.iter().any(|n| h264::nal_type(n) == NAL_SPS);
    if has_idr
        && !has_sps
        && let CodecParams::H264 { sps, pps } = &frame.track.params
    {
        nals.insert(0, pps);
        nals.insert(0, sps);
    }
    aggregate(&nals, fragment, |group| {
        // STAP-A's header: the highest NRI of its NAL units.
        vec![group.iter().map(|n| n[0] & 0x60).max().unwrap_or(0) | STAP_A]
    })
}

/// NAL units as payloads: each one over [`MAX_PAYLOAD`] fragmented by `fragment`, runs of smaller ones that fit
/// together aggregated behind `header` (STAP-A, AP: each unit behind its 16-bit size), a lone one as it is. The
/// marker bit goes on the last payload.
fn aggregate(
    nals: &[&[u8]],
    fragment: fn(&[u8], &mut Vec<RtpPayload>),
    header: impl Fn(&[&[u8]]) -> Vec<u8>,
) -> Vec<RtpPayload> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < nals.len() {
        let nal = nals[i];
        if nal.len() > MAX_PAYLOAD {
            fragment(nal, &mut out);
            i += 1;
            continue;
        }
        // As many following small NAL units as fit into one aggregation packet (its header is at most 2 bytes).
        let mut j = i + 1;
        let mut size = 2 + 2 + nal.len();
        while j < nals.len() && size + 2 + nals[j].len() <= MAX_PAYLOAD {
            size += 2 + nals[j].len();
            j += 1;
        }
        if j - i == 1 {
            out.push(RtpPayload { data: Arc::from(nal), marker: false });
        } else {
            let group = &nals[i..j];
            let mut packet = header(group);
            packet.reserve(size);
            for n in group {
                packet.extend_from_slice(&(n.len() as u16).to_be_bytes());
                packet.extend_from_slice(n);
            }
            out.push(RtpPayload { data: Arc::from(packet), marker: false });
        }
        i = j;
    }
    if let Some(last) = out.last_mut() {
        last.marker = true;
    }
    out
}

fn fragment(nal: &[u8], out: &mut Vec<RtpPayload>) {
    let header = nal[0];
    let indicator = (header & 0xe0) | FU_A;
    let body = &nal[1..];
    let chunk = MAX_PAYLOAD - 2;
    let count = body.len().div_ceil(chunk);
    for (k, part) in body.chunks(chunk).enumerate() {
        let mut fu_header = header & 0x1f;
        if k == 0 {
            fu_header |= 0x80;
        }
        if k == count - 1 {
            fu_header |= 0x40;
        }
        let mut p = Vec::with_capacity(2 + part.len());
        p.push(indicator);
        p.push(fu_header);
        p.extend_from_slice(part);
        out.push(RtpPayload { data: Arc::from(p), marker: false });
    }
}

/// H.265 (RFC 7798): small NAL units aggregated into APs (type 48), large ones fragmented into FUs (type 49).
/// IRAP pictures get the track's VPS/SPS/PPS when the source did not send them in-band.
fn h265_payloads(frame: &Frame) -> Vec<RtpPayload> {
    let mut nals: Vec<&[u8]> =
        h264::avcc_nals(&frame.data).filter(|n| n.len() >= 2 && h265::nal_type(n) != h265::NAL_AUD).collect();
    let has_irap = nals.iter().any(|n| h265::is_irap(h265::nal_type(n)));
    let has_sps = nals.iter().any(|n| h265::nal_type(n) == h265::NAL_SPS);
    if has_irap
        && !has_sps
        && let CodecParams::H265 { vps, sps, pps } = &frame.track.params
    {
        // Parameter sets come from a publisher's SDP: ones too short for a NAL header are left out.
        nals.splice(0..0, [&vps[..], &sps[..], &pps[..]].into_iter().filter(|n| n.len() >= 2));
    }
    aggregate(&nals, h265_fragment, |group| {
        // The AP's header: F if any has it, the lowest layer id and temporal id of its NAL units.
        let f = group.iter().any(|n| n[0] & 0x80 != 0);
        let layer = group.iter().map(|n| h265::layer_id(n)).min().unwrap_or(0);
        let tid = group.iter().map(|n| n[1] & 0x07).min().unwrap_or(1);
        vec![u8::from(f) << 7 | h265::AP << 1 | (layer >> 5) as u8, ((layer & 0x1f) as u8) << 3 | tid]
    })
}

fn h265_fragment(nal: &[u8], out: &mut Vec<RtpPayload>) {
    let nal_type = h265::nal_type(nal);
    let header = [(nal[0] & 0x81) | h265::FU << 1, nal[1]];
    let body = &nal[2..];
    let chunk = MAX_PAYLOAD - 3;
    let count = body.len().div_ceil(chunk);
    for (k, part) in body.chunks(chunk).enumerate() {
        let mut fu_header = nal_type;
        if k == 0 {
            fu_header |= 0x80;
        }
        if k == count - 1 {
            fu_header |= 0x40;
        }
        let mut p = Vec::with_capacity(3 + part.len());
        p.extend_from_slice(&header);
        p.push(fu_header);
        p.extend_from_slice(part);
        out.push(RtpPayload { data: Arc::from(p), marker: false });
    }
}

/// AAC in RFC 3640's AAC-hbr mode (`sizelength=13; indexlength=3; indexdeltalength=3`): one access unit per
/// packet behind its AU header; one too large for a packet is fragmented, each fragment behind the same header
/// (with the whole unit's size) and the marker bit on the last.
fn aac_payloads(frame: &[u8]) -> Vec<RtpPayload> {
    // 13 bits of size: larger units cannot be described (AAC frames are at most 768 bytes per channel).
    if frame.is_empty() || frame.len() >= 1 << 13 {
        return Vec::new();
    }
    let au_header = ((frame.len() as u16) << 3).to_be_bytes();
    let chunk = MAX_PAYLOAD - 4;
    let count = frame.len().div_ceil(chunk);
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(k, part)| {
            let mut p = Vec::with_capacity(4 + part.len());
            p.extend_from_slice(&16u16.to_be_bytes());
            p.extend_from_slice(&au_header);
            p.extend_from_slice(part);
            RtpPayload { data: Arc::from(p), marker: k == count - 1 }
        })
        .collect()
}

/// VP8: a one-byte payload descriptor (S bit on the first packet of the frame) before each fragment.
fn vp8_payloads(frame: &[u8]) -> Vec<RtpPayload> {
    let chunk = MAX_PAYLOAD - 1;
    let count = frame.len().div_ceil(chunk).max(1);
    let mut out = Vec::with_capacity(count);
    for (k, part) in frame.chunks(chunk).enumerate() {
        let mut p = Vec::with_capacity(1 + part.len());
        p.push(if k == 0 { 0x10 } else { 0x00 });
        p.extend_from_slice(part);
        out.push(RtpPayload { data: Arc::from(p), marker: k == count - 1 });
    }
    out
}

/// Reassembles H.264 NAL units from payloads (for tests and the load generator's sanity checks).
pub fn h264_depacketize(payloads: &[RtpPayload]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in payloads {
        let d = &p.data;
        match d.first().map(|b| b & 0x1f) {
            Some(STAP_A) => {
                let mut rest = &d[1..];
                while rest.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let Some(nal) = rest.get(2..2 + len) else { break };
                    nals.push(nal.to_vec());
                    rest = &rest[2 + len..];
                }
            }
            Some(FU_A) if d.len() >= 2 => {
                if d[1] & 0x80 != 0 {
                    fu = Some(vec![(d[0] & 0xe0) | (d[1] & 0x1f)]);
                }
                if let Some(buf) = fu.as_mut() {
                    buf.extend_from_slice(&d[2..]);
                }
                if d[1] & 0x40 != 0
                    && let Some(buf) = fu.take()
                {
                    nals.push(buf);
                }
            }
            Some(_) => nals.push(d.to_vec()),
            None => {}
        }
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Track, TrackId};

    /// The router's demo clip as frames: real encoder output, with large and small NAL units.
    fn demo_frames() -> Vec<Frame> {
        let nals = h264::split_annex_b(include_bytes!("../../assets/demo.h264"));
        let find = |t| bytes::Bytes::copy_from_slice(nals.iter().find(|n| h264::nal_type(n) == t).expect("present"));
        let track = Arc::new(Track {
            id: TrackId(0),
            codec: Codec::H264,
            clock_rate: 90_000,
            params: CodecParams::H264 { sps: find(NAL_SPS), pps: find(h264::NAL_PPS) },
            description: String::new(),
        });
        h264::group_access_units(&nals)
            .into_iter()
            .map(|au| {
                let keyframe = au.iter().any(|n| h264::nal_type(n) == NAL_IDR);
                let data = h264::to_avcc(au.into_iter().filter(|n| h264::nal_type(n) != NAL_AUD));
                Frame::new(Arc::clone(&track), 3000, 3000, keyframe, data)
            })
            .collect()
    }

    #[test]
    fn every_demo_frame_round_trips_within_the_mtu() {
        for (i, frame) in demo_frames().into_iter().enumerate() {
            let rtp = packetize(&frame).expect("h264");
            assert!(rtp.payloads.iter().all(|p| p.data.len() <= MAX_PAYLOAD));
            assert_eq!(rtp.payloads.iter().filter(|p| p.marker).count(), 1);
            assert!(rtp.payloads.last().is_some_and(|p| p.marker), "marker on the last packet");
            let expected: Vec<Vec<u8>> = h264::avcc_nals(&frame.data).map(<[u8]>::to_vec).collect();
            assert_eq!(h264_depacketize(&rtp.payloads), expected, "frame {i}");
        }
    }

    #[test]
    fn keyframes_without_in_band_parameter_sets_get_them_from_the_track() {
        let mut frame = demo_frames().swap_remove(0);
        let without: Vec<&[u8]> = h264::avcc_nals(&frame.data).filter(|n| h264::nal_type(n) == NAL_IDR).collect();
        frame.data = h264::to_avcc(without);
        let nals = h264_depacketize(&packetize(&frame).expect("h264").payloads);
        let types: Vec<u8> = nals.iter().map(|n| h264::nal_type(n)).collect();
        assert_eq!(&types[..3], &[NAL_SPS, h264::NAL_PPS, NAL_IDR]);
    }

    #[test]
    fn vp8_descriptor_marks_the_first_packet() {
        let frame = vec![7u8; 3000];
        let p = vp8_payloads(&frame);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].data[0], 0x10);
        assert_eq!(p[1].data[0], 0x00);
        assert!(p[2].marker && !p[0].marker);
        assert_eq!(p.iter().map(|x| x.data.len() - 1).sum::<usize>(), 3000);
    }
}
