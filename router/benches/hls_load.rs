//! LL-HLS: how long after a part's first frame reaches the router a viewer has the part, and how many LL-HLS
//! viewers one core serves. ffmpeg publishes the 4 Mbit/s 1080p30 bench clip over RTMP to the release router on
//! core 0; viewers on core 1 do what hls.js does at the live edge: a blocking playlist reload for the next part
//! (`_HLS_msn`/`_HLS_part`), then the part, again and again.
//!
//! Latency: the router dates each segment (EXT-X-PROGRAM-DATE-TIME) by its first frame's arrival; a part starts
//! that date plus the parts before it. "part ready" is when the blocked reload returns with the part listed, "part
//! received" when the viewer has its last byte. Both include the part's own 200 ms of media.
//!
//! Run: `cargo bench -p sluice --bench hls_load -- [MAX_VIEWERS] [STEP]`

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Router, clip_mp4, measure_step, rss_bytes};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn publish(rtmp: u16) -> Child {
    Command::new("taskset")
        .args(["-c", "1", "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(clip_mp4())
        .args(["-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{rtmp}/live"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

/// Milliseconds since the Unix epoch of an EXT-X-PROGRAM-DATE-TIME value (`2026-12-06T04:09:50.902Z`).
fn date_ms(s: &str) -> Option<f64> {
    let (date, time) = s.trim().trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').filter_map(|x| x.parse().ok()).collect();
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let ms: f64 = format!("0.{frac}").parse::<f64>().unwrap_or(0.0) * 1000.0;
    Some(((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) as f64 + ms)
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Where part (msn, index) starts, by the playlist's dates and durations, and the next part to wait for.
fn part_start(playlist: &str, msn: u64, index: u32) -> Option<f64> {
    let mut date = None;
    let mut offset = 0.0;
    for line in playlist.lines() {
        if let Some(d) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            date = date_ms(d);
            offset = 0.0;
        } else if let Some(p) = line.strip_prefix("#EXT-X-PART:") {
            let duration: f64 = p.split("DURATION=").nth(1)?.split(',').next()?.parse().ok()?;
            if p.contains(&format!("URI=\"part{msn}.{index}.mp4")) {
                return date.map(|d| d + offset);
            }
            offset += duration * 1000.0;
        }
    }
    None
}

/// The preload hint: (msn, part).
fn hint(playlist: &str) -> Option<(u64, u32)> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))?;
    let name = line.split("URI=\"part").nth(1)?.split(".mp4").next()?;
    let (m, p) = name.split_once('.')?;
    Some((m.parse().ok()?, p.parse().ok()?))
}

#[derive(Default)]
struct Counters {
    bytes: Arc<AtomicU64>,
    /// Latencies in ms: (part listed, part received), the first viewer only.
    latencies: std::sync::Mutex<Vec<(f64, f64)>>,
}

/// One LL-HLS viewer at the live edge; `record` viewers note each part's latency.
async fn viewer(client: reqwest::Client, base: String, counters: Arc<Counters>, record: bool) -> Result<(), String> {
    let index = client.get(format!("{base}/live/index.m3u8")).send().await.map_err(|e| e.to_string())?;
    let text = index.text().await.map_err(|e| e.to_string())?;
    let media = format!("{base}/live/{}", text.lines().last().unwrap_or_default());
    let first = client.get(&media).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
    let (mut msn, mut part) = hint(&first).ok_or("no preload hint")?;
    let session = media.split("session=").nth(1).unwrap_or_default().to_string();
    loop {
        let res =
            client.get(format!("{media}&_HLS_msn={msn}&_HLS_part={part}")).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("playlist: {}", res.status()));
        }
        let playlist = res.text().await.map_err(|e| e.to_string())?;
        let listed = now_ms();
        let start = part_start(&playlist, msn, part);
        let Some(start) = start else {
            // The segment ended before that part: go on from the hint.
            (msn, part) = hint(&playlist).ok_or("no preload hint")?;
            continue;
        };
        let bytes = client
            .get(format!("{base}/live/part{msn}.{part}.mp4?session={session}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        counters.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if record {
            counters.latencies.lock().unwrap_or_else(|p| p.into_inner()).push((listed - start, now_ms() - start));
        }
        part += 1;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let max = args.first().copied().unwrap_or(400);
    let step = args.get(1).copied().unwrap_or(100);
    let rtmp = free_port();
    let router = Router::start_with_rtmp(rtmp, "[[route]]\nname = \"live\"\nfrom = \"rtmp\"\nto = [\"hls\"]\n");
    let mut ffmpeg = publish(rtmp);
    let base = format!("http://{}", router.http);
    // The viewers run on core 1, beside ffmpeg (threads made later inherit it).
    let _ = Command::new("taskset").args(["-p", "-c", "1", &std::process::id().to_string()]).output();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build().expect("client");
        // Until the route is live and its first segment is made.
        for _ in 0..100 {
            if client.get(format!("{base}/live/index.m3u8")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rss0 = rss_bytes(router.child.id());
        println!(
            "LL-HLS viewers of one 4 Mbit/s 1080p30 stream (parts of 200 ms), router on core 0, viewers on core 1"
        );
        println!(
            "{:>8} {:>9} {:>13} {:>12} {:>12} {:>10} {:>16} {:>16}",
            "viewers",
            "cpu %",
            "cpu %/viewer",
            "KB/viewer",
            "min Mbit/s",
            "core 1 %",
            "listed p50/p99",
            "received p50/p99"
        );
        let mut viewers: Vec<Arc<Counters>> = Vec::new();
        let mut n = 0;
        while n < max {
            let target = (n + step).min(max);
            while viewers.len() < target {
                let c = Arc::new(Counters::default());
                tokio::spawn(viewer(client.clone(), base.clone(), Arc::clone(&c), viewers.is_empty()));
                viewers.push(c);
            }
            n = target;
            // Settle, then one window.
            tokio::time::sleep(Duration::from_secs(3)).await;
            viewers[0].latencies.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let bytes: Vec<Arc<AtomicU64>> = viewers.iter().map(|c| Arc::clone(&c.bytes)).collect();
            let s = measure_step(router.child.id(), &bytes, rss0).await;
            let mut listed: Vec<f64> = Vec::new();
            let mut received: Vec<f64> = Vec::new();
            for (l, r) in viewers[0].latencies.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                listed.push(*l);
                received.push(*r);
            }
            listed.sort_by(f64::total_cmp);
            received.sort_by(f64::total_cmp);
            let min_rate = s.rates.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{:>8} {:>9.1} {:>13.3} {:>12.1} {:>12.2} {:>10.0} {:>7.0}/{:<4.0} ms {:>7.0}/{:<4.0} ms{}",
                n,
                s.cpu * 100.0,
                s.cpu * 100.0 / n as f64,
                s.kb_per_reader,
                min_rate,
                s.readers_busy * 100.0,
                percentile(&listed, 0.5),
                percentile(&listed, 0.99),
                percentile(&received, 0.5),
                percentile(&received, 0.99),
                if s.readers_busy > 0.9 { "  (viewers' core saturated: not counted)" } else { "" }
            );
        }
    });
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}
