//! WHEP load: how many viewers of a 4 Mbit/s 1080p30 stream one router core serves at < 1% loss.
//!
//! The generator is str0m too: one thread, one UDP socket (recvmmsg/GSO through quinn-udp), every viewer its
//! own loopback address (127.1.x.y) so the router sees distinct peers. It publishes a pre-encoded clip over WHIP,
//! then adds WHEP viewers in steps; after each step it measures packet loss over all viewers (RTP sequence
//! gaps) and the router's CPU (/proc/PID/stat) over a fixed window. It stops at the first step with >= 1% loss,
//! a saturated router core, or the viewer limit.
//!
//! Run (router on core 0, generator on core 1):
//!   taskset -c 1 cargo bench -p sluice --bench whep_load -- [MAX_VIEWERS] [STEP]
//! `ROUTER_CORES=0,1` runs the router on both cores, so with a shard per core (the generator then shares them).

mod support;

use support::{CONNECT_WAIT, Generator, Router, clip, split_frames, thread_cpu_seconds};

const FPS: u32 = 30;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let max_viewers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1500);
    let step: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let clip = clip();
    let frames = split_frames(&std::fs::read(&clip).expect("read clip"));
    let bytes: usize = frames.iter().map(Vec::len).sum();
    println!(
        "clip: {} frames, {:.2} Mbit/s at {FPS} fps",
        frames.len(),
        bytes as f64 * 8.0 * f64::from(FPS) / frames.len() as f64 / 1e6
    );
    let router = Router::start("[[route]]\nname = \"bench\"\nfrom = \"whip\"\nto = [\"whep\"]\n");
    println!("router pid {}", router.child.id());
    let mut load = Generator::new(router.http.clone());
    load.publish(&frames);
    println!("viewers  loss%   router-cpu%  cpu%/viewer  Mbit/s-out  kpps-out  shard-threads-cpu%");
    let mut best = 0;
    let mut level = step;
    while level <= max_viewers {
        load.add_viewers("/bench/whep", level - load.viewers.len());
        load.wait_connected(CONNECT_WAIT);
        let shards0 = thread_cpu_seconds(router.child.id(), "webrtc-shard");
        let t0 = std::time::Instant::now();
        let (loss, cpu, mbps, pps) = load.measure(&router);
        let secs = t0.elapsed().as_secs_f64();
        let shards = thread_cpu_seconds(router.child.id(), "webrtc-shard");
        let connected = load.viewers.iter().filter(|v| v.connected).count();
        // Each shard thread's share of a core over the window: how evenly the peers' work splits.
        let split: Vec<String> =
            shards.iter().zip(&shards0).map(|((_, b), (_, a))| format!("{:.1}", (b - a) * 100.0 / secs)).collect();
        println!(
            "{connected:7}  {:5.2}   {:10.1}   {:10.3}   {:9.0}   {:8.1}   {}",
            loss * 100.0,
            cpu * 100.0,
            cpu * 100.0 / connected.max(1) as f64,
            mbps,
            pps / 1000.0,
            split.join("/")
        );
        if loss >= 0.01 || connected * 100 < level * 95 {
            break;
        }
        best = connected;
        if cpu > 0.97 {
            break;
        }
        level += step;
    }
    println!("most viewers at < 1% loss: {best}");
}
