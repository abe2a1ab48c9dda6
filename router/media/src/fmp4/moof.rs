//! The boxes written for every part — prft, moof (mfhd; per track a traf with tfhd, tfdt and trun) and the mdat
//! header — encoded by hand. They are written once per part of every recording, in wasm, where mp4-atom's generic
//! encoder (an entry struct of options per sample, a size pass, a box at a time) cost several times this. The
//! layout is fixed, so the sizes and data offsets are known before the first byte is written; the tests decode the
//! result with mp4-atom.

/// tfhd flag: data offsets are relative to the moof's first byte.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// trun flags: a data offset, then per sample a duration, a size, flags and (video) a composition offset.
const TRUN_DATA_OFFSET: u32 = 0x0001;
const TRUN_DURATION: u32 = 0x0100;
const TRUN_SIZE: u32 = 0x0200;
const TRUN_FLAGS: u32 = 0x0400;
const TRUN_CTS: u32 = 0x0800;

/// Bytes of each box this writes, header included, apart from a trun's entries.
const MOOF_HEADER: usize = 8;
const MFHD: usize = 16;
const TRAF_HEADER: usize = 8;
const TFHD: usize = 16;
const TFDT: usize = 20;
const TRUN_HEADER: usize = 20;
const PRFT: usize = 32;

/// One trun sample entry, in the form [`push_entry`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// pts − dts; only in runs that carry composition offsets (video).
    pub composition_offset: Option<i32>,
}

/// Appends a sample's trun entry to a run's `entries`. Every entry of a run must agree on `composition_offset`
/// being present, which is what [`Run::with_cts`] says.
pub fn push_entry(entries: &mut Vec<u8>, entry: Entry) {
    let mut bytes = [0u8; 16];
    bytes[0..4].copy_from_slice(&entry.duration.to_be_bytes());
    bytes[4..8].copy_from_slice(&entry.size.to_be_bytes());
    bytes[8..12].copy_from_slice(&entry.flags.to_be_bytes());
    let len = match entry.composition_offset {
        Some(cts) => {
            bytes[12..16].copy_from_slice(&cts.to_be_bytes());
            16
        }
        None => 12,
    };
    entries.extend_from_slice(&bytes[..len]);
}

/// One track's samples in a part: its traf.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The MP4 track id.
    pub track_id: u32,
    /// Decode time of the run's first sample (the tfdt).
    pub base_decode_time: u64,
    /// Whether the entries carry composition offsets.
    pub with_cts: bool,
    pub samples: u32,
    /// The entries, as [`push_entry`] wrote them.
    pub entries: &'a [u8],
    /// Bytes of the run's samples in the mdat, which holds the runs one after another in this order.
    pub data_len: usize,
}

/// Appends a prft (version 1): the wall-clock time `ntp_timestamp` of media time `media_time` of `track_id`,
/// taken when the sample came in (flags 0, "input").
pub fn write_prft(out: &mut Vec<u8>, track_id: u32, ntp_timestamp: u64, media_time: u64) {
    box_header(out, PRFT, b"prft");
    full_box(out, 1, 0);
    out.extend_from_slice(&track_id.to_be_bytes());
    out.extend_from_slice(&ntp_timestamp.to_be_bytes());
    out.extend_from_slice(&media_time.to_be_bytes());
}

/// Appends a moof with one traf per run (each with a single trun whose data offset points at its samples) and the
/// header of the mdat that follows it, holding the runs' data in order.
pub fn write_moof_and_mdat_header(out: &mut Vec<u8>, sequence: u32, runs: &[Run]) -> Result<(), String> {
    let traf_len = |run: &Run| TRAF_HEADER + TFHD + TFDT + TRUN_HEADER + run.entries.len();
    let moof_len = MOOF_HEADER + MFHD + runs.iter().map(traf_len).sum::<usize>();
    let data_len: usize = runs.iter().map(|r| r.data_len).sum();
    let mdat_header = if data_len + 8 > u32::MAX as usize { 16 } else { 8 };
    if u32::try_from(moof_len).is_err() {
        return Err(format!("a moof of {moof_len} bytes does not fit its 32-bit size"));
    }
    out.reserve(moof_len + mdat_header);

    box_header(out, moof_len, b"moof");
    box_header(out, MFHD, b"mfhd");
    full_box(out, 0, 0);
    out.extend_from_slice(&sequence.to_be_bytes());

    let mut data_offset = moof_len + mdat_header;
    for run in runs {
        let offset = i32::try_from(data_offset).map_err(|_| "a part exceeds 2 GiB".to_string())?;
        box_header(out, traf_len(run), b"traf");

        box_header(out, TFHD, b"tfhd");
        full_box(out, 0, TFHD_DEFAULT_BASE_IS_MOOF);
        out.extend_from_slice(&run.track_id.to_be_bytes());

        box_header(out, TFDT, b"tfdt");
        full_box(out, 1, 0);
        out.extend_from_slice(&run.base_decode_time.to_be_bytes());

        // Version 1: composition offsets are signed (B-frames may present before they decode).
        let cts = if run.with_cts { TRUN_CTS } else { 0 };
        box_header(out, TRUN_HEADER + run.entries.len(), b"trun");
        full_box(out, 1, TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | cts);
        out.extend_from_slice(&run.samples.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(run.entries);

        data_offset += run.data_len;
    }

    if mdat_header == 16 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(data_len as u64 + 16).to_be_bytes());
    } else {
        box_header(out, data_len + 8, b"mdat");
    }
    Ok(())
}

/// A box header with a 32-bit size (callers check that it fits).
fn box_header(out: &mut Vec<u8>, size: usize, kind: &[u8; 4]) {
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(kind);
}

/// A full box's version and 24-bit flags.
fn full_box(out: &mut Vec<u8>, version: u8, flags: u32) {
    out.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Decode, Header, Moof, Prft, ReferenceTime, Tfdt, TrunEntry, TrunSamples};

    fn run_entries(samples: &[(u32, u32, u32, Option<i32>)]) -> Vec<u8> {
        let mut entries = Vec::new();
        for &(duration, size, flags, composition_offset) in samples {
            push_entry(&mut entries, Entry { duration, size, flags, composition_offset });
        }
        entries
    }

    #[test]
    fn a_moof_decodes_with_mp4_atom_and_points_each_run_at_its_data() {
        let video = [(3000, 5000, 0x0200_0000, Some(6000)), (3000, 700, 0x0101_0000, Some(-3000))];
        let audio = [(1024, 300, 0x0200_0000, None)];
        let (v, a) = (run_entries(&video), run_entries(&audio));
        let runs = [
            Run { track_id: 1, base_decode_time: 90_000, with_cts: true, samples: 2, entries: &v, data_len: 5700 },
            Run {
                track_id: 2,
                base_decode_time: u64::from(u32::MAX) + 7,
                with_cts: false,
                samples: 1,
                entries: &a,
                data_len: 300,
            },
        ];
        let mut out = Vec::new();
        write_prft(&mut out, 1, 0x1234_5678_9abc_def0, 90_000);
        let moof_at = out.len();
        write_moof_and_mdat_header(&mut out, 42, &runs).expect("encodes");

        let mut buf = &out[..];
        let prft = Prft::decode(&mut buf).expect("prft");
        assert_eq!(
            prft,
            Prft {
                reference_track_id: 1,
                ntp_timestamp: 0x1234_5678_9abc_def0,
                media_time: 90_000,
                utc_time_semantics: ReferenceTime::Input
            }
        );
        let moof = Moof::decode(&mut buf).expect("moof");
        let mdat = Header::decode(&mut buf).expect("mdat header");
        assert!(buf.is_empty(), "nothing after the mdat header");
        assert_eq!(mdat.kind, mp4_atom::FourCC::new(b"mdat"));
        assert_eq!(mdat.size, Some(6000));

        assert_eq!(moof.mfhd.sequence_number, 42);
        assert_eq!(moof.traf.len(), 2);
        let head_len = (out.len() - moof_at) as i32;
        let expected: [(u32, u64, i32, Vec<TrunEntry>); 2] = [
            (
                1,
                90_000,
                head_len,
                video
                    .iter()
                    .map(|&(d, s, f, c)| TrunEntry {
                        duration: Some(d),
                        size: Some(s),
                        flags: Some(f),
                        cts: c.map(i64::from),
                    })
                    .collect(),
            ),
            (
                2,
                u64::from(u32::MAX) + 7,
                head_len + 5700,
                // A one-sample run's flags decode as mp4-atom's "first sample flags": the same bytes' meaning.
                audio
                    .iter()
                    .map(|&(d, s, f, _)| TrunEntry { duration: Some(d), size: Some(s), flags: Some(f), cts: None })
                    .collect(),
            ),
        ];
        for (traf, (track, tfdt, offset, entries)) in moof.traf.iter().zip(expected) {
            assert_eq!(traf.tfhd.track_id, track);
            assert!(traf.tfhd.default_base_is_moof);
            assert_eq!(traf.tfdt, Some(Tfdt { base_media_decode_time: tfdt }));
            assert_eq!(traf.trun.len(), 1);
            assert_eq!(traf.trun[0].data_offset, Some(offset), "data offset of track {track}");
            let TrunSamples::Explicit(decoded) = &traf.trun[0].samples else { panic!("explicit entries") };
            assert_eq!(decoded, &entries, "entries of track {track}");
        }
    }

    #[test]
    fn an_mdat_over_4_gib_gets_a_64_bit_size() {
        let entries = run_entries(&[(1, 1, 0, None)]);
        let run =
            Run { track_id: 1, base_decode_time: 0, with_cts: false, samples: 1, entries: &entries, data_len: 1 << 32 };
        let mut out = Vec::new();
        // The data offset still fits: only the mdat's size needs 64 bits.
        write_moof_and_mdat_header(&mut out, 1, &[run]).expect("encodes");
        let mut buf = &out[..];
        Moof::decode(&mut buf).expect("moof");
        let mdat = Header::decode(&mut buf).expect("mdat header");
        assert_eq!(mdat.size, Some(1 << 32));
        assert!(buf.is_empty());

        let run = Run { track_id: 1, base_decode_time: 0, with_cts: false, samples: 1, entries: &entries, data_len: 1 };
        let two = [Run { data_len: 1 << 31, ..run }, Run { data_len: 1, ..run }];
        let err = write_moof_and_mdat_header(&mut Vec::new(), 1, &two).expect_err("the second run is past 2 GiB");
        assert!(err.contains("2 GiB"), "{err}");
    }
}
