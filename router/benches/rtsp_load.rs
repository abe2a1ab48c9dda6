//! RTSP pull load: how many 4 Mbit/s cameras one router core pulls, and the latency the router adds from a
//! frame's arrival to its first packet leaving for a WHEP viewer (p50/p99).
//!
//! One gst-rtsp-server camera (`router/tests/peers/rtsp_camera.py`, a shared 720p30 x264 stream at 4 Mbit/s)
//! pinned to core 1 serves every pull; the router on core 0 gets N routes pulling it, each its own RTSP session
//! over TCP, added by reloading the routes file. One WHEP viewer (the str0m generator, core 1) watches route 0 so
//! the frame-latency histogram fills. Per step: router CPU over 5 s, routes live, and the latency percentiles
//! from `/metrics`.
//!
//! Run: `cargo bench -p sluice --bench rtsp_load -- [MAX_CAMERAS] [STEP]`

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Generator, Router, WINDOW};

fn routes(cameras: usize, port: u16) -> String {
    (0..cameras)
        .map(|i| format!("[[route]]\nname = \"cam{i}\"\nfrom = \"rtsp://127.0.0.1:{port}/test\"\nto = [\"whep\"]\n\n"))
        .collect()
}

/// (bucket upper bounds, cumulative counts) of the frame latency histogram.
fn latency(metrics: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("sluice_webrtc_frame_latency_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which `q` of the frames between two snapshots fell.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let deltas: Vec<(f64, f64)> = after.iter().zip(before).map(|((le, a), (_, b))| (*le, a - b)).collect();
    let total = deltas.last().map_or(0.0, |d| d.1);
    deltas.iter().find(|(_, c)| *c >= q * total).map_or(f64::NAN, |(le, _)| *le)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let max: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(400);
    let step: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);

    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/rtsp_camera.py");
    let mut camera = Command::new("taskset")
        .args(["-c", "1", "/usr/bin/python3"])
        .arg(script)
        .args([&port.to_string(), "h264-4m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the camera");
    let mut lines = BufReader::new(camera.stdout.take().expect("stdout")).lines();
    assert!(lines.next().is_some_and(|l| l.is_ok_and(|l| l == "ready")), "camera did not start");
    std::thread::spawn(move || for _ in lines.by_ref() {});

    let router = Router::start(&routes(1, port));
    let mut viewer = Generator::new(router.http.clone());
    // Route 0 must be live before a viewer can negotiate its codec.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !router.get("/v1/routes/cam0").contains("\"state\":\"live\"") {
        assert!(Instant::now() < deadline, "cam0 never went live");
        std::thread::sleep(Duration::from_millis(100));
    }
    viewer.add_viewers("/cam0/whep", 1);
    viewer.wait_connected(Duration::from_secs(20));
    println!("cameras  live  router-cpu%  cpu%/camera  ingest-Mbit/s  latency-p50-ms  latency-p99-ms");
    let mut best = 0;
    let mut n = step;
    while n <= max {
        router.reload(&routes(n, port));
        // Let every new session connect (DESCRIBE/SETUP/PLAY), then settle.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && router.get("/v1/routes").matches("\"state\":\"live\"").count() < n {
            viewer.run_for(Duration::from_millis(500));
        }
        viewer.run_for(Duration::from_secs(2));
        let lat0 = latency(&router.get("/metrics"));
        let bytes0 = ingest_bytes(&router);
        let cpu0 = router.cpu_seconds();
        let t0 = Instant::now();
        viewer.run_for(WINDOW);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (router.cpu_seconds() - cpu0) / secs;
        let mbps = (ingest_bytes(&router) - bytes0) * 8.0 / secs / 1e6;
        let lat1 = latency(&router.get("/metrics"));
        let live = router.get("/v1/routes").matches("\"state\":\"live\"").count();
        println!(
            "{n:7}  {live:4}  {:11.1}  {:11.3}  {mbps:13.0}  {:14.2}  {:14.2}",
            cpu * 100.0,
            cpu * 100.0 / n as f64,
            quantile(&lat0, &lat1, 0.5) * 1000.0,
            quantile(&lat0, &lat1, 0.99) * 1000.0
        );
        if live < n {
            break;
        }
        best = n;
        if cpu > 0.97 {
            break;
        }
        n += step;
    }
    println!("most cameras pulled and live: {best} (bucket bounds bracket the latency percentiles)");
    let _ = camera.kill();
    let _ = camera.wait();
}

fn ingest_bytes(router: &Router) -> f64 {
    router
        .get("/metrics")
        .lines()
        .filter(|l| l.starts_with("sluice_route_bytes_in_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
