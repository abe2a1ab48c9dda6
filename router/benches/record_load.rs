//! Recording capacity on one core: N concurrent 4 Mbit/s streams (H.264 30 fps + AAC) recorded to fragmented
//! MP4 through the plugin path (host batches -> `builtin:record-mp4` in wasmtime -> storage host calls -> disk),
//! and the same muxer compiled natively writing the same batches to files, as the baseline.
//!
//! `taskset -c 1 cargo bench -p sluice --bench record_load -- [STREAMS] [SECONDS]` (default 100 streams, 10 s
//! of media each). Single-threaded, so CPU time is the time on that core (from /proc/thread-self/schedstat).
//! Targets (issue 7): >= 100 streams per core; plugin CPU <= 1.2x native. Results go to BENCHMARKS.md.

use std::time::Duration;

use sluice::config::model::{BuiltinPlugin, PluginConfig, PluginGrants, PluginSource, StorageGrant};
use sluice::plugin::PluginHost;
use sluice::plugin::sink::{Batch, Sample, Track};
use sluice_plugin_record_mp4 as native;

const FPS: i64 = 30;
const VIDEO_BPS: usize = 3_872_000;
const AUDIO_FRAME: usize = 683; // AAC at 48 kHz, 1024 samples: 128 kbit/s
const GOP: i64 = 60;
const BATCH_MS: i64 = 250;

/// Time this thread has spent on a CPU.
fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    Duration::from_nanos(s.split_whitespace().next().and_then(|v| v.parse().ok()).expect("ns"))
}

/// `seconds` of one stream as the router batches it: every 250 ms, one payload and its sample index.
fn batches(seconds: i64) -> Vec<Batch> {
    let frame = VIDEO_BPS / 8 / FPS as usize;
    let mut out = Vec::new();
    let (mut v, mut a) = (0i64, 0i64);
    for window in 0..seconds * 1000 / BATCH_MS {
        let end_ms = (window + 1) * BATCH_MS;
        let mut batch = Batch { payload: Vec::new(), samples: Vec::new() };
        let wall = 1_795_219_200_000 + end_ms as u64;
        loop {
            let v_ms = v * 1000 / FPS;
            let a_ms = a * 1024 * 1000 / 48_000;
            if v_ms.min(a_ms) >= end_ms {
                break;
            }
            let offset = batch.payload.len() as u32;
            if v_ms <= a_ms {
                // Keyframes 4x the average, P-frames a little smaller: about VIDEO_BPS overall.
                let key = v % GOP == 0;
                let len = if key { frame * 4 } else { frame * (GOP as usize - 4) / (GOP as usize - 1) };
                batch.payload.extend_from_slice(&((len - 4) as u32).to_be_bytes());
                batch.payload.push(if key { 0x65 } else { 0x41 });
                batch.payload.resize(offset as usize + len, 0xa5);
                let (pts, dts) = (v * 3000, v * 3000);
                batch.samples.push(Sample {
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
                batch.payload.resize(offset as usize + AUDIO_FRAME, 0x21);
                let t = a * 1024;
                let len = AUDIO_FRAME as u32;
                batch.samples.push(Sample {
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
        out.push(batch);
    }
    out
}

fn tracks() -> Vec<Track> {
    let video = sluice::recording::recorder::wit_track(&sluice::ingest::demo::clip().track);
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

fn native_samples(batch: &Batch) -> Vec<native::media::Sample> {
    batch
        .samples
        .iter()
        .map(|s| native::media::Sample {
            track: s.track,
            pts: s.pts,
            dts: s.dts,
            keyframe: s.keyframe,
            offset: s.offset,
            len: s.len,
            wallclock_ms: s.wallclock_ms,
        })
        .collect()
}

fn report(what: &str, streams: usize, seconds: i64, busy: Duration) {
    let media = streams as f64 * seconds as f64;
    println!(
        "{what:<34} {streams} streams x {seconds} s: {:>6.2} s CPU, {:>5.2} ms CPU per stream-second -> {:>5.0} real-time 4 Mbit/s streams per core",
        busy.as_secs_f64(),
        busy.as_secs_f64() * 1e3 / media,
        media / busy.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let streams: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let input = batches(seconds);
    let bytes: usize = input.iter().map(|b| b.payload.len()).sum();
    println!(
        "input: {:.2} Mbit/s per stream, {} batches of 250 ms",
        bytes as f64 * 8.0 / seconds as f64 / 1e6,
        input.len()
    );
    let tracks = tracks();
    // On the disk next to the build, not a tmpfs: the page-cache writes are part of the cost.
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));

    // Each path in turn, twice, alternating: the first run in a process pays for fresh page-cache pages that
    // later runs reuse, so the order must not decide the comparison. The second round is reported.
    let mut plugin_busy = Duration::ZERO;
    let mut native_busy = Duration::ZERO;
    for round in 0..2 {
        let report_it = round == 1;
        native_busy = run_native(&input, &tracks, streams, seconds, base, report_it);
        plugin_busy = run_plugin(&input, &tracks, streams, seconds, base, report_it);
    }
    println!("plugin / native CPU: {:.2}x", plugin_busy.as_secs_f64() / native_busy.as_secs_f64());
}

fn run_plugin(
    input: &[Batch],
    tracks: &[Track],
    streams: usize,
    seconds: i64,
    base: &std::path::Path,
    print: bool,
) -> Duration {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let source = PluginSource::Builtin(BuiltinPlugin::RecordMp4);
    let config = PluginConfig {
        name: "mp4".into(),
        limits: source.default_limits(),
        source,
        config: serde_json::json!({ "segment_duration": "10m", "part_duration": "1s" }),
        grants: PluginGrants {
            storage: Some(StorageGrant { dir: dir.path().to_path_buf(), quota_bytes: None, max_age: None }),
            env: Vec::new(),
        },
    };
    let host = PluginHost::shared(None).expect("engine");
    let plugin =
        host.load(&config, sluice::plugin::builtin_bytes(BuiltinPlugin::RecordMp4).expect("built in")).expect("load");
    let sink = plugin.as_sink().expect("sink");
    let mut sessions: Vec<_> = (0..streams).map(|i| sink.open(&format!("cam{i}"), tracks).expect("recorder")).collect();
    let began = cpu();
    for batch in input {
        for s in &mut sessions {
            s.write(batch).expect("write");
        }
    }
    let plugin_busy = cpu() - began;
    let memory = sessions.iter().map(|s| s.memory()).max().unwrap_or(0);
    for s in sessions {
        s.finish().expect("finish");
    }
    if print {
        report("plugin (wasmtime, storage host)", streams, seconds, plugin_busy);
        println!("  largest recorder instance memory: {:.1} MiB", memory as f64 / (1 << 20) as f64);
    }
    plugin_busy
}

fn run_native(
    input: &[Batch],
    tracks: &[Track],
    streams: usize,
    seconds: i64,
    base: &std::path::Path,
    print: bool,
) -> Duration {
    // Native baseline: the same muxer and batches, std::fs files.
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let native_config = native::config::Config {
        part_duration: Duration::from_secs(1),
        segment_duration: Duration::from_secs(600),
        ..native::config::Config::default()
    };
    let native_input: Vec<_> = input.iter().map(|b| (b.payload.clone(), native_samples(b))).collect();
    let mut recorders: Vec<_> = (0..streams)
        .map(|i| {
            native::segmenter::Segmenter::new(
                native::segmenter::DirFiles::new(dir.path()),
                &format!("cam{i}"),
                native_tracks(tracks),
                native_config.clone(),
            )
            .expect("native recorder")
        })
        .collect();
    let began = cpu();
    for (payload, samples) in &native_input {
        for r in &mut recorders {
            r.write(payload, samples).expect("write");
        }
    }
    let native_busy = cpu() - began;
    for mut r in recorders {
        r.finish().expect("finish");
    }
    if print {
        report("native (same muxer, std::fs)", streams, seconds, native_busy);
    }
    native_busy
}
