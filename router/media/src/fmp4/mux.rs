//! Fragmented MP4 bytes, with no IO: the init segment (ftyp + moov) of a set of tracks, and [`Fragment`], which
//! collects one part's samples and encodes them as prft + moof + mdat. The init segment is encoded by `mp4-atom`,
//! the per-part boxes by [`super::moof`].
//!
//! Tracks are addressed by their index in the slice given to [`init_segment`] / [`Fragment::new`]; the MP4 track id
//! of index `i` is `i + 1` (MP4 reserves 0, while the host's ids may be anything).

use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec as Entry, Dinf, Dops, Dref, DrefEntry, Encode, Esds, FixedPoint, FourCC, Ftyp, Hdlr,
    Hvc1, Hvcc, Mdhd, Mdia, Minf, Moov, Mp4a, Mvex, Mvhd, Opus, Smhd, Stbl, Stco, Stsd, Tkhd, Trak, Trex, Twos, Url,
    Visual, Vmhd,
};

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};

use super::moof;
use super::samples::{Payload, SampleData, TrackInfo};
use crate::Codec;

/// `sample_flags` of a sync sample: sample_depends_on = 2 (depends on no other sample).
pub const SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
pub const NON_SYNC: u32 = 0x0101_0000;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why a track cannot be recorded (VP8, a missing or malformed decoder configuration), if it cannot.
pub fn check_recordable(track: &TrackInfo) -> Result<(), String> {
    sample_entry(track, 1).map(|_| ())
}

/// The ftyp + moov that start every segment.
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Vec<u8>, String> {
    let mut brands: Vec<FourCC> = vec![b"iso6".into(), b"isom".into(), b"mp41".into()];
    if tracks.iter().any(|t| t.codec == Codec::H264) {
        brands.push(b"avc1".into());
    }
    let ftyp = Ftyp { major_brand: b"iso6".into(), minor_version: 0, compatible_brands: brands };

    let mut traks = Vec::with_capacity(tracks.len());
    let mut patches = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        let track_id = mp4_track_id(i);
        let (entry, patch) = sample_entry(track, track_id)?;
        if let Some(fourcc) = patch {
            patches.push((i, fourcc));
        }
        traks.push(trak(track, track_id, entry));
    }
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            duration: 0,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: mp4_track_id(tracks.len()),
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: (0..tracks.len())
                .map(|i| Trex { track_id: mp4_track_id(i), default_sample_description_index: 1, ..Default::default() })
                .collect(),
        }),
        trak: traks,
        ..Default::default()
    };

    let mut out = Vec::with_capacity(1024);
    ftyp.encode(&mut out).map_err(|e| format!("encoding ftyp: {e}"))?;
    let moov_at = out.len();
    moov.encode(&mut out).map_err(|e| format!("encoding moov: {e}"))?;
    for (i, fourcc) in patches {
        patch_sample_entry(&mut out[moov_at..], i, fourcc)?;
    }
    Ok(out)
}

pub fn mp4_track_id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX - 1).saturating_add(1)
}

fn trak(track: &TrackInfo, track_id: u32, entry: Entry) -> Trak {
    let video = track.codec.is_video();
    let (handler, name) = if video { (b"vide", "VideoHandler") } else { (b"soun", "SoundHandler") };
    Trak {
        tkhd: Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            volume: if video { 0.into() } else { 1.into() },
            width: FixedPoint::new(clamp_u16(track.width), 0),
            height: FixedPoint::new(clamp_u16(track.height), 0),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd { timescale: track.clock_rate, language: "und".into(), ..Default::default() },
            hdlr: Hdlr { handler: handler.into(), name: name.into() },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf { dref: Dref { entries: vec![DrefEntry::Url(Url { location: String::new() })] } },
                stbl: Stbl { stsd: Stsd { codecs: vec![entry] }, stco: Some(Stco::default()), ..Default::default() },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn clamp_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// The stsd entry of a track. G.711 has no sample entry in mp4-atom that it can encode, so it is encoded as a
/// QuickTime `twos` entry (the same SoundDescription version 0 layout) whose FourCC is then replaced by the returned
/// one: `ulaw` / `alaw`, which ffmpeg and QuickTime read as pcm_mulaw / pcm_alaw.
fn sample_entry(track: &TrackInfo, track_id: u32) -> Result<(Entry, Option<FourCC>), String> {
    let what = format!("track {} ({})", track.id, track.codec);
    if track.clock_rate == 0 {
        return Err(format!("{what}: clock rate 0"));
    }
    let visual = Visual {
        data_reference_index: 1,
        width: clamp_u16(track.width),
        height: clamp_u16(track.height),
        ..Default::default()
    };
    let channels = u16::try_from(track.channels).unwrap_or(0).max(1);
    let sample_rate = if track.sample_rate > 0 { track.sample_rate } else { track.clock_rate };
    let audio = Audio {
        data_reference_index: 1,
        channel_count: channels,
        sample_size: 16,
        // 16.16 fixed point: rates above 65535 Hz do not fit and are written as 0, which players ignore in favour of
        // the decoder configuration and the media timescale.
        sample_rate: FixedPoint::new(u16::try_from(sample_rate).unwrap_or(0), 0),
    };
    let entry = match track.codec {
        Codec::H264 => {
            let avcc = Avcc::decode_body(&mut track.config.as_slice()).map_err(|e| {
                format!("{what}: the decoder configuration is not an AVCDecoderConfigurationRecord ({e})")
            })?;
            if avcc.sequence_parameter_sets.is_empty() || avcc.length_size != 4 {
                return Err(format!(
                    "{what}: the decoder configuration needs an SPS and 4-byte NAL lengths (has {} SPS, {}-byte lengths)",
                    avcc.sequence_parameter_sets.len(),
                    avcc.length_size
                ));
            }
            Entry::Avc1(Avc1 { visual, avcc, ..Default::default() })
        }
        Codec::H265 => {
            let hvcc = Hvcc::decode_body(&mut track.config.as_slice()).map_err(|e| {
                format!("{what}: the decoder configuration is not an HEVCDecoderConfigurationRecord ({e})")
            })?;
            if hvcc.length_size_minus_one != 3 {
                return Err(format!(
                    "{what}: the decoder configuration has {}-byte NAL lengths; samples carry 4-byte ones",
                    u32::from(hvcc.length_size_minus_one) + 1
                ));
            }
            Entry::Hvc1(Hvc1 { visual, hvcc, ..Default::default() })
        }
        Codec::Vp8 => return Err(format!("{what}: VP8 cannot be recorded to MP4 by this plugin")),
        Codec::Aac => {
            let raw = if track.config.is_empty() {
                default_audio_specific_config(sample_rate, channels)
            } else {
                track.config.clone()
            };
            Entry::Mp4a(Mp4a {
                audio,
                esds: Esds {
                    es_desc: EsDescriptor {
                        es_id: u16::try_from(track_id).unwrap_or(0),
                        dec_config: DecoderConfig {
                            object_type_indication: 0x40, // MPEG-4 Audio
                            stream_type: 0x05,            // AudioStream
                            dec_specific: Some(DecoderSpecific { raw, ..Default::default() }),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                btrt: None,
                taic: None,
            })
        }
        Codec::Opus => Entry::Opus(Opus {
            audio: Audio { sample_rate: FixedPoint::new(48000, 0), ..audio },
            dops: Dops {
                // Channel mapping family 0 covers mono and stereo, all WebRTC sends; the host gives no OpusHead to
                // describe a multichannel layout.
                output_channel_count: channels.min(2) as u8,
                pre_skip: 0,
                input_sample_rate: sample_rate,
                output_gain: 0,
                channel_mapping: None,
            },
            btrt: None,
        }),
        Codec::Pcmu | Codec::Pcma => {
            let fourcc = if track.codec == Codec::Pcmu { b"ulaw" } else { b"alaw" };
            return Ok((Entry::Twos(Twos { audio, pcmc: None, chnl: None, btrt: None }), Some(fourcc.into())));
        }
    };
    Ok((entry, None))
}

/// AAC-LC AudioSpecificConfig for a track whose source gave none (2 bytes: object type, frequency index, channels).
fn default_audio_specific_config(sample_rate: u32, channels: u16) -> Vec<u8> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let freq = RATES.iter().position(|&r| r == sample_rate).unwrap_or(4) as u8;
    let chan = channels.min(7) as u8;
    let object_type = 2u8; // AAC LC
    vec![(object_type << 3) | (freq >> 1), ((freq & 1) << 7) | (chan << 3)]
}

/// Replaces the FourCC of trak `trak_index`'s first sample entry inside an encoded moov.
fn patch_sample_entry(moov: &mut [u8], trak_index: usize, fourcc: FourCC) -> Result<(), String> {
    let fail = || format!("internal error: no sample entry for trak {trak_index} in the encoded moov");
    let (moov_body, _) = find_child(moov, 0, moov.len(), b"moov", 0).ok_or_else(fail)?;
    let (trak, trak_end) = find_child(moov, moov_body, moov.len(), b"trak", trak_index).ok_or_else(fail)?;
    let (mdia, mdia_end) = find_child(moov, trak, trak_end, b"mdia", 0).ok_or_else(fail)?;
    let (minf, minf_end) = find_child(moov, mdia, mdia_end, b"minf", 0).ok_or_else(fail)?;
    let (stbl, stbl_end) = find_child(moov, minf, minf_end, b"stbl", 0).ok_or_else(fail)?;
    let (stsd, _) = find_child(moov, stbl, stbl_end, b"stsd", 0).ok_or_else(fail)?;
    // stsd body: version + flags (4), entry_count (4), then the first entry's size (4) and type (4).
    let at = stsd + 12;
    let slot = moov.get_mut(at..at + 4).ok_or_else(fail)?;
    slot.copy_from_slice(fourcc.as_ref());
    Ok(())
}

/// The `nth` child box named `kind` in `buf[start..end]`: (body start, box end). Only 32-bit sizes: this reads what
/// [`init_segment`] or [`Fragment::finish`] just encoded.
fn find_child(buf: &[u8], start: usize, end: usize, kind: &[u8; 4], mut nth: usize) -> Option<(usize, usize)> {
    let mut at = start;
    while at + 8 <= end {
        let size = u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize;
        if size < 8 || at + size > end {
            return None;
        }
        if buf.get(at + 4..at + 8)? == kind {
            if nth == 0 {
                return Some((at + 8, at + size));
            }
            nth -= 1;
        }
        at += size;
    }
    None
}

/// One sample handed to [`Fragment::push`], its timing already relative to the segment's start.
#[derive(Debug, Clone)]
pub struct FragmentSample<P> {
    /// Decode time in the track's timescale, counted from the segment's start.
    pub decode_time: u64,
    pub duration: u32,
    /// pts − dts.
    pub composition_offset: i32,
    pub sync: bool,
    pub wallclock_ms: Option<u64>,
    pub data: SampleData<P>,
}

/// A part ready to append: its boxes up to the mdat header (prft + moof + mdat header), then the mdat's contents as
/// ranges of the batch payloads, in file order.
#[derive(Debug)]
pub struct Part<P> {
    pub head: Vec<u8>,
    pub data: Vec<SampleData<P>>,
}

/// The samples of one part, per track, until [`Fragment::finish`] encodes them. Sample bytes are not copied: the
/// fragment holds ranges of the payloads they came in.
#[derive(Debug)]
pub struct Fragment<P> {
    trafs: Vec<TrafBuf<P>>,
}

#[derive(Debug)]
struct TrafBuf<P> {
    video: bool,
    /// The first sample's decode time (the traf's tfdt) and wall-clock time.
    first: Option<(u64, Option<u64>)>,
    /// The trun's entries, already encoded ([`moof::push_entry`]): a part's moof is then one copy per track.
    entries: Vec<u8>,
    samples: u32,
    /// The run's bytes; adjacent ranges of one payload are merged.
    data: Vec<SampleData<P>>,
    data_len: usize,
    duration: u64,
}

impl<P: Payload> Fragment<P> {
    pub fn new(tracks: &[TrackInfo]) -> Fragment<P> {
        Fragment {
            trafs: tracks
                .iter()
                .map(|t| TrafBuf {
                    video: t.codec.is_video(),
                    first: None,
                    entries: Vec::new(),
                    samples: 0,
                    data: Vec::new(),
                    data_len: 0,
                    duration: 0,
                })
                .collect(),
        }
    }

    /// Adds a sample to track `index`'s run; samples of a track must come in decode order.
    pub fn push(&mut self, index: usize, sample: FragmentSample<P>) {
        let Some(traf) = self.trafs.get_mut(index) else { return };
        if traf.first.is_none() {
            traf.first = Some((sample.decode_time, sample.wallclock_ms));
        }
        moof::push_entry(
            &mut traf.entries,
            moof::Entry {
                duration: sample.duration,
                size: sample.data.len,
                flags: if sample.sync { SYNC } else { NON_SYNC },
                composition_offset: traf.video.then_some(sample.composition_offset),
            },
        );
        traf.samples += 1;
        traf.data_len += sample.data.len as usize;
        traf.duration += u64::from(sample.duration);
        match traf.data.last_mut() {
            Some(last) if last.continues_with(&sample.data) => last.len += sample.data.len,
            _ => traf.data.push(sample.data),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.trafs.iter().all(|t| t.samples == 0)
    }

    /// Samples pushed to track `index` since the last [`finish`](Self::finish).
    pub fn samples(&self, index: usize) -> usize {
        self.trafs.get(index).map_or(0, |t| t.samples as usize)
    }

    /// Total duration of track `index`'s samples in this part, in its timescale.
    pub fn duration(&self, index: usize) -> u64 {
        self.trafs.get(index).map_or(0, |t| t.duration)
    }

    /// Bytes of sample data held.
    pub fn data_len(&self) -> usize {
        self.trafs.iter().map(|t| t.data_len).sum()
    }

    /// Encodes the part as prft + moof + mdat (`None` when no sample was pushed) and empties the fragment.
    /// `sequence` is the mfhd sequence number, increasing within a file.
    pub fn finish(&mut self, sequence: u32) -> Result<Option<Part<P>>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let used = || self.trafs.iter().enumerate().filter(|(_, t)| t.samples > 0);
        let mut head = Vec::with_capacity(256 + used().map(|(_, t)| t.entries.len()).sum::<usize>());

        // The reference track of the prft is the video track when the part has one: it is what a viewer seeks by.
        let reference = used().find(|(_, t)| t.video).or_else(|| used().next());
        if let Some((i, TrafBuf { first: Some((media_time, Some(wallclock))), .. })) = reference {
            moof::write_prft(&mut head, mp4_track_id(i), ntp_from_unix_ms(*wallclock), *media_time);
        }
        let runs: Vec<moof::Run> = used()
            .map(|(i, t)| moof::Run {
                track_id: mp4_track_id(i),
                base_decode_time: t.first.map_or(0, |f| f.0),
                with_cts: t.video,
                samples: t.samples,
                entries: &t.entries,
                data_len: t.data_len,
            })
            .collect();
        moof::write_moof_and_mdat_header(&mut head, sequence, &runs)?;

        let mut data = Vec::with_capacity(used().map(|(_, t)| t.data.len()).sum());
        for t in &mut self.trafs {
            // The entries' capacity is kept for the next part rather than regrown.
            t.entries.clear();
            t.samples = 0;
            data.append(&mut t.data);
            t.data_len = 0;
            t.first = None;
            t.duration = 0;
        }
        Ok(Some(Part { head, data }))
    }
}

/// 64-bit NTP time: seconds since 1900 in the high half, the fraction of a second in the low half.
pub fn ntp_from_unix_ms(ms: u64) -> u64 {
    let secs = ms / 1000 + NTP_UNIX_OFFSET;
    let frac = ((ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// Milliseconds since the Unix epoch of a 64-bit NTP time (the inverse of [`ntp_from_unix_ms`], to the ms).
pub fn unix_ms_from_ntp(ntp: u64) -> u64 {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let ms = ((ntp & 0xffff_ffff) * 1000 + (1 << 31)) >> 32;
    secs * 1000 + ms
}
