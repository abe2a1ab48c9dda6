//! Reads what the index and the playback API need from a fragmented MP4 file: where the init segment ends, the
//! wall-clock start (the first `prft`), the duration, the codecs and every fragment's place and time, without
//! reading the media itself.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use mp4_atom::{Atom, Decode, FourCC, Moof, Moov, Prft};

use crate::media::fmp4::{NTP_UNIX_OFFSET, mux};

/// The largest `moov` or `moof` read into memory; anything bigger is not a file we wrote.
const MAX_META_BOX: u64 = 64 << 20;
/// `sample_is_non_sync_sample` in ISO BMFF sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// One `moof` + `mdat` pair (with the `prft` before it, if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// Byte range in the file.
    pub offset: u64,
    pub len: u64,
    /// Decode time of its first sample, in seconds of the reference track.
    pub start: f64,
    pub duration: f64,
    /// Whether the reference track's first sample is a sync sample: playback can start here.
    pub starts_with_keyframe: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Bytes of ftyp + moov at the start of the file.
    pub init_len: u64,
    /// The init segment's tracks with creation times cleared: files whose tracks are equal can be stitched.
    pub tracks: Vec<mp4_atom::Trak>,
    /// Timescale by track id.
    pub timescales: BTreeMap<u32, u32>,
    /// Codecs by track, e.g. ["h264", "aac"].
    pub codecs: Vec<String>,
    /// Wall-clock time of the first sample in ms since the Unix epoch, from the first `prft`.
    pub start_ms: Option<u64>,
    /// Seconds from the first sample to the end of the last fragment (reference track).
    pub duration: f64,
    pub fragments: Vec<Fragment>,
}

/// Why a file could not be probed: it could not be read, or it is not an fMP4 file a recorder wrote.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{}: {source}", .path.display())]
    Open { path: std::path::PathBuf, source: std::io::Error },
    #[error("reading: {0}")]
    Read(#[from] std::io::Error),
    #[error("truncated box header: {0}")]
    TruncatedHeader(std::io::Error),
    #[error("a {kind} box of {len} bytes does not fit the {left} bytes left")]
    Overrun { kind: FourCC, len: u64, left: u64 },
    #[error("a {kind} box of {len} bytes is too large")]
    TooLarge { kind: FourCC, len: u64 },
    #[error("{kind}: {source}")]
    Decode { kind: FourCC, source: mp4_atom::Error },
    #[error("a moof before the moov")]
    MoofBeforeMoov,
    #[error("no moov box: not an MP4 file written by a recorder")]
    NoMoov,
}

/// Probes the file at `path`.
pub fn probe(path: &Path) -> Result<Probe, ProbeError> {
    let open = |source| ProbeError::Open { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(open)?;
    let len = file.metadata().map_err(open)?.len();
    probe_reader(&mut std::io::BufReader::new(&mut file), len)
}

/// Probes `len` bytes of fMP4 from `r`.
pub fn probe_reader<R: Read + Seek>(r: &mut R, len: u64) -> Result<Probe, ProbeError> {
    let mut pos = 0u64;
    let mut init_len = None;
    let mut timescales = BTreeMap::new();
    let mut reference = None;
    let mut codecs = Vec::new();
    let mut tracks = Vec::new();
    let mut start_ms = None;
    let mut fragments: Vec<Fragment> = Vec::new();
    let mut fragment_start = None;
    let mut pending: Option<(f64, f64, bool)> = None;
    while pos < len {
        let (kind, box_len) = read_header(r, len - pos)?;
        let end = pos + box_len;
        let body = |r: &mut R| -> Result<Vec<u8>, ProbeError> {
            if box_len > MAX_META_BOX {
                return Err(ProbeError::TooLarge { kind, len: box_len });
            }
            r.seek(SeekFrom::Start(pos))?;
            let mut buf = vec![0; box_len as usize];
            r.read_exact(&mut buf)?;
            Ok(buf)
        };
        let decode = |source| ProbeError::Decode { kind, source };
        match kind {
            Moov::KIND => {
                let moov = Moov::decode(&mut body(r)?.as_slice()).map_err(decode)?;
                for trak in &moov.trak {
                    let id = trak.tkhd.track_id;
                    timescales.insert(id, trak.mdia.mdhd.timescale.max(1));
                    let video = trak.mdia.hdlr.handler == FourCC::new(b"vide");
                    if video && reference.is_none() {
                        reference = Some(id);
                    }
                    codecs.extend(trak.mdia.minf.stbl.stsd.codecs.iter().map(codec_name));
                }
                if reference.is_none() {
                    reference = moov.trak.first().map(|t| t.tkhd.track_id);
                }
                tracks = moov.trak;
                for t in &mut tracks {
                    (t.tkhd.creation_time, t.tkhd.modification_time) = (0, 0);
                    (t.mdia.mdhd.creation_time, t.mdia.mdhd.modification_time) = (0, 0);
                }
                init_len = Some(end);
            }
            Prft::KIND => {
                let prft = Prft::decode(&mut body(r)?.as_slice()).map_err(decode)?;
                if start_ms.is_none() {
                    start_ms = ntp_to_unix_ms(prft.ntp_timestamp);
                }
                fragment_start.get_or_insert(pos);
            }
            Moof::KIND => {
                let moof = Moof::decode(&mut body(r)?.as_slice()).map_err(decode)?;
                let reference = reference.ok_or(ProbeError::MoofBeforeMoov)?;
                pending = Some(fragment_times(&moof, reference, &timescales));
                fragment_start.get_or_insert(pos);
            }
            k if k == FourCC::new(b"mdat") => {
                if let (Some((start, duration, key)), Some(offset)) = (pending.take(), fragment_start.take()) {
                    fragments.push(Fragment { offset, len: end - offset, start, duration, starts_with_keyframe: key });
                }
            }
            _ => {}
        }
        pos = end;
        r.seek(SeekFrom::Start(pos))?;
    }
    let init_len = init_len.ok_or(ProbeError::NoMoov)?;
    let duration = match (fragments.first(), fragments.last()) {
        (Some(first), Some(last)) => (last.start + last.duration - first.start).max(0.0),
        _ => 0.0,
    };
    Ok(Probe { init_len, tracks, timescales, codecs, start_ms, duration, fragments })
}

/// (type, whole box length), checked against the bytes left.
fn read_header<R: Read>(r: &mut R, left: u64) -> Result<(FourCC, u64), ProbeError> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).map_err(ProbeError::TruncatedHeader)?;
    let kind = FourCC::new(&[h[4], h[5], h[6], h[7]]);
    let size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let (header_len, box_len) = match size {
        0 => (8, left),
        1 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l).map_err(ProbeError::TruncatedHeader)?;
            (16, u64::from_be_bytes(l))
        }
        n => (8, n),
    };
    if box_len < header_len || box_len > left {
        return Err(ProbeError::Overrun { kind, len: box_len, left });
    }
    Ok((kind, box_len))
}

/// (start s, duration s, starts with a sync sample) of the reference track in `moof`.
fn fragment_times(moof: &Moof, reference: u32, timescales: &BTreeMap<u32, u32>) -> (f64, f64, bool) {
    let pick = moof.traf.iter().find(|t| t.tfhd.track_id == reference).or(moof.traf.first());
    let Some(traf) = pick else { return (0.0, 0.0, false) };
    let scale = f64::from(timescales.get(&traf.tfhd.track_id).copied().unwrap_or(1));
    let base = traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time);
    let mut ticks = 0u64;
    let mut first_flags = None;
    for trun in &traf.trun {
        match &trun.samples {
            // Counted, not iterated: the count comes from a file and may be anything up to 2^32.
            mp4_atom::TrunSamples::Inherited { count, first_flags: first } => {
                let each = u64::from(traf.tfhd.default_sample_duration.unwrap_or(0));
                ticks = ticks.saturating_add(each.saturating_mul(u64::from(*count)));
                if first_flags.is_none() && *count > 0 {
                    first_flags = Some(first.or(traf.tfhd.default_sample_flags).unwrap_or(0));
                }
            }
            samples => {
                for entry in samples.iter() {
                    let d = u64::from(entry.duration.or(traf.tfhd.default_sample_duration).unwrap_or(0));
                    ticks = ticks.saturating_add(d);
                    if first_flags.is_none() {
                        first_flags = Some(entry.flags.or(traf.tfhd.default_sample_flags).unwrap_or(0));
                    }
                }
            }
        }
    }
    let key = first_flags.is_some_and(|f| f & NON_SYNC == 0);
    (base as f64 / scale, ticks as f64 / scale, key)
}

/// The inverse of what the recorder wrote (the muxer's own conversion); `None` before 1970.
fn ntp_to_unix_ms(ntp: u64) -> Option<u64> {
    (ntp >> 32 >= NTP_UNIX_OFFSET).then(|| mux::unix_ms_from_ntp(ntp))
}

fn codec_name(codec: &mp4_atom::Codec) -> String {
    use mp4_atom::Codec as C;
    match codec {
        C::Avc1(_) => "h264".into(),
        C::Hev1(_) | C::Hvc1(_) => "h265".into(),
        C::Mp4a(_) => "aac".into(),
        C::Opus(_) => "opus".into(),
        C::Unknown(f, _) if *f == FourCC::new(b"ulaw") => "pcmu".into(),
        C::Unknown(f, _) if *f == FourCC::new(b"alaw") => "pcma".into(),
        C::Unknown(f, _) => f.to_string(),
        other => format!("{other:?}").split('(').next().unwrap_or("unknown").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_times_convert() {
        // 2026-11-21 00:00:00 UTC = 1795219200 Unix seconds; half a second in the fraction.
        let ntp = ((1_795_219_200 + NTP_UNIX_OFFSET) << 32) | 0x8000_0000;
        assert_eq!(ntp_to_unix_ms(ntp), Some(1_795_219_200_500));
        assert_eq!(ntp_to_unix_ms(5), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in
            [&b""[..], b"\0\0\0\x10moov", b"\0\0\0\x01moov\0\0\0\0\0\0\0\x04", b"\xff\xff\xff\xffmdat", &[0u8; 64]]
        {
            let mut c = std::io::Cursor::new(bytes);
            assert!(probe_reader(&mut c, bytes.len() as u64).is_err(), "{bytes:?}");
        }
    }
}
