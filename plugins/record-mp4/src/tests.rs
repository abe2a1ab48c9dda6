//! The segmenter and muxer driven natively with an in-memory [`MemFiles`]; what they write is read back with
//! mp4-atom by a small fragmented-MP4 demuxer ([`demux`]) that also reads ffmpeg's output for the real-peer test.

use std::time::Duration;

use mp4_atom::{Any, Codec as Entry, Decode, Encode, Moof, Moov};

use crate::config::{Config, PathTemplate};
use crate::media::{Codec, Sample, TrackInfo};
use crate::mux;
use crate::recover::{Verdict, scan_bytes};
use crate::segmenter::{MemFiles, Segmenter};

/// 2026-11-21 10:00:00 UTC.
const T0_MS: u64 = 1_795_255_200_000;

/// An AVCDecoderConfigurationRecord (Baseline, 4-byte lengths) with a stand-in SPS and PPS: the muxer copies it.
fn avcc() -> Vec<u8> {
    let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5];
    let pps = [0x68, 0xce, 0x3c, 0x80];
    let mut v = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, sps.len() as u8];
    v.extend_from_slice(&sps);
    v.extend_from_slice(&[1, 0, pps.len() as u8]);
    v.extend_from_slice(&pps);
    v
}

fn h264(id: u32) -> TrackInfo {
    TrackInfo {
        id,
        codec: Codec::H264,
        clock_rate: 90_000,
        width: 640,
        height: 360,
        channels: 0,
        sample_rate: 0,
        config: avcc(),
    }
}

fn aac(id: u32) -> TrackInfo {
    TrackInfo {
        id,
        codec: Codec::Aac,
        clock_rate: 48_000,
        width: 0,
        height: 0,
        channels: 2,
        sample_rate: 48_000,
        config: vec![0x11, 0x90],
    }
}

fn audio(id: u32, codec: Codec, rate: u32, channels: u32) -> TrackInfo {
    TrackInfo { id, codec, clock_rate: rate, width: 0, height: 0, channels, sample_rate: rate, config: Vec::new() }
}

fn config(part: &str, segment: &str) -> Config {
    Config {
        part_duration: crate::config::parse_duration(part).expect("part"),
        segment_duration: crate::config::parse_duration(segment).expect("segment"),
        path: PathTemplate::parse("%route/%H-%M-%S").expect("template"),
    }
}

/// A media sample before batching: its bytes say which track and index it is, so the output can be checked.
#[derive(Debug, Clone)]
struct In {
    track: u32,
    dts: i64,
    pts: i64,
    keyframe: bool,
    wallclock_ms: u64,
    data: Vec<u8>,
}

/// `seconds` of 30 fps H.264 (track `video`, keyframe every `gop` frames, B-frame-like pts offsets) and 48 kHz AAC
/// (track `audio`), interleaved by time as the host would deliver them; the video starts `skip` frames into a GOP.
fn av_stream(video: u32, audio: u32, seconds: u32, gop: u32, skip: u32) -> Vec<In> {
    let mut out = Vec::new();
    let frames = seconds * 30;
    for i in 0..frames {
        let n = i + skip;
        let dts = i64::from(i) * 3000 + 90_000;
        let mut data = vec![0, 0, 0, 8, 0x65];
        data.extend_from_slice(&video.to_be_bytes()[1..]);
        data.extend_from_slice(&i.to_be_bytes());
        out.push(In {
            track: video,
            dts,
            pts: dts + if n.is_multiple_of(gop) { 3000 } else { 6000 },
            keyframe: n.is_multiple_of(gop),
            wallclock_ms: T0_MS + u64::from(i) * 100 / 3,
            data,
        });
    }
    let blocks = seconds * 48_000 / 1024;
    for i in 0..blocks {
        // Audio starts 50 ms before the video.
        let dts = i64::from(i) * 1024 + 48_000 - 2400;
        let mut data = audio.to_be_bytes().to_vec();
        data.extend_from_slice(&i.to_be_bytes());
        out.push(In {
            track: audio,
            dts,
            pts: dts,
            keyframe: true,
            wallclock_ms: T0_MS + (u64::from(i) * 1024 * 1000 / 48_000).saturating_sub(50),
            data,
        });
    }
    out.sort_by_key(|s| s.wallclock_ms);
    out
}

/// Feeds `samples` in batches of about `per_batch` samples.
fn feed<F: crate::segmenter::Files<Payload = Vec<u8>>>(seg: &mut Segmenter<F>, samples: &[In], per_batch: usize) {
    for chunk in samples.chunks(per_batch) {
        let mut payload = Vec::new();
        let mut index = Vec::new();
        for s in chunk {
            index.push(Sample {
                track: s.track,
                pts: s.pts,
                dts: s.dts,
                keyframe: s.keyframe,
                offset: payload.len() as u32,
                len: s.data.len() as u32,
                wallclock_ms: Some(s.wallclock_ms),
            });
            payload.extend_from_slice(&s.data);
        }
        seg.write(std::sync::Arc::new(payload), index).expect("write");
    }
}

/// One sample read back from a file.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    /// MP4 track id.
    track: u32,
    dts: u64,
    duration: u32,
    cts: i64,
    sync: bool,
    data: Vec<u8>,
}

/// A fragment: mfhd sequence, prft (ntp, media time, reference track), per traf (track, tfdt, sample count).
type FragmentSummary = (u32, Option<(u64, u64, u32)>, Vec<(u32, u64, usize)>);

#[derive(Debug)]
struct File {
    moov: Moov,
    fragments: Vec<FragmentSummary>,
    samples: Vec<Out>,
}

/// Reads a fragmented MP4 (ours or ffmpeg's `frag_keyframe+empty_moov+default_base_moof`) with mp4-atom.
fn demux(file: &[u8]) -> File {
    let mut at = 0;
    let mut moov = None;
    let mut fragments = Vec::new();
    let mut samples = Vec::new();
    let mut prft = None;
    let mut moof: Option<(usize, Moof)> = None;
    while at < file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().expect("size")) as usize;
        let kind = &file[at + 4..at + 8];
        assert!(size >= 8 && at + size <= file.len(), "box at {at} of size {size}");
        let body = &file[at..at + size];
        match kind {
            // ffmpeg ends its fragmented files with a random access index.
            b"ftyp" | b"mfra" | b"free" => {}
            b"moov" => moov = Some(Moov::decode(&mut &body[..]).expect("moov")),
            b"prft" => {
                let p = mp4_atom::Prft::decode(&mut &body[..]).expect("prft");
                prft = Some((p.ntp_timestamp, p.media_time, p.reference_track_id));
            }
            b"moof" => moof = Some((at, Moof::decode(&mut &body[..]).expect("moof"))),
            b"mdat" => {
                let (moof_at, m) = moof.take().expect("mdat follows a moof");
                let trex = &moov.as_ref().expect("moov first").mvex.as_ref().expect("mvex").trex;
                let mut trafs = Vec::new();
                for traf in &m.traf {
                    let id = traf.tfhd.track_id;
                    let defaults = trex.iter().find(|t| t.track_id == id).expect("trex");
                    let mut dts = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
                    trafs.push((id, dts, traf.trun.iter().map(|t| t.samples.len()).sum()));
                    for trun in &traf.trun {
                        let mut pos = moof_at + trun.data_offset.expect("data offset") as usize;
                        assert!(pos >= at + 8 && pos <= at + size, "data offset inside the mdat");
                        for e in trun.samples.iter() {
                            let duration = e
                                .duration
                                .or(traf.tfhd.default_sample_duration)
                                .unwrap_or(defaults.default_sample_duration);
                            let len = e.size.or(traf.tfhd.default_sample_size).unwrap_or(defaults.default_sample_size)
                                as usize;
                            let flags =
                                e.flags.or(traf.tfhd.default_sample_flags).unwrap_or(defaults.default_sample_flags);
                            samples.push(Out {
                                track: id,
                                dts,
                                duration,
                                cts: e.cts.unwrap_or(0),
                                sync: flags & 0x0001_0000 == 0,
                                data: file[pos..pos + len].to_vec(),
                            });
                            pos += len;
                            dts += u64::from(duration);
                        }
                        assert!(pos <= at + size, "samples inside the mdat");
                    }
                }
                fragments.push((m.mfhd.sequence_number, prft.take(), trafs));
            }
            other => panic!("unexpected box {:?}", String::from_utf8_lossy(other)),
        }
        at += size;
    }
    File { moov: moov.expect("moov"), fragments, samples }
}

fn only_file(files: &MemFiles) -> &[u8] {
    assert_eq!(files.files.len(), 1, "{:?}", files.files.keys());
    files.files.values().next().expect("one file")
}

#[test]
fn init_segment_describes_every_track() {
    let tracks = vec![h264(7), aac(0), audio(3, Codec::Opus, 48_000, 2), audio(4, Codec::Pcmu, 8000, 1)];
    let init = mux::init_segment(&tracks).expect("init");
    let mut buf = &init[..];
    let Any::Ftyp(ftyp) = Any::decode(&mut buf).expect("ftyp") else { panic!("ftyp first") };
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"avc1".into()));
    let moov = Moov::decode(&mut buf).expect("moov");
    assert!(buf.is_empty());
    assert_eq!(moov.mvhd.timescale, 1000);
    assert_eq!(moov.mvhd.next_track_id, 5);
    assert_eq!(moov.mvex.as_ref().map(|m| m.trex.len()), Some(4));
    let ids: Vec<u32> = moov.trak.iter().map(|t| t.tkhd.track_id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    let v = &moov.trak[0];
    assert_eq!(v.tkhd.width.integer(), 640);
    assert_eq!(v.tkhd.height.integer(), 360);
    assert!(v.tkhd.enabled);
    assert_eq!(v.mdia.mdhd.timescale, 90_000);
    assert_eq!(v.mdia.hdlr.handler, b"vide".into());
    assert!(v.mdia.minf.vmhd.is_some());
    let Entry::Avc1(avc1) = &v.mdia.minf.stbl.stsd.codecs[0] else { panic!("avc1") };
    assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
    let mut avcc_bytes = Vec::new();
    avc1.avcc.encode(&mut avcc_bytes).expect("avcc");
    assert_eq!(&avcc_bytes[8..], &avcc()[..], "the decoder configuration is copied");

    let a = &moov.trak[1];
    assert_eq!(a.mdia.mdhd.timescale, 48_000);
    assert_eq!(a.mdia.hdlr.handler, b"soun".into());
    assert!(a.mdia.minf.smhd.is_some());
    let Entry::Mp4a(mp4a) = &a.mdia.minf.stbl.stsd.codecs[0] else { panic!("mp4a") };
    let dsi = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().expect("AudioSpecificConfig");
    assert_eq!(dsi.raw, [0x11, 0x90]);
    assert_eq!(mp4a.audio.channel_count, 2);

    let Entry::Opus(opus) = &moov.trak[2].mdia.minf.stbl.stsd.codecs[0] else { panic!("Opus") };
    assert_eq!(opus.dops.output_channel_count, 2);
    assert_eq!(opus.dops.input_sample_rate, 48_000);

    let Entry::Unknown(fourcc, _) = &moov.trak[3].mdia.minf.stbl.stsd.codecs[0] else { panic!("ulaw") };
    assert_eq!(*fourcc, b"ulaw".into());
    assert_eq!(moov.trak[3].mdia.mdhd.timescale, 8000);

    // A-law too, and H.265 with a real HEVCDecoderConfigurationRecord shape.
    let init = mux::init_segment(&[audio(1, Codec::Pcma, 8000, 1)]).expect("alaw");
    assert!(init.windows(4).any(|w| w == b"alaw"));
    assert!(!init.windows(4).any(|w| w == b"twos"));
}

#[test]
fn unrecordable_tracks_are_skipped_or_refused() {
    let vp8 = TrackInfo { codec: Codec::Vp8, config: Vec::new(), ..h264(1) };
    let e = Segmenter::new(MemFiles::default(), "cam", vec![vp8.clone()], config("1s", "10m")).expect_err("vp8 only");
    assert!(e.contains("no track this recorder can write"), "{e}");
    let bad = TrackInfo { config: vec![1, 2, 3], ..h264(2) };
    assert!(mux::check_recordable(&bad).expect_err("bad avcC").contains("AVCDecoderConfigurationRecord"));

    let before = sluice_sdk::log::captured().len();
    let seg = Segmenter::new(MemFiles::default(), "cam", vec![vp8, aac(5)], config("1s", "10m")).expect("audio");
    assert_eq!(seg.tracks().map(|t| t.id).collect::<Vec<_>>(), [5]);
    let warnings: Vec<String> = sluice_sdk::log::captured()
        .into_iter()
        .skip(before)
        .filter(|(l, m)| *l == sluice_sdk::log::Level::Warn && m.contains("VP8"))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("not recording track 1 (VP8)"), "{warnings:?}");
}

#[test]
fn records_parts_with_continuous_timing() {
    let stream = av_stream(10, 11, 5, 30, 0);
    let mut seg =
        Segmenter::new(MemFiles::default(), "cam", vec![h264(10), aac(11)], config("1s", "10m")).expect("new");
    feed(&mut seg, &stream, 20);
    // Parts are appended as they complete, before finish: the init segment and 4 whole parts by now.
    assert_eq!(seg.files().appends, 5);
    assert_eq!(seg.files().syncs, 0);
    seg.finish().expect("finish");
    let files = seg.files();
    assert_eq!(files.committed, ["cam/10-00-00.mp4"]);
    assert_eq!(files.syncs, 1);
    let f = demux(only_file(files));

    let video: Vec<&Out> = f.samples.iter().filter(|s| s.track == 1).collect();
    let audio: Vec<&Out> = f.samples.iter().filter(|s| s.track == 2).collect();
    assert_eq!(video.len(), 150);
    // Audio from before the first keyframe (50 ms) is dropped: 234 blocks in 5 s, 2 or 3 of them earlier.
    let first_audio = u32::from_be_bytes(audio[0].data[4..8].try_into().expect("index"));
    assert_eq!(first_audio, 3);
    assert_eq!(audio.len(), 234 - 3);

    // Decode times start at 0 (video) and at the same instant (audio), and run on without gaps.
    assert_eq!(video[0].dts, 0);
    assert!(video[0].sync && !video[1].sync && video[30].sync);
    assert_eq!(video[0].cts, 3000);
    assert_eq!(video[1].cts, 6000);
    for (i, pair) in video.windows(2).enumerate() {
        assert_eq!(pair[0].dts + u64::from(pair[0].duration), pair[1].dts, "video sample {i}");
        assert_eq!(pair[0].duration, 3000);
    }
    assert_eq!(video[149].duration, 3000, "the last sample keeps the previous duration");
    assert_eq!(audio[0].dts, 3 * 1024 - 2400);
    for pair in audio.windows(2) {
        assert_eq!(pair[0].dts + u64::from(pair[0].duration), pair[1].dts);
        assert!(pair[0].sync);
    }
    // The bytes are the input's, in order.
    for (i, v) in video.iter().enumerate() {
        assert_eq!(u32::from_be_bytes(v.data[8..12].try_into().expect("index")), i as u32);
    }

    // One part per second of video, numbered from 1; each prft gives the wall clock of the part's first video
    // sample at the video track's tfdt.
    assert_eq!(f.fragments.len(), 5);
    for (n, (seq, prft, trafs)) in f.fragments.iter().enumerate() {
        assert_eq!(*seq, n as u32 + 1);
        let (v_track, v_tfdt, v_count) = trafs[0];
        assert_eq!((v_track, v_count), (1, 30));
        assert_eq!(v_tfdt, n as u64 * 90_000);
        let (ntp, media_time, reference) = prft.expect("prft");
        assert_eq!((media_time, reference), (v_tfdt, 1));
        assert_eq!(mux::unix_ms_from_ntp(ntp), T0_MS + n as u64 * 1000);
        assert_eq!(trafs.len(), 2);
    }
}

#[test]
fn waits_for_a_keyframe_and_rotates_on_keyframes() {
    // Starts 10 frames into a GOP; keyframes every second; segments of at least 2 s.
    let stream = av_stream(1, 2, 7, 30, 10);
    let mut seg =
        Segmenter::new(MemFiles::default(), "cam", vec![h264(1), aac(2)], config("500ms", "2s")).expect("new");
    feed(&mut seg, &stream, 7);
    seg.finish().expect("finish");
    let files = seg.files();
    // First keyframe at frame 20 (0.667 s); segments start at 0.667, 2.667, 4.667, 6.667 s.
    assert_eq!(files.committed, ["cam/10-00-00.mp4", "cam/10-00-02.mp4", "cam/10-00-04.mp4", "cam/10-00-06.mp4"]);
    let mut total = 0;
    for (n, path) in files.committed.iter().enumerate() {
        let f = demux(&files.files[path]);
        let video: Vec<&Out> = f.samples.iter().filter(|s| s.track == 1).collect();
        assert!(video[0].sync, "{path} starts on a keyframe");
        assert_eq!(video[0].dts, 0);
        let first = u32::from_be_bytes(video[0].data[8..12].try_into().expect("index"));
        assert_eq!(first, 20 + 60 * n as u32);
        let audio_start = f.samples.iter().find(|s| s.track == 2).map(|s| s.dts).expect("audio");
        assert!(audio_start < 1024, "{path}: audio starts at {audio_start}");
        assert_eq!(f.fragments[0].0, 1, "sequence numbers restart per file");
        total += video.len();
        // 500 ms parts: 15 frames each.
        assert!(f.fragments.iter().all(|(_, _, trafs)| trafs[0].2 <= 15));
    }
    assert_eq!(total, 210 - 20);
}

#[test]
fn audio_only_starts_at_once_and_rotates_anywhere() {
    let mut samples = Vec::new();
    for i in 0..300u32 {
        samples.push(In {
            track: 4,
            dts: i64::from(i) * 160,
            pts: i64::from(i) * 160,
            keyframe: false,
            wallclock_ms: T0_MS + u64::from(i) * 20,
            data: vec![0xff; 160],
        });
    }
    let mut seg =
        Segmenter::new(MemFiles::default(), "phone", vec![audio(4, Codec::Pcma, 8000, 1)], config("1s", "4s"))
            .expect("new");
    feed(&mut seg, &samples, 13);
    seg.finish().expect("finish");
    let files = seg.files();
    assert_eq!(files.committed, ["phone/10-00-00.mp4", "phone/10-00-04.mp4"]);
    let first = demux(&files.files["phone/10-00-00.mp4"]);
    assert_eq!(first.samples.len(), 200);
    assert!(first.samples.iter().all(|s| s.sync && s.duration == 160));
    assert_eq!(first.fragments.len(), 4);
    let second = demux(&files.files["phone/10-00-04.mp4"]);
    assert_eq!(second.samples.len(), 100);
    assert_eq!(second.samples[0].dts, 0);
}

#[test]
fn taken_names_get_a_suffix() {
    let mut files = MemFiles::default();
    files.files.insert("cam/10-00-00.mp4".into(), Vec::new());
    files.files.insert("cam/10-00-00-2.mp4".into(), Vec::new());
    let mut seg = Segmenter::new(files, "cam", vec![h264(1)], config("1s", "10m")).expect("new");
    let stream: Vec<In> = av_stream(1, 2, 1, 30, 0).into_iter().filter(|s| s.track == 1).collect();
    feed(&mut seg, &stream, 10);
    seg.finish().expect("finish");
    assert_eq!(seg.committed(), ["cam/10-00-00-3.mp4"]);
}

#[test]
fn track_changes_start_a_new_segment() {
    let stream = av_stream(1, 2, 4, 30, 0);
    // Split just before frame 60, a keyframe.
    let split = stream.iter().position(|s| s.track == 1 && s.dts == 90_000 + 60 * 3000).expect("frame 60");
    let (first, second) = stream.split_at(split);
    let mut seg = Segmenter::new(MemFiles::default(), "cam", vec![h264(1), aac(2)], config("1s", "10m")).expect("new");
    feed(&mut seg, first, 9);
    // Same tracks again (e.g. a reconnect with identical parameters): nothing changes.
    seg.update_tracks(vec![h264(1), aac(2)]).expect("same");
    assert!(seg.committed().is_empty());
    // New parameter sets: the segment is committed, the next one waits for a keyframe and has the new avcC.
    let mut changed = h264(1);
    changed.config[8] ^= 0x01;
    seg.update_tracks(vec![changed.clone(), aac(2)]).expect("changed");
    assert_eq!(seg.committed().len(), 1);
    assert_eq!(seg.current_path(), None);
    feed(&mut seg, second, 9);
    seg.finish().expect("finish");
    let files = seg.files();
    assert_eq!(files.committed.len(), 2);
    let a = demux(&files.files[&files.committed[0]]);
    let b = demux(&files.files[&files.committed[1]]);
    let Entry::Avc1(avc1) = &b.moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else { panic!("avc1") };
    assert_eq!(avc1.avcc.sequence_parameter_sets[0], changed.config[8..17]);
    let video_a = a.samples.iter().filter(|s| s.track == 1).count();
    let video_b: Vec<&Out> = b.samples.iter().filter(|s| s.track == 1).collect();
    assert!(video_b[0].sync);
    // The second half starts at frame 60, a keyframe: nothing is lost.
    assert_eq!(video_a + video_b.len(), 120);

    // A track set with nothing recordable idles; samples are ignored.
    let vp8 = TrackInfo { codec: Codec::Vp8, ..h264(1) };
    seg.update_tracks(vec![vp8]).expect("idle");
    feed(&mut seg, &av_stream(1, 2, 1, 30, 0), 10);
    assert_eq!(seg.current_path(), None);
}

#[test]
fn gaps_start_a_new_part_at_the_right_time() {
    let mut stream: Vec<In> = av_stream(1, 2, 2, 30, 0).into_iter().filter(|s| s.track == 1).collect();
    // A 5 s hole in the source after frame 45.
    for s in &mut stream[45..] {
        s.dts += 450_000;
        s.pts += 450_000;
    }
    let mut seg = Segmenter::new(MemFiles::default(), "cam", vec![h264(1)], config("1s", "10m")).expect("new");
    feed(&mut seg, &stream, 10);
    seg.finish().expect("finish");
    let f = demux(only_file(seg.files()));
    let s46 = &f.samples[45];
    assert_eq!(f.samples[44].duration, 3000);
    assert_eq!(s46.dts, 45 * 3000 + 450_000);
}

#[test]
fn timestamps_at_the_ends_of_their_range_do_not_overflow() {
    // A source's timestamps are passed on as they come: a jump across the whole i64 range is a gap (a new part),
    // not an overflow (a panic in debug builds, a wrapped decode time in release).
    let mut seg = Segmenter::new(MemFiles::default(), "cam", vec![h264(1)], config("1s", "10m")).expect("new");
    let frame = |dts: i64, pts: i64, keyframe: bool| In {
        track: 1,
        dts,
        pts,
        keyframe,
        wallclock_ms: T0_MS,
        data: vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }],
    };
    // Not keyframes after the first: a keyframe this far on would start a new segment, at 0 again.
    let stream = [
        frame(i64::MIN, i64::MAX, true),
        frame(i64::MIN + 3000, i64::MIN, false),
        frame(i64::MAX - 3000, i64::MAX, false),
        frame(i64::MAX, i64::MIN, false),
    ];
    feed(&mut seg, &stream, 1);
    seg.finish().expect("finish");
    let f = demux(only_file(seg.files()));
    assert_eq!(f.samples.len(), 4);
    assert_eq!((f.samples[0].dts, f.samples[0].duration), (0, 3000));
    // Before the jump: a codec default (30 fps) rather than the distance; after it: as far on as a decode time goes.
    assert_eq!(f.samples[1].duration, 3000);
    assert_eq!(f.samples[2].dts, i64::MAX as u64);
}

#[test]
fn bad_batches_are_errors() {
    let mut seg = Segmenter::new(MemFiles::default(), "cam", vec![h264(1)], config("1s", "10m")).expect("new");
    let s = Sample { track: 1, pts: 0, dts: 0, keyframe: true, offset: 4, len: u32::MAX, wallclock_ms: None };
    let e = seg.write(std::sync::Arc::new(vec![0; 8]), [s]).expect_err("outside");
    assert_eq!(e, "a sample of track 1 at bytes 4..+4294967295 lies outside the batch payload of 8 bytes");
    // Unknown tracks are ignored.
    seg.write(std::sync::Arc::new(vec![0; 8]), [Sample { track: 9, len: 8, offset: 0, ..s }]).expect("unknown track");
}

#[test]
fn recover_keeps_complete_parts_of_a_torn_file() {
    let stream = av_stream(1, 2, 2, 30, 0);
    let mut seg = Segmenter::new(MemFiles::default(), "cam", vec![h264(1), aac(2)], config("1s", "10m")).expect("new");
    feed(&mut seg, &stream, 5);
    seg.finish().expect("finish");
    let file = only_file(seg.files()).to_vec();
    // Fragment ends: after the init segment, each mdat closes one.
    let init_len = mux::init_segment(&[h264(1), aac(2)]).expect("init").len();
    let mut ends = Vec::new();
    let mut at = init_len;
    while at < file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().expect("size")) as usize;
        if &file[at + 4..at + 8] == b"mdat" {
            ends.push(at + size);
        }
        at += size;
    }
    assert_eq!(ends.len(), 2);
    assert_eq!(scan_bytes(&file), Verdict::Keep { len: file.len() as u64, fragments: 2 });
    for cut in 0..=file.len() {
        let verdict = scan_bytes(&file[..cut]);
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        match complete {
            0 => assert!(matches!(verdict, Verdict::Remove(_)), "cut at {cut}: {verdict:?}"),
            n => assert_eq!(verdict, Verdict::Keep { len: ends[n - 1] as u64, fragments: n as u32 }, "cut at {cut}"),
        }
    }
    // What recover keeps is a file the demuxer reads whole.
    let Verdict::Keep { len, .. } = scan_bytes(&file[..ends[1] - 1]) else { panic!("keep") };
    let kept = demux(&file[..len as usize]);
    assert_eq!(kept.fragments.len(), 1);
    // Garbage never panics.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut junk = file[..init_len].to_vec();
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk.push(x as u8);
        }
        let _ = scan_bytes(&junk);
    }
}

#[test]
fn durations_of_last_samples_fall_back_to_codec_defaults() {
    let tracks = vec![h264(1), aac(2), audio(3, Codec::Opus, 48_000, 2), audio(4, Codec::Pcmu, 8000, 1)];
    let mut seg = Segmenter::new(MemFiles::default(), "cam", tracks, config("1s", "10m")).expect("new");
    let mk = |track, len| Sample { track, pts: 0, dts: 0, keyframe: true, offset: 0, len, wallclock_ms: Some(T0_MS) };
    seg.write(std::sync::Arc::new(vec![0; 200]), [mk(1, 10), mk(2, 10), mk(3, 10), mk(4, 200)]).expect("write");
    seg.finish().expect("finish");
    let f = demux(only_file(seg.files()));
    let durations: Vec<(u32, u32)> = f.samples.iter().map(|s| (s.track, s.duration)).collect();
    assert_eq!(durations, [(1, 3000), (2, 1024), (3, 960), (4, 200)]);
}

#[test]
fn fragment_duration_helpers() {
    assert_eq!(mux::unix_ms_from_ntp(mux::ntp_from_unix_ms(T0_MS + 123)), T0_MS + 123);
    assert_eq!(mux::ntp_from_unix_ms(0) >> 32, 2_208_988_800);
    assert_eq!(Duration::from_millis(1500), crate::config::parse_duration("1500ms").expect("ms"));
}

/// The real peer: ffmpeg encodes test clips to fragmented MP4, their samples go through the segmenter, and
/// ffprobe/ffmpeg must read the result with the right codecs, frame counts and duration, decoding without errors.
/// Skipped when ffmpeg is not installed.
#[test]
fn ffmpeg_reads_what_we_write() {
    use std::process::Command;
    let have = |tool: &str| Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success());
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("ffmpeg/ffprobe not found: skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("record-mp4-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let ffmpeg = |args: &[&str]| {
        let out = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().expect("ffmpeg");
        assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let lavfi = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
    ];
    let frag =
        ["-t", "5", "-g", "30", "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov+default_base_moof"];

    // H.264 (with B-frames) + AAC.
    let avc = dir.join("avc.mp4");
    let avc_path = avc.to_str().expect("utf-8 path");
    ffmpeg(
        &[&lavfi[..], &["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-c:a", "aac"], &frag, &[avc_path]]
            .concat(),
    );
    let (tracks, samples) = host_view(&demux(&std::fs::read(&avc).expect("read")));
    let expected = probe(&avc);
    for (segment, files) in [("10m", 1), ("2s", 3)] {
        let out = remux(&dir.join(format!("avc-{segment}")), &tracks, &samples, segment);
        assert_eq!(out.len(), files, "{segment}: {out:?}");
        check_against(&out, &expected, &["h264", "aac"]);
    }

    // H.265 + Opus.
    let hevc = dir.join("hevc.mp4");
    let hevc_path = hevc.to_str().expect("utf-8 path");
    let x265 = ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1", "-x265-params", "log-level=error"];
    ffmpeg(&[&lavfi[..], &x265, &["-c:a", "libopus"], &frag, &[hevc_path]].concat());
    let (tracks, samples) = host_view(&demux(&std::fs::read(&hevc).expect("read")));
    let out = remux(&dir.join("hevc"), &tracks, &samples, "10m");
    check_against(&out, &probe(&hevc), &["hevc", "opus"]);

    // H.264 + G.711 µ-law in 20 ms frames, as an RTSP camera sends it.
    let ulaw = ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-t", "5", "-f", "mulaw", "-"]);
    let (mut tracks, samples) = host_view(&demux(&std::fs::read(&avc).expect("read")));
    tracks.retain(|t| t.codec == Codec::H264);
    tracks.push(audio(99, Codec::Pcmu, 8000, 1));
    let mut samples: Vec<In> = samples.into_iter().filter(|s| s.track == tracks[0].id).collect();
    for (i, frame) in ulaw.chunks(160).enumerate() {
        let dts = i as i64 * 160;
        let wallclock_ms = T0_MS + i as u64 * 20;
        samples.push(In { track: 99, dts, pts: dts, keyframe: true, wallclock_ms, data: frame.to_vec() });
    }
    samples.sort_by_key(|s| s.wallclock_ms);
    let out = remux(&dir.join("g711"), &tracks, &samples, "10m");
    let report = probe(&out[0]);
    assert_eq!(report[0], "h264|150", "{report:?}");
    assert!(report[1].starts_with("pcm_mulaw|"), "{report:?}");
    let duration: f64 = report[2].parse().expect("duration");
    assert!((duration - 5.0).abs() < 0.1, "{report:?}");
    assert_eq!(decode_errors(&out[0]), "");

    let _ = std::fs::remove_dir_all(&dir);
}

/// A source file's tracks and samples as the host would hand them over, wall clock starting at [`T0_MS`].
fn host_view(source: &File) -> (Vec<TrackInfo>, Vec<In>) {
    let mut tracks = Vec::new();
    for trak in &source.moov.trak {
        let id = trak.tkhd.track_id;
        let clock_rate = trak.mdia.mdhd.timescale;
        let body = |atom: &dyn Fn(&mut Vec<u8>)| {
            let mut c = Vec::new();
            atom(&mut c);
            c[8..].to_vec()
        };
        let (codec, width, height, channels, config) = match &trak.mdia.minf.stbl.stsd.codecs[0] {
            Entry::Avc1(e) => {
                let config = body(&|c| e.avcc.encode(c).expect("avcC"));
                (Codec::H264, e.visual.width, e.visual.height, 0, config)
            }
            Entry::Hvc1(e) => {
                let config = body(&|c| e.hvcc.encode(c).expect("hvcC"));
                (Codec::H265, e.visual.width, e.visual.height, 0, config)
            }
            Entry::Mp4a(e) => {
                let asc = e.esds.es_desc.dec_config.dec_specific.as_ref().expect("AudioSpecificConfig");
                (Codec::Aac, 0, 0, e.audio.channel_count, asc.raw.clone())
            }
            Entry::Opus(e) => (Codec::Opus, 0, 0, u16::from(e.dops.output_channel_count), Vec::new()),
            other => panic!("unexpected source codec {other:?}"),
        };
        let sample_rate = if codec.is_video() { 0 } else { clock_rate };
        let (width, height, channels) = (width.into(), height.into(), channels.into());
        tracks.push(TrackInfo { id, codec, clock_rate, width, height, channels, sample_rate, config });
    }
    let clock_of = |id: u32| tracks.iter().find(|t| t.id == id).map(|t| u64::from(t.clock_rate)).expect("track");
    let mut samples: Vec<In> = source
        .samples
        .iter()
        .map(|s| In {
            track: s.track,
            dts: s.dts as i64,
            pts: s.dts as i64 + s.cts,
            keyframe: s.sync,
            wallclock_ms: T0_MS + s.dts * 1000 / clock_of(s.track),
            data: s.data.clone(),
        })
        .collect();
    samples.sort_by_key(|s| s.wallclock_ms);
    (tracks, samples)
}

/// Records `samples` into `dir` with 1 s parts; the committed files.
fn remux(dir: &std::path::Path, tracks: &[TrackInfo], samples: &[In], segment: &str) -> Vec<std::path::PathBuf> {
    let files = crate::segmenter::DirFiles::new(dir);
    let mut seg = Segmenter::new(files, "demo", tracks.to_vec(), config("1s", segment)).expect("new");
    feed(&mut seg, samples, 12);
    seg.finish().expect("finish");
    seg.committed().iter().map(|p| dir.join(p)).collect()
}

/// ffprobe's codec|frames per stream, then the duration.
fn probe(path: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames"])
        .args(["-show_entries", "format=duration", "-of", "compact=p=0:nk=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    eprintln!("{}: {}", path.display(), report.join(" | "));
    report
}

fn decode_errors(path: &std::path::Path) -> String {
    let out =
        std::process::Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output();
    String::from_utf8_lossy(&out.expect("ffmpeg").stderr).into_owned()
}

/// The recorded files together have the source's codecs, frame counts (audio within a frame per file) and
/// duration (within 0.1 s per file), and decode cleanly.
fn check_against(out: &[std::path::PathBuf], source: &[String], codecs: &[&str; 2]) {
    let field = |line: &str, i: usize| line.split('|').nth(i).unwrap_or("").to_string();
    let (mut video, mut sound, mut duration) = (0u64, 0u64, 0f64);
    for path in out {
        let report = probe(path);
        assert_eq!(decode_errors(path), "", "{} decodes cleanly", path.display());
        assert_eq!([field(&report[0], 0), field(&report[1], 0)], [codecs[0], codecs[1]], "{report:?}");
        video += field(&report[0], 1).parse::<u64>().expect("video frames");
        sound += field(&report[1], 1).parse::<u64>().expect("audio frames");
        duration += report[2].parse::<f64>().expect("duration");
    }
    let n = out.len() as u64;
    assert_eq!(video, field(&source[0], 1).parse::<u64>().expect("source video frames"));
    let src_sound: u64 = field(&source[1], 1).parse().expect("source audio frames");
    assert!(sound.abs_diff(src_sound) <= n, "audio frames {sound} vs {src_sound}");
    let src_duration: f64 = source[2].parse().expect("source duration");
    assert!((duration - src_duration).abs() < 0.1 * n as f64, "duration {duration} vs {src_duration}");
}
