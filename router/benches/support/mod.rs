//! Shared by the load benches: the router process (pinned, with CPU accounting), a str0m WHEP/WHIP load
//! generator on one thread and one socket, and the 4 Mbit/s test clip.

#![allow(dead_code, reason = "each bench uses part of this module")]

use std::collections::{BTreeSet, HashMap};
use std::io::{IoSliceMut, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit as UdpTransmit, UdpSocketState};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

const GEN_PORT: u16 = 40_000;
pub const WINDOW: Duration = Duration::from_secs(5);
pub const CONNECT_WAIT: Duration = Duration::from_secs(20);
const FPS: u32 = 30;

/// A 10 s 1080p30 H.264 clip at 4 Mbit/s, made once with ffmpeg and cached in the target directory.
pub fn clip() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-1080p-4mbit.h264");
    if !path.exists() {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
            .args([
                "-t",
                "10",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "baseline",
                "-pix_fmt",
                "yuv420p",
            ])
            .args([
                "-b:v",
                "4M",
                "-maxrate",
                "4M",
                "-bufsize",
                "4M",
                "-g",
                "60",
                "-x264-params",
                "repeat-headers=1:slices=1",
            ])
            .args(["-f", "h264"])
            .arg(&path)
            .status()
            .expect("ffmpeg (installed by .ci/test)");
        assert!(status.success(), "ffmpeg failed");
    }
    path
}

/// A core's (busy, total) ticks from /proc/stat.
pub fn core_ticks(core: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let label = format!("cpu{core}");
    let Some(line) = stat.lines().find(|l| l.split_whitespace().next() == Some(label.as_str())) else {
        return (0, 0);
    };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait are the 4th and 5th columns.
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The bench clip in MP4, which ffmpeg can loop (a raw H.264 stream cannot be rewound).
pub fn clip_mp4() -> std::path::PathBuf {
    let mp4 = clip().with_extension("mp4");
    if !mp4.exists() {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-framerate", "30", "-i"])
            .arg(clip())
            .args(["-c", "copy"])
            .arg(&mp4)
            .status()
            .expect("ffmpeg");
        assert!(status.success());
    }
    mp4
}

/// One step of a readers bench, measured over [`WINDOW`].
#[derive(Debug)]
pub struct Step {
    /// The server's CPU, as a share of one core.
    pub cpu: f64,
    /// How busy the readers' core (1) was: near 1.0 the readers, not the server, set the pace.
    pub readers_busy: f64,
    /// Each reader's bitrate, Mbit/s.
    pub rates: Vec<f64>,
    /// The server's resident memory growth since `rss0`, per reader, KB.
    pub kb_per_reader: f64,
}

/// Measures a step: the server `pid`'s CPU and memory, and what each reader counted into `bytes`.
pub async fn measure_step(pid: u32, bytes: &[std::sync::Arc<std::sync::atomic::AtomicU64>], rss0: u64) -> Step {
    use std::sync::atomic::Ordering;
    let before: Vec<u64> = bytes.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let cpu0 = cpu_seconds(pid);
    let core0 = core_ticks(1);
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid) - cpu0) / secs;
    let core1 = core_ticks(1);
    let readers_busy = (core1.0 - core0.0) as f64 / (core1.1 - core0.1).max(1) as f64;
    let rates =
        bytes.iter().zip(&before).map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 * 8.0 / secs / 1e6).collect();
    let kb_per_reader = rss_bytes(pid).saturating_sub(rss0) as f64 / bytes.len().max(1) as f64 / 1024.0;
    Step { cpu, readers_busy, rates, kb_per_reader }
}

/// Annex B access units (one per picture; this clip has one slice per picture).
pub fn split_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let nals = sluice::media::h264::split_annex_b(data);
    sluice::media::h264::group_access_units(&nals)
        .into_iter()
        .map(|au| au.iter().flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat()).collect())
        .collect()
}

pub struct Router {
    pub child: Child,
    pub http: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// A minimal HTTP/1.1 exchange: (status line and headers, body).
pub fn http(host: &str, method: &str, path: &str, content_type: &str, body: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(host).expect("connect http");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_string(), body.to_string())
}

impl Router {
    /// Starts the release router with these routes on core 0, or on the cores `ROUTER_CORES` lists (taskset's
    /// syntax, e.g. "0,1"): it runs a WebRTC shard per core it may use.
    pub fn start(routes: &str) -> Router {
        Router::start_file(Router::file(routes))
    }

    /// The same, with `shards` WebRTC shards on whatever cores it runs on.
    pub fn start_with_shards(shards: usize, routes: &str) -> Router {
        Router::start_file(Router::file(routes).replace(
            "webrtc = { udp = \"127.0.0.1:0\" }",
            &format!("webrtc = {{ udp = \"127.0.0.1:0\", shards = {shards} }}"),
        ))
    }

    /// The same, with the RTMP listener on `rtmp_port`.
    pub fn start_with_rtmp(rtmp_port: u16, routes: &str) -> Router {
        Router::start_file(
            Router::file(routes).replace("rtmp = \"127.0.0.1:0\"", &format!("rtmp = \"127.0.0.1:{rtmp_port}\"")),
        )
    }

    /// The same, with the RTSP listener on `rtsp_port`.
    pub fn start_with_rtsp(rtsp_port: u16, routes: &str) -> Router {
        Router::start_file(
            Router::file(routes).replace("rtsp = \"127.0.0.1:0\"", &format!("rtsp = \"127.0.0.1:{rtsp_port}\"")),
        )
    }

    fn start_file(text: String) -> Router {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("routes.toml");
        std::fs::write(&config, text).expect("write config");
        let cores = std::env::var("ROUTER_CORES").unwrap_or_else(|_| "0".into());
        let mut child = Command::new("taskset")
            .args(["-c", &cores, env!("CARGO_BIN_EXE_sluice"), "--log-format", "json", "run"])
            .arg(&config)
            .env("RUST_LOG", "warn,sluice::server=info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice under taskset");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let http = loop {
            line.clear();
            if std::io::BufRead::read_line(&mut stderr, &mut line).expect("read log") == 0 {
                panic!("sluice exited before it was up");
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(http) = v["http"].as_str() {
                break http.to_string();
            }
        };
        // Keep draining the log so the router never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Router { child, http, config, _dir: dir }
    }

    fn file(routes: &str) -> String {
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\n\
             webrtc = {{ udp = \"127.0.0.1:0\" }}\n\n\
             # Every load generator is one address: the per-address caps would stop it.\n\
             [server.limits]\nconnections_per_ip = 100000\nwebrtc_sessions_per_ip = 100000\n\n{routes}"
        )
    }

    /// Rewrites the routes file and reloads it through the API.
    pub fn reload(&self, routes: &str) {
        std::fs::write(&self.config, Router::file(routes)).expect("write config");
        let (status, body) = http(&self.http, "POST", "/v1/reload", "", "");
        assert!(status.starts_with("HTTP/1.1 200"), "reload: {status}\n{body}");
    }

    pub fn get(&self, path: &str) -> String {
        http(&self.http, "GET", path, "", "").1
    }

    /// User + system CPU seconds the router has used.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds per thread name of a process whose names start with `prefix` (e.g. "webrtc-shard"), sorted.
pub fn thread_cpu_seconds(pid: u32, prefix: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?.trim().to_string();
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            name.starts_with(prefix).then(|| (name, stat_cpu_seconds(&stat)))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn stat_cpu_seconds(stat: &str) -> f64 {
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted after the ")" that ends the command name.
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Viewer {
    rtc: Rtc,
    pub connected: bool,
    received: u64,
    first_seq: Option<u64>,
    max_seq: u64,
    bytes: u64,
}

pub struct Generator {
    http: String,
    socket: UdpSocket,
    state: UdpSocketState,
    pub viewers: Vec<Viewer>,
    by_ip: HashMap<IpAddr, usize>,
    timers: BTreeSet<(Instant, usize)>,
    deadlines: Vec<Instant>,
    publisher: Option<Publisher>,
    bufs: Vec<Vec<u8>>,
}

struct Publisher {
    rtc: Rtc,
    mid: Mid,
    connected: bool,
    frames: Vec<Vec<u8>>,
    next: usize,
    next_at: Instant,
    start: Instant,
    timeout: Instant,
}

/// Index `usize::MAX` in the timer set is the publisher.
const PUBLISHER: usize = usize::MAX;

fn viewer_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

const PUBLISHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 2, 0, 1));

impl Generator {
    pub fn new(http: String) -> Generator {
        let socket = UdpSocket::bind(("0.0.0.0", GEN_PORT)).expect("bind generator socket");
        socket.set_nonblocking(true).expect("nonblocking");
        let state = UdpSocketState::new((&socket).into()).expect("udp state");
        let _ = state.set_recv_buffer_size((&socket).into(), 64 << 20);
        let _ = state.set_send_buffer_size((&socket).into(), 8 << 20);
        Generator {
            http,
            socket,
            state,
            viewers: Vec::new(),
            by_ip: HashMap::new(),
            timers: BTreeSet::new(),
            deadlines: Vec::new(),
            publisher: None,
            bufs: vec![vec![0u8; 64 * 1024]; 32],
        }
    }

    fn offer(&self, rtc: &mut Rtc, ip: IpAddr, kind: Direction) -> (SdpOffer, SdpPendingOffer, Mid) {
        let addr = SocketAddr::new(ip, GEN_PORT);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, kind, None, None, None);
        let (offer, pending) = change.apply().expect("offer");
        (offer, pending, mid)
    }

    fn post(&self, path: &str, sdp: &str) -> String {
        let (head, body) = http(&self.http, "POST", path, "application/sdp", sdp);
        assert!(head.starts_with("HTTP/1.1 201"), "{path}: {head}\n{body}");
        body
    }

    pub fn publish(&mut self, frames: &[Vec<u8>]) {
        let now = Instant::now();
        let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).build(now);
        let (offer, pending, mid) = self.offer(&mut rtc, PUBLISHER_IP, Direction::SendOnly);
        let answer = self.post("/bench/whip", &offer.to_sdp_string());
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).expect("answer")).expect("accept");
        self.publisher = Some(Publisher {
            rtc,
            mid,
            connected: false,
            frames: frames.to_vec(),
            next: 0,
            next_at: now,
            start: now,
            timeout: now,
        });
        self.poll_publisher(now);
        // Run until the publisher is connected and sending.
        let deadline = Instant::now() + CONNECT_WAIT;
        while self.publisher.as_ref().is_some_and(|p| !p.connected) {
            assert!(Instant::now() < deadline, "publisher did not connect");
            self.run_for(Duration::from_millis(10));
        }
        self.run_for(Duration::from_secs(2));
    }

    pub fn add_viewers(&mut self, path: &str, n: usize) {
        for _ in 0..n {
            let i = self.viewers.len();
            let now = Instant::now();
            let mut rtc = Rtc::builder().set_rtp_mode(true).clear_codecs().enable_h264(true).build(now);
            let (offer, pending, _) = self.offer(&mut rtc, viewer_ip(i), Direction::RecvOnly);
            let answer = self.post(path, &offer.to_sdp_string());
            rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).expect("answer")).expect("accept");
            self.viewers.push(Viewer { rtc, connected: false, received: 0, first_seq: None, max_seq: 0, bytes: 0 });
            self.by_ip.insert(viewer_ip(i), i);
            self.deadlines.push(now);
            self.poll_viewer(i, now);
            // Keep the peers already connected serviced while adding more.
            self.run_for(Duration::from_millis(2));
        }
    }

    pub fn wait_connected(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && self.viewers.iter().any(|v| !v.connected) {
            self.run_for(Duration::from_millis(50));
        }
        // Let every viewer get past its first GOP before measuring.
        self.run_for(Duration::from_secs(2));
    }

    /// (loss fraction, router CPU fraction, Mbit/s received, packets/s received) over one window.
    pub fn measure(&mut self, router: &Router) -> (f64, f64, f64, f64) {
        for v in &mut self.viewers {
            v.received = 0;
            v.first_seq = None;
            v.bytes = 0;
        }
        // WHEP_LOAD_PERF=FILE records where the router's time goes during each window (perf report -i FILE).
        let perf = std::env::var("WHEP_LOAD_PERF").ok().and_then(|out| {
            Command::new("perf")
                .args(["record", "-F", "499", "-g", "-o", &out, "-p", &router.child.id().to_string(), "--", "sleep"])
                .arg(WINDOW.as_secs().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        });
        let cpu0 = router.cpu_seconds();
        let t0 = Instant::now();
        self.run_for(WINDOW);
        if let Some(mut perf) = perf {
            let _ = perf.wait();
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (router.cpu_seconds() - cpu0) / secs;
        let (mut expected, mut received, mut bytes) = (0u64, 0u64, 0u64);
        for v in &self.viewers {
            if let Some(first) = v.first_seq {
                expected += v.max_seq - first + 1;
                received += v.received;
                bytes += v.bytes;
            }
        }
        let loss = if expected == 0 { 1.0 } else { 1.0 - received as f64 / expected as f64 };
        (loss.max(0.0), cpu, bytes as f64 * 8.0 / secs / 1e6, received as f64 / secs)
    }

    /// Viewers that received media in the last `measure` window.
    pub fn viewers_receiving(&self) -> usize {
        self.viewers.iter().filter(|v| v.received > 0).count()
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            self.receive(now);
            self.fire_timers(Instant::now());
            let next = self.timers.first().map_or(until, |(t, _)| *t).min(until);
            if next > Instant::now() {
                // Block on the socket until the next timer: poll(2) with a timeout.
                let _ = self.socket.set_nonblocking(false);
                let wait = next.saturating_duration_since(Instant::now()).max(Duration::from_micros(100));
                let _ = self.socket.set_read_timeout(Some(wait));
                let mut peek = [0u8; 1];
                let _ = self.socket.peek_from(&mut peek);
                let _ = self.socket.set_nonblocking(true);
            }
        }
    }

    fn receive(&mut self, now: Instant) {
        loop {
            let mut meta = [RecvMeta::default(); 32];
            let mut slices: Vec<IoSliceMut<'_>> = self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let n = match self.state.recv((&self.socket).into(), &mut slices, &mut meta) {
                Ok(n) => n,
                Err(_) => return,
            };
            drop(slices);
            for (slot, m) in meta.iter().enumerate().take(n) {
                let stride = if m.stride == 0 { m.len } else { m.stride };
                let Some(dst_ip) = m.dst_ip else { continue };
                let destination = SocketAddr::new(dst_ip, GEN_PORT);
                let mut offset = 0;
                while offset < m.len {
                    let len = stride.min(m.len - offset);
                    let data = self.bufs[slot][offset..offset + len].to_vec();
                    offset += len;
                    let Ok(contents) = data.as_slice().try_into() else { continue };
                    let input =
                        Input::Receive(now, Receive { proto: Protocol::Udp, source: m.addr, destination, contents });
                    if dst_ip == PUBLISHER_IP {
                        if let Some(p) = &mut self.publisher {
                            let _ = p.rtc.handle_input(input);
                        }
                        self.poll_publisher(now);
                    } else if let Some(&i) = self.by_ip.get(&dst_ip) {
                        let _ = self.viewers[i].rtc.handle_input(input);
                        self.poll_viewer(i, now);
                    }
                }
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        // Collect first: a peer may ask to be woken "now" again, which belongs to the next round.
        let mut due = Vec::new();
        while let Some(&(t, i)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            due.push(i);
        }
        for i in due {
            if i == PUBLISHER {
                self.send_frames(now);
                if let Some(p) = &mut self.publisher {
                    let _ = p.rtc.handle_input(Input::Timeout(now));
                }
                self.poll_publisher(now);
            } else {
                let _ = self.viewers[i].rtc.handle_input(Input::Timeout(now));
                self.poll_viewer(i, now);
            }
        }
    }

    fn send(&self, t: &str0m::net::Transmit) {
        send_transmit(&self.state, &self.socket, t);
    }

    fn poll_viewer(&mut self, i: usize, now: Instant) {
        loop {
            let out = self.viewers[i].rtc.poll_output();
            match out {
                Ok(Output::Timeout(t)) => {
                    let old = self.deadlines[i];
                    self.timers.remove(&(old, i));
                    self.deadlines[i] = t.max(now);
                    self.timers.insert((self.deadlines[i], i));
                    return;
                }
                Ok(Output::Transmit(t)) => self.send(&t),
                Ok(Output::Event(e)) => {
                    let v = &mut self.viewers[i];
                    match e {
                        Event::Connected => v.connected = true,
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => v.connected = false,
                        Event::RtpPacket(p) => {
                            let seq = *p.seq_no;
                            v.received += 1;
                            v.bytes += p.payload.len() as u64;
                            v.first_seq = Some(v.first_seq.map_or(seq, |f| f.min(seq)));
                            v.max_seq = v.max_seq.max(seq);
                        }
                        _ => {}
                    }
                }
                Err(_) => return,
            }
        }
    }

    fn poll_publisher(&mut self, now: Instant) {
        loop {
            let Some(p) = &mut self.publisher else { return };
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timers.remove(&(p.timeout, PUBLISHER));
                    p.timeout = if p.connected { t.min(p.next_at) } else { t }.max(now);
                    self.timers.insert((p.timeout, PUBLISHER));
                    return;
                }
                Ok(Output::Transmit(t)) => self.send(&t),
                Ok(Output::Event(Event::Connected)) => p.connected = true,
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        }
    }

    /// Writes the clip's frames that are due, in real time.
    fn send_frames(&mut self, now: Instant) {
        let Some(p) = &mut self.publisher else { return };
        if !p.connected {
            return;
        }
        let mid = p.mid;
        while p.next_at <= now {
            let frame = &p.frames[p.next % p.frames.len()];
            let rtp_time = str0m::media::MediaTime::from_90khz(p.next as u64 * 3000);
            let wallclock = p.start + Duration::from_secs_f64(p.next as f64 / f64::from(FPS));
            if let Some(writer) = p.rtc.writer(mid) {
                let pt = writer.payload_params().find(|pp| pp.spec().codec == Codec::H264).map(|pp| pp.pt());
                if let Some(pt) = pt {
                    let _ = writer.write(pt, wallclock, rtp_time, frame.clone());
                }
            }
            p.next += 1;
            p.next_at = p.start + Duration::from_secs_f64(p.next as f64 / f64::from(FPS));
            // Drain after every write (str0m's single-mutation invariant).
            loop {
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => send_transmit(&self.state, &self.socket, &t),
                    Ok(Output::Timeout(_)) | Err(_) => break,
                    Ok(Output::Event(_)) => {}
                }
            }
        }
    }
}

/// Sends one str0m datagram from the local address str0m chose (each peer has its own loopback address).
fn send_transmit(state: &UdpSocketState, socket: &UdpSocket, t: &str0m::net::Transmit) {
    let transmit = UdpTransmit {
        destination: t.destination,
        ecn: None,
        contents: &t.contents,
        segment_size: None,
        src_ip: Some(t.source.ip()),
    };
    let _ = state.try_send(socket.into(), &transmit);
}
