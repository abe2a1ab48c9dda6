//! A time span of a route's recordings as one fragmented MP4: the first file's init segment, then every
//! fragment from the last keyframe at or before the start to the one holding the end, across files, with decode
//! times moved onto one timeline (each segment's own starts near 0) and fragment numbers renumbered. Fragments
//! are copied, never re-encoded; only their small `moof` boxes are rewritten.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use mp4_atom::{Atom, Decode, Encode, FourCC, Moof, Prft};

use super::index::Recording;
use super::probe::{self, Probe, ProbeError};

/// Why a span could not be stitched.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: unexpected {kind} box of {size} bytes in a fragment", .path.display())]
    UnexpectedBox { path: PathBuf, kind: FourCC, size: u64 },
    #[error("{}: moof: {source}", .path.display())]
    Moof { path: PathBuf, source: mp4_atom::Error },
    #[error("{}: a fragment without mdat", .path.display())]
    NoMdat { path: PathBuf },
    /// Nothing was recorded in the span asked for (the API answers 404).
    #[error("no recorded media in that span")]
    Empty,
}

/// A piece of the stitched file.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Bytes(Vec<u8>),
    File { path: PathBuf, offset: u64, len: u64 },
}

impl Piece {
    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What to send for [from_ms, to_ms) of `recordings` (one route's, oldest first). Stops early, at the first
/// file whose tracks differ from the first one's (a parameter change): one MP4 cannot hold both.
pub fn plan(recordings: &[Recording], from_ms: i64, to_ms: i64) -> Result<Vec<Piece>, StitchError> {
    let mut pieces = Vec::new();
    let mut first: Option<(Probe, i64)> = None;
    // Output time of the first fragment's start, in seconds since the first file's start.
    let mut origin = None::<f64>;
    let mut sequence = 1u32;
    for rec in recordings.iter().filter(|r| r.end_ms() > from_ms && r.start_ms < to_ms) {
        let path = rec.file();
        let probed = probe::probe(&path)?;
        if let Some((f, _)) = &first {
            if f.tracks != probed.tracks {
                tracing::info!(path = %path.display(), "stitching stops at a file whose tracks differ");
                break;
            }
        } else {
            pieces.push(Piece::File { path: path.clone(), offset: 0, len: probed.init_len });
        }
        let file_start_ms = probed.start_ms.map_or(rec.start_ms, |ms| ms as i64);
        let base_ms = first.as_ref().map_or(file_start_ms, |(_, ms)| *ms);
        // Seconds of this file's timeline after the first file's start.
        let file_offset = (file_start_ms - base_ms) as f64 / 1000.0;
        let first_start = probed.fragments.first().map_or(0.0, |f| f.start);
        let (from_s, to_s) = ((from_ms - file_start_ms) as f64 / 1000.0, (to_ms - file_start_ms) as f64 / 1000.0);
        let frags = &probed.fragments;
        let mut begin = frags.iter().position(|f| f.start - first_start + f.duration > from_s).unwrap_or(frags.len());
        if origin.is_none() {
            // Start on a keyframe: back up to the last fragment that begins with one.
            while begin > 0 && !frags.get(begin).is_some_and(|f| f.starts_with_keyframe) {
                begin -= 1;
            }
        }
        let mut file = std::fs::File::open(&path).map_err(|source| StitchError::Read { path: path.clone(), source })?;
        for frag in frags[begin..].iter().take_while(|f| f.start - first_start < to_s) {
            let at = file_offset + frag.start;
            let origin = *origin.get_or_insert(at);
            // Shift so the span starts at 0: every track moves by the same time.
            let shift = file_offset - origin;
            let (header, mdat_offset) =
                rewrite(&mut file, frag.offset, frag.len, shift, &probed, sequence).map_err(|e| e.at(&path))?;
            sequence += 1;
            pieces.push(Piece::Bytes(header));
            pieces.push(Piece::File {
                path: path.clone(),
                offset: mdat_offset,
                len: frag.offset + frag.len - mdat_offset,
            });
        }
        if first.is_none() {
            first = Some((probed, file_start_ms));
        }
    }
    if origin.is_none() {
        return Err(StitchError::Empty);
    }
    Ok(pieces)
}

/// Reads the `prft`/`moof` boxes of the fragment at `offset` and returns them rewritten (decode times shifted by
/// `shift` seconds, sequence number `sequence`), and where its `mdat` begins.
fn rewrite(
    file: &mut std::fs::File,
    offset: u64,
    len: u64,
    shift: f64,
    probed: &Probe,
    sequence: u32,
) -> Result<(Vec<u8>, u64), FragmentError> {
    let mut out = Vec::new();
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        file.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 8];
        file.read_exact(&mut h)?;
        let size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let kind = FourCC::new(&[h[4], h[5], h[6], h[7]]);
        if kind == FourCC::new(b"mdat") {
            return Ok((out, pos));
        }
        if !(8..=(1 << 20)).contains(&size) || pos + size > end {
            return Err(FragmentError::UnexpectedBox { kind, size });
        }
        let mut buf = vec![0; size as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf)?;
        match kind {
            Moof::KIND => {
                let mut moof = Moof::decode(&mut buf.as_slice())?;
                moof.mfhd.sequence_number = sequence;
                for traf in &mut moof.traf {
                    let scale = f64::from(probed.timescales.get(&traf.tfhd.track_id).copied().unwrap_or(1));
                    if let Some(tfdt) = &mut traf.tfdt {
                        let moved = tfdt.base_media_decode_time as f64 + shift * scale;
                        tfdt.base_media_decode_time = moved.round().max(0.0) as u64;
                    }
                }
                let mut encoded = Vec::new();
                moof.encode(&mut encoded)?;
                // Data offsets count from the moof's start: a moof that changed size moves its data.
                let delta = encoded.len() as i64 - buf.len() as i64;
                if delta != 0 {
                    for trun in moof.traf.iter_mut().flat_map(|t| t.trun.iter_mut()) {
                        if let Some(o) = &mut trun.data_offset {
                            *o = (*o as i64 + delta) as i32;
                        }
                    }
                    encoded.clear();
                    moof.encode(&mut encoded)?;
                }
                out.extend_from_slice(&encoded);
            }
            // The wall-clock reference is per file; a stitched timeline has only the first one.
            Prft::KIND => {}
            _ => out.extend_from_slice(&buf),
        }
        pos += size;
    }
    Err(FragmentError::NoMdat)
}

/// What went wrong in one fragment; [`FragmentError::at`] names the file.
#[derive(Debug, thiserror::Error)]
enum FragmentError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("unexpected {kind} box of {size} bytes")]
    UnexpectedBox { kind: FourCC, size: u64 },
    #[error(transparent)]
    Moof(#[from] mp4_atom::Error),
    #[error("no mdat")]
    NoMdat,
}

impl FragmentError {
    fn at(self, path: &std::path::Path) -> StitchError {
        let path = path.to_path_buf();
        match self {
            FragmentError::Read(source) => StitchError::Read { path, source },
            FragmentError::UnexpectedBox { kind, size } => StitchError::UnexpectedBox { path, kind, size },
            FragmentError::Moof(source) => StitchError::Moof { path, source },
            FragmentError::NoMdat => StitchError::NoMdat { path },
        }
    }
}
