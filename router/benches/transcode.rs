//! AAC -> Opus for WebRTC viewers: the CPU one transcoded stream costs, as a share of one core.
//! Target (issue 23): < 1% of a core per 48 kHz stereo stream.
//!
//! Run: `cargo bench -p sluice --bench transcode` (pin with `taskset -c 0` to measure one core).
//!
//! Each case transcodes 60 s of audio (a second of AAC from `src/transcode/testdata`, looped with continuous
//! timestamps) as fast as it goes, five times; the share of a core is the time taken over the audio's duration.
//! The thread's CPU time is counted as well as the wall time, so a busy machine shows up as a gap between them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::media::aac::split_adts;
use sluice::media::{Codec, CodecParams, Frame, Track, TrackId};
use sluice::transcode::AacToOpus;

const SECONDS: i64 = 60;
const ROUNDS: usize = 5;

fn main() {
    let cases: [(&str, &[u8]); 3] = [
        ("48 kHz stereo", include_bytes!("../src/transcode/testdata/sine-1k-48000-stereo.aac")),
        ("44.1 kHz stereo (resampled)", include_bytes!("../src/transcode/testdata/sine-1k-44100-stereo.aac")),
        ("48 kHz mono", include_bytes!("../src/transcode/testdata/sine-440-48000-mono.aac")),
    ];
    println!("| stream | % of a core, median (min-max) of {ROUNDS} x {SECONDS} s | CPU time / wall | Opus packets |");
    println!("|---|---|---|---|");
    for (name, data) in cases {
        let (asc, frames) = split_adts(data).expect("ADTS fixture");
        let track = Arc::new(Track {
            id: TrackId(2),
            codec: Codec::Aac,
            clock_rate: sluice::media::aac::aac_config(&asc).expect("config").0,
            params: CodecParams::Aac { audio_specific_config: asc },
            description: name.into(),
        });
        let rate = i64::from(track.clock_rate);
        // The frames of SECONDS seconds: the fixture's second over and over, pts running on.
        let count = (SECONDS * rate / 1024) as usize;
        let input: Vec<Frame> = (0..count)
            .map(|i| {
                let pts = i as i64 * 1024;
                Frame::new(Arc::clone(&track), pts, pts, true, frames[i % frames.len()].clone())
            })
            .collect();
        let audio = Duration::from_secs_f64((count * 1024) as f64 / rate as f64);
        let mut shares = Vec::new();
        let mut cpu_over_wall = Vec::new();
        let mut packets = 0;
        for _ in 0..ROUNDS {
            let mut transcoder = AacToOpus::new(&track).expect("transcodable");
            let cpu = thread_cpu();
            let start = Instant::now();
            packets = 0;
            for frame in &input {
                packets += transcoder.push(frame).expect("transcodes").len();
            }
            let wall = start.elapsed();
            let cpu = thread_cpu() - cpu;
            shares.push(100.0 * cpu.as_secs_f64() / audio.as_secs_f64());
            cpu_over_wall.push(cpu.as_secs_f64() / wall.as_secs_f64());
        }
        shares.sort_by(f64::total_cmp);
        cpu_over_wall.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.3}% ({:.3}-{:.3}) | {:.2} | {packets} |",
            shares[ROUNDS / 2],
            shares[0],
            shares[ROUNDS - 1],
            cpu_over_wall[ROUNDS / 2]
        );
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
