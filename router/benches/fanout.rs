//! Route fan-out: frames from one source to 1,000 in-process readers, each draining its queue in its own task.
//! Target: < 1 µs per frame per reader.
//!
//! Run: `cargo bench -p sluice --bench fanout` (pin with `taskset -c 0` to measure one core).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use sluice::config;
use sluice::media::{Codec, CodecParams, Frame, Track, TrackId};
use sluice::route::actor::RouteSource;
use sluice::route::{ReaderKind, SourceEvent, SourceFactory, SourceFeed, spawn_route};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const READERS: usize = 1000;
/// Ends on a keyframe (3000 % 30 == 0), so a probe reader that dropped frames still sees the last one.
const FRAMES: i64 = 3001;

#[derive(Debug)]
struct ChannelSource(Mutex<Option<mpsc::Receiver<Frame>>>);

impl SourceFactory for ChannelSource {
    fn start(&self, feed: SourceFeed) -> JoinHandle<()> {
        let rx = self.0.lock().expect("lock").take();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            while let Some(f) = rx.recv().await {
                if !feed.send(SourceEvent::Frame(f)).await {
                    return;
                }
            }
        })
    }
}

fn main() {
    let threads: usize = std::env::var("FANOUT_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    rt.block_on(run(threads));
}

async fn run(threads: usize) {
    let table = config::parse("[[route]]\nname = \"bench\"\nfrom = \"demo\"\nto = [\"whep\"]\n", "b.toml", &|_| None)
        .expect("valid");
    let (tx, rx) = mpsc::channel(256);
    let route =
        spawn_route(Arc::clone(&table.routes[0]), RouteSource::Pull(Arc::new(ChannelSource(Mutex::new(Some(rx))))));
    let mut probe = route.add_reader(ReaderKind::Api, None).await.expect("probe");
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let mut reader = route.add_reader(ReaderKind::Whep, None).await.expect("reader");
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut bytes = 0usize;
            while let Some(f) = reader.recv().await {
                // Touch the payload the way a packetizer would read it.
                bytes += f.data.len();
                n += 1;
            }
            (n, bytes, reader.dropped())
        }));
    }
    let track = Arc::new(Track {
        id: TrackId(0),
        codec: Codec::H264,
        clock_rate: 90_000,
        params: CodecParams::None,
        description: String::new(),
    });
    // 4 Mbit/s at 30 fps is ~16.7 KB per frame.
    let payload = Bytes::from(vec![0u8; 16_700]);
    let began = Instant::now();
    for n in 0..FRAMES {
        let frame = Frame {
            track: Arc::clone(&track),
            pts: n * 3000,
            dts: n * 3000,
            keyframe: n % 30 == 0,
            data: payload.clone(),
            received: std::time::Instant::now(),
            wallclock: None,
            forms: Default::default(),
        };
        tx.send(frame).await.expect("route alive");
    }
    drop(tx);
    // Once the probe sees the last frame the route has taken every frame; end it so readers finish their queues.
    while probe.recv().await.expect("route alive").pts != (FRAMES - 1) * 3000 {}
    route.stop().await;
    let mut delivered = 0u64;
    let mut dropped = 0u64;
    for r in readers {
        let (n, _, d) = r.await.expect("reader");
        delivered += n;
        dropped += d;
    }
    let elapsed = began.elapsed();
    let per = elapsed.as_secs_f64() * 1e9 / delivered as f64;
    println!(
        "fan-out: {FRAMES} frames x {READERS} readers on {threads} worker thread(s): {:.1} ms, {delivered} deliveries, \
         {dropped} dropped; {per:.0} ns per frame per reader ({:.2} M deliveries/s)",
        elapsed.as_secs_f64() * 1000.0,
        delivered as f64 / elapsed.as_secs_f64() / 1e6
    );
}
