//! RTP and RTCP as the RTSP server writes and reads them (RFC 3550): the 12-byte RTP header before a route's
//! shared payloads, RTP packets from publishers, and sender reports both ways.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The fixed RTP header (no CSRCs, no extension).
pub fn rtp_header(marker: bool, payload_type: u8, seq: u16, timestamp: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = u8::from(marker) << 7 | (payload_type & 0x7f);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&timestamp.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// A received RTP packet's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Where the payload is in the packet (after CSRCs and an extension, before padding).
    pub payload: (usize, usize),
}

/// Parses an RTP packet's header; `None` for anything that is not RTP version 2 or whose lengths do not add up.
pub fn parse_rtp(p: &[u8]) -> Option<RtpPacket> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(p[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*p.last()?))?;
    }
    if start > end {
        return None;
    }
    Some(RtpPacket {
        marker: p[1] & 0x80 != 0,
        payload_type: p[1] & 0x7f,
        seq: u16::from_be_bytes([p[2], p[3]]),
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload: (start, end),
    })
}

/// A 64-bit NTP timestamp for a wall-clock time.
pub fn ntp(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    secs << 32 | frac
}

fn from_ntp(ntp: u64) -> Option<SystemTime> {
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET)?;
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

/// A sender report without report blocks: what maps a stream's RTP clock to wall-clock time for the player.
pub fn sender_report(ssrc: u32, wallclock: SystemTime, rtp_timestamp: u32, packets: u32, octets: u32) -> [u8; 28] {
    let mut r = [0u8; 28];
    r[0] = 0x80;
    r[1] = 200;
    r[2..4].copy_from_slice(&6u16.to_be_bytes());
    r[4..8].copy_from_slice(&ssrc.to_be_bytes());
    r[8..16].copy_from_slice(&ntp(wallclock).to_be_bytes());
    r[16..20].copy_from_slice(&rtp_timestamp.to_be_bytes());
    r[20..24].copy_from_slice(&packets.to_be_bytes());
    r[24..28].copy_from_slice(&octets.to_be_bytes());
    r
}

/// The (RTP timestamp, wall-clock time) pair of the first sender report in a compound RTCP packet.
pub fn parse_sender_report(mut p: &[u8]) -> Option<(u32, SystemTime)> {
    while p.len() >= 4 {
        let len = 4 * (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1);
        let packet = p.get(..len)?;
        if packet[0] >> 6 == 2 && packet[1] == 200 && packet.len() >= 28 {
            let ntp = u64::from_be_bytes(packet[8..16].try_into().ok()?);
            let rtp = u32::from_be_bytes(packet[16..20].try_into().ok()?);
            return Some((rtp, from_ntp(ntp)?));
        }
        p = &p[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_headers_round_trip_and_odd_packets_are_refused() {
        let mut packet = rtp_header(true, 96, 65535, 0xdead_beef, 42).to_vec();
        packet.extend_from_slice(b"payload");
        let p = parse_rtp(&packet).expect("rtp");
        assert_eq!((p.marker, p.payload_type, p.seq, p.timestamp, p.ssrc), (true, 96, 65535, 0xdead_beef, 42));
        assert_eq!(&packet[p.payload.0..p.payload.1], b"payload");
        // An extension of one word and two bytes of padding.
        let mut ext = rtp_header(false, 96, 1, 2, 3).to_vec();
        ext[0] |= 0x30;
        ext.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9, b'x', 0, 2]);
        let p = parse_rtp(&ext).expect("rtp");
        assert_eq!(&ext[p.payload.0..p.payload.1], b"x");
        assert_eq!(parse_rtp(&[0x80; 8]), None);
        assert_eq!(parse_rtp(&[0x40; 20]), None, "version 1");
        let mut lying = rtp_header(false, 96, 1, 2, 3).to_vec();
        lying[0] |= 0x20;
        lying.push(200);
        assert_eq!(parse_rtp(&lying), None, "padding longer than the packet");
    }

    #[test]
    fn sender_reports_round_trip() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let sr = sender_report(7, at, 90_000, 10, 1000);
        let (rtp, wall) = parse_sender_report(&sr).expect("sr");
        assert_eq!(rtp, 90_000);
        let error = wall.duration_since(at).unwrap_or_else(|e| e.duration());
        assert!(error < Duration::from_micros(1), "{error:?}");
        // A receiver report first, then the SR.
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        compound.extend_from_slice(&sr);
        assert_eq!(parse_sender_report(&compound).map(|r| r.0), Some(90_000));
        assert_eq!(parse_sender_report(&[0x80, 200, 0xff, 0xff]), None);
    }
}
