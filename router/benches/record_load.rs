//! Recording capacity on one core: N concurrent 4 Mbit/s streams (H.264 30 fps + AAC) recorded to fragmented
//! MP4 through the plugin path (the route's frames laid out as a batch -> `builtin:record-mp4` in wasmtime ->
//! storage host calls -> disk), against the same muxer compiled natively, handed the same frames laid out the same
//! way and writing through the router's storage layer (the anchor: a recorder built into the router), and, for
//! reference, the native muxer handed one contiguous buffer per batch made in advance, writing straight to `std::fs`.
//!
//! `sync; echo 1 > /proc/sys/vm/drop_caches; taskset -c 1 cargo bench -p sluice --bench record_load -- [STREAMS]
//! [SECONDS]` (default 100 streams, 10 s of media each; dropping the page cache first makes runs repeatable).
//! Single-threaded on one pinned core, so the time it is busy is its CPU time; the paths run interleaved, batch
//! by batch, so the file system is in the same state for all. Targets (issue 7): >= 100 streams per core; plugin
//! CPU <= 1.2x native. Results go to BENCHMARKS.md.

use std::time::Duration;

use sluice::config::model::{BuiltinPlugin, PluginConfig, PluginGrants, PluginSource, StorageGrant};
use sluice::plugin::PluginHost;
use sluice::plugin::sink::{MediaBatch, Sample, Track};
use sluice::plugin::storage::{OpenFile, Storage, StorageError, Storages};
use sluice_plugin_record_mp4 as native;

const FPS: i64 = 30;
const VIDEO_BPS: usize = 3_872_000;
const AUDIO_FRAME: usize = 683; // AAC at 48 kHz, 1024 samples: 128 kbit/s
const GOP: i64 = 60;
const BATCH_MS: i64 = 250;

/// Time since some fixed instant. The bench runs on one pinned core and never waits (writes land in the page cache),
/// so elapsed time there is its CPU time; the kernel's per-thread CPU clocks in this VM advance in whole scheduler
/// ticks (1 ms), too coarse to split a batch between the two paths.
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A batch as it is built: one payload and its sample index.
struct Batch {
    /// Laid out track by track in one buffer, for the bare native path.
    payload: std::sync::Arc<Vec<u8>>,
    samples: Vec<Sample>,
    /// Each sample's bytes in its own buffer, in arrival order: the frames as a route holds them, which the
    /// router's batcher hands to the plugin without copying.
    frames: Vec<bytes::Bytes>,
}

/// `seconds` of one stream as the router batches it: every 250 ms, one payload and its sample index.
fn batches(seconds: i64) -> Vec<Batch> {
    let frame = VIDEO_BPS / 8 / FPS as usize;
    let mut out = Vec::new();
    let (mut v, mut a) = (0i64, 0i64);
    for window in 0..seconds * 1000 / BATCH_MS {
        let end_ms = (window + 1) * BATCH_MS;
        // In arrival order, one buffer.
        let (mut payload, mut samples) = (Vec::new(), Vec::new());
        let wall = 1_795_219_200_000 + end_ms as u64;
        loop {
            let v_ms = v * 1000 / FPS;
            let a_ms = a * 1024 * 1000 / 48_000;
            if v_ms.min(a_ms) >= end_ms {
                break;
            }
            let offset = payload.len() as u32;
            if v_ms <= a_ms {
                // Keyframes 4x the average, P-frames a little smaller: about VIDEO_BPS overall.
                let key = v % GOP == 0;
                let len = if key { frame * 4 } else { frame * (GOP as usize - 4) / (GOP as usize - 1) };
                payload.extend_from_slice(&((len - 4) as u32).to_be_bytes());
                payload.push(if key { 0x65 } else { 0x41 });
                payload.resize(offset as usize + len, 0xa5);
                let (pts, dts) = (v * 3000, v * 3000);
                samples.push(Sample {
                    track: 0,
                    pts,
                    dts,
                    keyframe: key,
                    offset,
                    len: len as u32,
                    wallclock_ms: Some(wall),
                });
                v += 1;
            } else {
                payload.resize(offset as usize + AUDIO_FRAME, 0x21);
                let t = a * 1024;
                let len = AUDIO_FRAME as u32;
                samples.push(Sample {
                    track: 1,
                    pts: t,
                    dts: t,
                    keyframe: true,
                    offset,
                    len,
                    wallclock_ms: Some(wall),
                });
                a += 1;
            }
        }
        out.push(by_track(&payload, samples));
    }
    out
}

/// The batch as the router's batcher sends it: samples in arrival order, the payload laid out track by track; and
/// each sample's bytes in a buffer of its own, as a route holds frames.
fn by_track(arrival: &[u8], mut samples: Vec<Sample>) -> Batch {
    let bytes = |s: &Sample| &arrival[s.offset as usize..][..s.len as usize];
    let frames = samples.iter().map(|s| bytes::Bytes::copy_from_slice(bytes(s))).collect();
    let mut payload = Vec::with_capacity(arrival.len());
    for track in [0, 1] {
        for s in samples.iter_mut().filter(|s| s.track == track) {
            let at = payload.len() as u32;
            payload.extend_from_slice(bytes(s));
            s.offset = at;
        }
    }
    Batch { payload: std::sync::Arc::new(payload), samples, frames }
}

fn tracks() -> Vec<Track> {
    let video = sluice::egress::record::wit_track(&sluice::ingest::demo::clip().track);
    let audio = Track {
        id: 1,
        codec: sluice::plugin::sink::Codec::Aac,
        clock_rate: 48_000,
        width: 0,
        height: 0,
        channels: 2,
        sample_rate: 48_000,
        config: vec![0x11, 0x90],
    };
    vec![video, audio]
}

fn native_tracks(tracks: &[Track]) -> Vec<native::media::TrackInfo> {
    tracks
        .iter()
        .map(|t| native::media::TrackInfo {
            id: t.id,
            codec: if t.id == 0 { native::media::Codec::H264 } else { native::media::Codec::Aac },
            clock_rate: t.clock_rate,
            width: t.width,
            height: t.height,
            channels: t.channels,
            sample_rate: t.sample_rate,
            config: t.config.clone(),
        })
        .collect()
}

fn native_sample(s: &Sample) -> native::media::Sample {
    native::media::Sample {
        track: s.track,
        pts: s.pts,
        dts: s.dts,
        keyframe: s.keyframe,
        offset: s.offset,
        len: s.len,
        wallclock_ms: s.wallclock_ms,
    }
}

fn report(what: &str, streams: usize, seconds: f64, busy: Duration) {
    let media = streams as f64 * seconds;
    println!(
        "{what:<34} {streams} streams x {seconds} s: {:>6.3} s CPU, {:>6.3} ms CPU per stream-second -> {:>5.0} real-time 4 Mbit/s streams per core",
        busy.as_secs_f64(),
        busy.as_secs_f64() * 1e3 / media,
        media / busy.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let streams: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let input: std::rc::Rc<[Batch]> = batches(seconds).into();
    let bytes: usize = input.iter().map(|b| b.payload.len()).sum();
    println!(
        "input: {:.2} Mbit/s per stream, {} batches of 250 ms",
        bytes as f64 * 8.0 / seconds as f64 / 1e6,
        input.len()
    );
    let tracks = tracks();
    // On the disk next to the build, not a tmpfs: the page-cache writes are part of the cost.
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir_in(base).expect("tempdir")).collect();
    let storage = Storages::default().open(dirs[1].path(), None, None).expect("storage");
    let mut paths: [Box<dyn Path>; 3] = [
        Box::new(PluginPath::new(&input, &tracks, streams, dirs[0].path())),
        Box::new(NativePath::new(input.clone(), &tracks, streams, RouterFiles(storage))),
        Box::new(NativePath::new(input.clone(), &tracks, streams, native::segmenter::DirFiles::new(dirs[2].path()))),
    ];
    const NAMES: [&str; 3] =
        ["plugin (wasmtime, storage host)", "native (router storage): anchor", "native (bare std::fs)"];

    // The first batch opens every segment file (a folder and a file each): timed apart, as a 10-minute segment
    // opens once per 2,400 batches in real use while a 10 s run would weigh it 60 times that.
    let opening: Vec<Duration> = paths.iter_mut().map(|p| p.write(0)).collect();
    // Then the paths run batch by batch, interleaved, the order rotating: the file system's cost of a write depends
    // on its state (fresh or reused page-cache pages, inodes freed lately, writeback), which then weighs on all
    // alike rather than on whichever path happens to run last. Batches that complete a 1 s part (and write it) are
    // also counted apart from the others.
    let mut busy = [Duration::ZERO; 3];
    let mut split = [[Duration::ZERO; 2]; 3];
    let mut calls = [0u32; 2];
    for n in 1..input.len() {
        let writes_part = usize::from(n % (1000 / BATCH_MS as usize) == 0);
        calls[writes_part] += 1;
        for k in 0..3 {
            let i = (n + k) % 3;
            let took = paths[i].write(n);
            busy[i] += took;
            split[i][writes_part] += took;
        }
    }
    let memory = paths.into_iter().map(|p| p.finish()).max().unwrap_or(0);

    let measured = seconds as f64 - BATCH_MS as f64 / 1000.0;
    for i in 0..3 {
        report(NAMES[i], streams, measured, busy[i]);
    }
    let ratio = |a: usize, b: usize| busy[a].as_secs_f64() / busy[b].as_secs_f64();
    println!("plugin / native CPU: {:.2}x (against bare std::fs: {:.2}x)", ratio(0, 1), ratio(0, 2));
    let per_call = |d: Duration, n: u32| d.as_secs_f64() * 1e6 / f64::from(n.max(1)) / streams as f64;
    for (what, part) in [("a batch that writes a part", 1), ("any other batch", 0)] {
        let each: Vec<String> = (0..3).map(|i| format!("{:.1}", per_call(split[i][part], calls[part]))).collect();
        println!("per recording, {what} (plugin, anchor, bare), us: {}", each.join(", "));
    }
    let each: Vec<String> = opening.iter().map(|d| format!("{:.2}", d.as_secs_f64() * 1e3 / streams as f64)).collect();
    println!("opening the first segment (plugin, anchor, bare), ms per recording: {}", each.join(", "));
    println!("largest recorder instance memory: {:.1} MiB", memory as f64 / (1 << 20) as f64);
}

/// One way of recording every stream.
trait Path {
    /// Batch `n` to every stream; the time it took.
    fn write(&mut self, n: usize) -> Duration;
    /// Ends the recordings; the largest instance memory (plugin) or 0.
    fn finish(self: Box<Self>) -> usize;
}

/// Recordings through `builtin:record-mp4` in wasmtime, writing through the storage host interface.
struct PluginPath {
    sessions: Vec<sluice::plugin::sink::RecorderSession>,
    /// Every batch's samples and frames, in arrival order.
    input: Vec<(Vec<Sample>, Vec<bytes::Bytes>)>,
    /// Keeps the plugin (and its storage) loaded while the sessions run.
    _plugin: sluice::plugin::Plugin,
}

impl PluginPath {
    fn new(input: &[Batch], tracks: &[Track], streams: usize, dir: &std::path::Path) -> PluginPath {
        let source = PluginSource::Builtin(BuiltinPlugin::RecordMp4);
        let config = PluginConfig {
            name: "mp4".into(),
            limits: source.default_limits(),
            source,
            config: serde_json::json!({ "segment_duration": "10m", "part_duration": "1s" }),
            grants: PluginGrants {
                storage: Some(StorageGrant { dir: dir.to_path_buf(), quota_bytes: None, max_age: None }),
                env: Vec::new(),
            },
            mount: None,
        };
        let host = PluginHost::shared(None).expect("engine");
        let bytes = sluice::plugin::builtin_bytes(BuiltinPlugin::RecordMp4).expect("built in");
        let plugin = host.load(&config, bytes).expect("load");
        let sink = plugin.as_sink().expect("sink");
        let sessions = (0..streams).map(|i| sink.open(&format!("cam{i}"), tracks).expect("recorder")).collect();
        let input = input.iter().map(|b| (b.samples.clone(), b.frames.clone())).collect();
        PluginPath { sessions, input, _plugin: plugin }
    }
}

impl Path for PluginPath {
    fn write(&mut self, n: usize) -> Duration {
        let (samples, frames) = &self.input[n];
        let began = now();
        for s in &mut self.sessions {
            // What the router's batcher does when it sends a batch: the frames laid out by track, not copied.
            let mut samples = samples.clone();
            let payload = sluice::egress::record::lay_out(&mut samples, frames, [0, 1].into_iter());
            s.write(MediaBatch { payload, samples }).expect("write");
        }
        began.elapsed()
    }

    fn finish(self: Box<Self>) -> usize {
        let memory = self.sessions.iter().map(|s| s.memory()).max().unwrap_or(0);
        for s in self.sessions {
            s.finish().expect("finish");
        }
        memory
    }
}

/// The same muxer and batches compiled natively, writing through `F`.
struct NativePath<F: Feed> {
    recorders: Vec<native::segmenter::Segmenter<F>>,
    input: std::rc::Rc<[Batch]>,
}

/// How a native path is handed a batch, in the timed section: in what form its `Files` take the payload.
trait Feed: native::segmenter::Files + Clone {
    fn feed(batch: &Batch) -> (std::sync::Arc<Self::Payload>, Vec<native::media::Sample>);
}

impl<F: Feed> NativePath<F> {
    fn new(input: std::rc::Rc<[Batch]>, tracks: &[Track], streams: usize, files: F) -> NativePath<F> {
        let config = native::config::Config {
            part_duration: Duration::from_secs(1),
            segment_duration: Duration::from_secs(600),
            ..native::config::Config::default()
        };
        let recorders = (0..streams)
            .map(|i| {
                native::segmenter::Segmenter::new(
                    files.clone(),
                    &format!("cam{i}"),
                    native_tracks(tracks),
                    config.clone(),
                )
                .expect("native recorder")
            })
            .collect();
        NativePath { recorders, input }
    }
}

impl<F: Feed> Path for NativePath<F> {
    fn write(&mut self, n: usize) -> Duration {
        let batch = &self.input[n];
        let began = now();
        for r in &mut self.recorders {
            let (payload, samples) = F::feed(batch);
            r.write(payload, samples).expect("write");
        }
        began.elapsed()
    }

    fn finish(self: Box<Self>) -> usize {
        for mut r in self.recorders {
            r.finish().expect("finish");
        }
        0
    }
}

/// Bare std::fs is handed the batch as one contiguous buffer made in advance: the cheapest a native recorder could
/// get it, for reference.
impl Feed for native::segmenter::DirFiles {
    fn feed(batch: &Batch) -> (std::sync::Arc<Vec<u8>>, Vec<native::media::Sample>) {
        (std::sync::Arc::clone(&batch.payload), batch.samples.iter().map(native_sample).collect())
    }
}

/// The anchor is handed the route's frames as the router's batcher lays them out (shared, not copied), as a
/// recorder built into the router would be: it writes one piece per frame, like the plugin path.
impl Feed for RouterFiles {
    fn feed(batch: &Batch) -> (std::sync::Arc<Frames>, Vec<native::media::Sample>) {
        let mut samples = batch.samples.clone();
        let payload = sluice::egress::record::lay_out(&mut samples, &batch.frames, [0, 1].into_iter());
        (std::sync::Arc::new(Frames(payload)), samples.iter().map(native_sample).collect())
    }
}

/// The router's frames as record-mp4's native payload.
#[derive(Debug)]
struct Frames(sluice::media::Payload);

impl native::media::Payload for Frames {
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The router's own storage layer (quota accounting, temporary names, atomic commit) under the native muxer: what a
/// recorder built into the router would write through. The plugin's storage host calls land in the same code, so
/// the anchor and the plugin differ only by the plugin boundary.
#[derive(Debug, Clone)]
struct RouterFiles(std::sync::Arc<Storage>);

impl native::segmenter::Files for RouterFiles {
    type File = OpenFile;
    type Payload = Frames;

    fn create(&mut self, path: &str) -> Result<OpenFile, native::segmenter::CreateError> {
        self.0.create(path, None).map_err(|e| match e {
            StorageError::Io(m) => native::segmenter::CreateError::Exists(m),
            other => native::segmenter::CreateError::Failed(other.to_string()),
        })
    }

    fn append(&mut self, file: &mut OpenFile, data: &[u8]) -> Result<(), String> {
        file.append(data).map_err(|e| e.to_string())
    }

    fn append_part(&mut self, file: &mut OpenFile, part: native::mux::Part<Frames>) -> Result<(), String> {
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(part.data.len() * 8 + 1);
        pieces.push(&part.head);
        for d in &part.data {
            pieces.extend(d.payload.0.slices(d.offset as usize, d.len as usize).ok_or("a range past the payload")?);
        }
        file.append_all(&pieces).map_err(|e| e.to_string())
    }

    fn sync(&mut self, file: &mut OpenFile) -> Result<(), String> {
        file.sync().map_err(|e| e.to_string())
    }

    fn commit(&mut self, mut file: OpenFile) -> Result<(), String> {
        file.commit().map_err(|e| e.to_string())
    }
}
