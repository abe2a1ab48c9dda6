//! Reload of a 1,000-route file with one route changed: parse + validate + diff + apply, end to end.
//! Target: < 50 ms, and only the changed route touched.
//! Then parse + validate of 1,250 to 10,000 routes (the cap): the time per route must stay flat (issue 24: it
//! grew with the file, 8,000 routes took 2.5 s).
//!
//! Run: `cargo bench -p sluice --bench reload`

use std::time::{Duration, Instant};

use sluice::config;
use sluice::runtime::RouteSet;

const ROUTES: usize = 1000;
const SCALING: [usize; 4] = [1250, 2500, 5000, 10_000];
const ROUNDS: usize = 60;

/// 1,000 on-demand camera routes (their sources are not running, so the measurement is the reload alone), with
/// route 500's `max_readers` set to `variant`.
fn routes_file(variant: u32) -> String {
    routes_file_of(ROUTES, variant)
}

fn routes_file_of(routes: usize, variant: u32) -> String {
    let mut s =
        String::from("[server]\nhttp = \"127.0.0.1:0\"\n\n[defaults]\nto = [\"whep\", \"rtsp\"]\non_demand = true\n\n");
    for i in 0..routes {
        s.push_str(&format!(
            "# camera {i}\n[[route]]\nname = \"cam-{i}\"\nfrom = \"rtsp://viewer:secret@10.{}.{}.{}:554/stream1\"\n",
            i / 62_500,
            i / 250 % 250,
            i % 250 + 1
        ));
        if i == 500 {
            s.push_str(&format!("max_readers = {variant}\n"));
        }
        s.push('\n');
    }
    s
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let files = [routes_file(10), routes_file(20)];
    println!("routes file: {} routes, {} KiB", ROUTES, files[0].len() / 1024);
    rt.block_on(async {
        let first = config::parse(&files[0], "routes.toml", &|_| None).expect("valid");
        let mut set = RouteSet::start(first);
        let mut times = Vec::with_capacity(ROUNDS);
        let mut parse_times = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let text = &files[(round + 1) % 2];
            let began = Instant::now();
            let table = config::parse(text, "routes.toml", &|_| None).expect("valid");
            let parsed = began.elapsed();
            let diff = set.apply(table).await;
            times.push(began.elapsed());
            parse_times.push(parsed);
            assert_eq!(diff.changed.len(), 1, "only the changed route is touched");
            assert_eq!(diff.unchanged, ROUTES - 1);
            assert!(diff.added.is_empty() && diff.removed.is_empty());
        }
        report("reload (parse+validate+diff+apply)", &mut times);
        report("  of which parse+validate", &mut parse_times);
        set.stop_all().await;
    });
    println!("parse+validate by file size (best of 5):");
    for routes in SCALING {
        let text = routes_file_of(routes, 10);
        let best = (0..5)
            .map(|_| {
                let began = Instant::now();
                let table = config::parse(&text, "routes.toml", &|_| None).expect("valid");
                assert_eq!(table.routes.len(), routes);
                began.elapsed()
            })
            .min()
            .unwrap_or_default();
        println!(
            "  {routes:>6} routes, {:>5} KiB: {:>8.2} ms, {:.2} us per route",
            text.len() / 1024,
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e6 / routes as f64
        );
    }
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: median {:.2} ms, p90 {:.2} ms, max {:.2} ms over {} rounds",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1]),
        times.len()
    );
}
