//! RTSP readers of one 4 Mbit/s stream (TCP interleaved), Sluice side by side with gst-rtsp-server: both pinned to
//! core 0, fed the same 1080p30 clip by ffmpeg on core 1 (Sluice over RTSP ANNOUNCE/RECORD, gst-rtsp-server as
//! RTP over UDP into a shared media: `router/tests/peers/rtsp_camera.py rtp:PORT`), read by the same reader tool
//! (tokio RTSP clients on core 1). Per step: server CPU, CPU per reader, resident memory per reader, the slowest
//! reader's bitrate and how busy the readers' core is. A step stops counting once a reader falls under 90% of the
//! stream's rate.
//!
//! Run: `cargo bench -p sluice --bench rtsp_serve_load -- [MAX_READERS] [STEP] [sluice|gst]`

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::{Router, clip_mp4, measure_step, rss_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A server under test: its process, where readers play the stream, and what feeds it.
struct Server {
    name: &'static str,
    pid: u32,
    url: String,
    feeder: Child,
    _keep: Box<dyn std::any::Any>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.feeder.kill();
        let _ = self.feeder.wait();
    }
}

/// ffmpeg sending the clip in a loop, in real time, on core 1, in `format` to `url`.
fn feed(format: &[&str], url: &str) -> Child {
    Command::new("taskset")
        .args(["-c", "1", "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(clip_mp4())
        .args(["-c", "copy"])
        .args(format)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

fn sluice() -> Server {
    let port = free_port();
    let router = Router::start_with_rtsp(port, "[[route]]\nname = \"live\"\nfrom = \"rtsp\"\nto = [\"rtsp\"]\n");
    let url = format!("rtsp://127.0.0.1:{port}/live");
    let feeder = feed(&["-f", "rtsp", "-rtsp_transport", "tcp"], &url);
    Server { name: "sluice", pid: router.child.id(), url, feeder, _keep: Box::new(router) }
}

/// The gst-rtsp-server process, stopped when dropped.
struct Gst(Child);

impl Drop for Gst {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gst_rtsp_server() -> Server {
    let port = free_port();
    let udp = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/rtsp_camera.py");
    let mut child = Command::new("taskset")
        .args(["-c", "0", "/usr/bin/python3", script, &port.to_string(), &format!("rtp:{udp}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-rtsp-server (python3-gi, gir1.2-gst-rtsp-server-1.0)");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).expect("read") > 0, "gst-rtsp-server exited");
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let feeder = feed(&["-f", "rtp"], &format!("rtp://127.0.0.1:{udp}"));
    let pid = child.id();
    Server {
        name: "gst-rtsp-server",
        pid,
        url: format!("rtsp://127.0.0.1:{port}/test"),
        feeder,
        _keep: Box::new(Gst(child)),
    }
}

/// Sends a request and reads the response's head and body.
async fn request(tcp: &mut TcpStream, buf: &mut Vec<u8>, text: String) -> Result<(String, String), String> {
    tcp.write_all(text.as_bytes()).await.map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                if !head.starts_with("RTSP/1.0 200") {
                    return Err(head);
                }
                return Ok((head, body));
            }
        }
        let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One RTSP player over TCP: DESCRIBE, SETUP of the video stream, PLAY, then reads and discards, counting bytes.
async fn reader(url: String, bytes: Arc<AtomicU64>) -> Result<(), String> {
    let host = url.trim_start_matches("rtsp://").split('/').next().unwrap_or_default().to_string();
    let mut tcp = TcpStream::connect(&host).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let (head, sdp) =
        request(&mut tcp, &mut buf, format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"))
            .await?;
    let base = header(&head, "Content-Base").map_or(format!("{url}/"), str::to_string);
    let control = sdp
        .split("m=video")
        .nth(1)
        .and_then(|m| m.lines().find_map(|l| l.trim().strip_prefix("a=control:")))
        .ok_or("no control")?
        .to_string();
    let track = if control.starts_with("rtsp://") { control } else { format!("{base}{control}") };
    let (head, _) = request(
        &mut tcp,
        &mut buf,
        format!("SETUP {track} RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
    )
    .await?;
    let session = header(&head, "Session").ok_or("no session")?.split(';').next().unwrap_or_default().to_string();
    tcp.write_all(
        format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\nRange: npt=0.000-\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn run(server: Server, max: usize, step: usize, clip_mbps: f64) -> usize {
    std::thread::sleep(Duration::from_secs(2));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let counters: Vec<Arc<AtomicU64>> = (0..max).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let rss0 = rss_bytes(server.pid);
    println!(
        "{}: readers  server-cpu%  cpu%/reader  KB/reader  min-Mbit/s-per-reader  under-90%  readers-core-busy%",
        server.name
    );
    let mut best = 0;
    rt.block_on(async {
        let mut started = 0;
        let mut n = step;
        while n <= max {
            for c in counters.iter().take(n).skip(started) {
                let (url, c) = (server.url.clone(), Arc::clone(c));
                tokio::spawn(async move {
                    if let Err(e) = reader(url, c).await {
                        eprintln!("reader: {e}");
                    }
                });
                // Readers arrive one after another, as players do, not in one burst.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            started = n;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let measured = measure_step(server.pid, &counters[..n], rss0).await;
            let (cpu, readers_busy, kb) = (measured.cpu, measured.readers_busy, measured.kb_per_reader);
            let min_mbps = measured.rates.iter().copied().fold(f64::INFINITY, f64::min);
            let short = measured.rates.iter().filter(|r| **r < clip_mbps * 0.9).count();
            println!(
                "{:>w$}  {n:7}  {:11.1}  {:11.3}  {kb:9.1}  {min_mbps:8.2}  {short:6}  {:22.1}",
                "",
                cpu * 100.0,
                cpu * 100.0 / n as f64,
                readers_busy * 100.0,
                w = server.name.len()
            );
            if min_mbps < clip_mbps * 0.9 {
                break;
            }
            best = n;
            if cpu > 0.97 {
                break;
            }
            n += step;
        }
    });
    println!("{}: most readers at full rate: {best}", server.name);
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let max: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let step: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let clip_mbps = 4.0;
    // The readers (this process) on core 1 beside the feeders, the servers on core 0.
    let _ = Command::new("taskset")
        .args(["-a", "-cp", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let only = args.get(2).map(String::as_str);
    let ours = if only == Some("gst") { 0 } else { run(sluice(), max, step, clip_mbps) };
    let theirs = if only == Some("sluice") { 0 } else { run(gst_rtsp_server(), max, step, clip_mbps) };
    println!("readers at full rate: sluice {ours}, gst-rtsp-server {theirs}");
}
