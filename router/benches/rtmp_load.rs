//! RTMP readers of one 4 Mbit/s stream, Sluice side by side with nginx-rtmp: both pinned to core 0, the same
//! clip published by ffmpeg, the same reader tool (rml_rtmp clients on core 1). Per step: server CPU, CPU per
//! reader, resident memory per reader, and whether every reader still gets the full bitrate. Sluice runs twice:
//! with its default `write_interval` (50 ms) and with 0 ms (every frame written as it arrives, like nginx-rtmp).
//!
//! Run: `cargo bench -p sluice --bench rtmp_load -- [MAX_READERS] [STEP]`

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use support::{Router, clip_mp4, measure_step, rss_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A server under test: its process and where readers play the stream.
struct Server {
    name: &'static str,
    pid: u32,
    addr: String,
    app: String,
    stream: String,
    _keep: Box<dyn std::any::Any>,
}

/// The router with its players written to at most every `write_interval` (see `write_interval`).
fn sluice(name: &'static str, write_interval: &str) -> Server {
    let port = free_port();
    let router = Router::start_with_rtmp(
        port,
        &format!(
            "[[route]]\nname = \"live\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\nwrite_interval = \"{write_interval}\"\n"
        ),
    );
    Server {
        name,
        pid: router.child.id(),
        addr: format!("127.0.0.1:{port}"),
        app: "live".into(),
        stream: "s".into(),
        _keep: Box::new(router),
    }
}

/// nginx and the directory of its config, removed when it stops.
struct Nginx(Child, #[allow(dead_code, reason = "held for its Drop")] tempfile::TempDir);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\nworker_rlimit_nofile 65536;\n\
             error_log stderr crit;\npid {};\nevents {{ worker_connections 65536; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
            dir.path().join("pid").display()
        ),
    )
    .expect("conf");
    let child = Command::new("taskset")
        .args(["-c", "0", "nginx", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        name: "nginx-rtmp",
        pid: child.id(),
        addr: format!("127.0.0.1:{port}"),
        app: "live".into(),
        stream: "s".into(),
        _keep: Box::new(Nginx(child, dir)),
    }
}

/// ffmpeg publishing the 4 Mbit/s clip in a loop, in real time, on core 1.
fn publish(server: &Server) -> Child {
    Command::new("taskset")
        .args(["-c", "1", "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(clip_mp4())
        .args(["-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{}/{}/{}", server.addr, server.app, server.stream))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

/// One RTMP player that reads and discards, counting payload bytes.
async fn reader(addr: String, app: String, stream: String, bytes: Arc<AtomicU64>) -> Result<(), String> {
    let mut tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut hs = Handshake::new(PeerType::Client);
    tcp.write_all(&hs.generate_outbound_p0_and_p1().map_err(|e| format!("{e:?}"))?).await.map_err(|e| e.to_string())?;
    let remaining = loop {
        let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        match hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}"))? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                tcp.write_all(&response_bytes).await.map_err(|e| e.to_string())?
            }
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                tcp.write_all(&response_bytes).await.map_err(|e| e.to_string())?;
                break remaining_bytes;
            }
        }
    };
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(format!("rtmp://{addr}/{app}"));
    let (mut session, _) = ClientSession::new(config).map_err(|e| format!("{e:?}"))?;
    let mut pending = vec![session.request_connection(app).map_err(|e| format!("{e:?}"))?];
    pending.extend(session.handle_input(&remaining).map_err(|e| format!("{e:?}"))?);
    let mut requested = false;
    loop {
        for r in pending.drain(..) {
            match r {
                ClientSessionResult::OutboundResponse(p) => tcp.write_all(&p.bytes).await.map_err(|e| e.to_string())?,
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) if !requested => {
                    requested = true;
                    let play = session.request_playback(stream.clone()).map_err(|e| format!("{e:?}"))?;
                    if let ClientSessionResult::OutboundResponse(p) = play {
                        tcp.write_all(&p.bytes).await.map_err(|e| e.to_string())?;
                    }
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived { data, .. })
                | ClientSessionResult::RaisedEvent(ClientSessionEvent::AudioDataReceived { data, .. }) => {
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        pending = session.handle_input(&buf[..n]).map_err(|e| format!("{e:?}"))?;
    }
}

fn run(server: Server, max: usize, step: usize, clip_mbps: f64) {
    let mut publisher = publish(&server);
    std::thread::sleep(Duration::from_secs(2));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let counters: Vec<Arc<AtomicU64>> = (0..max).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let rss0 = rss_bytes(server.pid);
    // How busy the readers' core is (they and the publisher): near 100% the readers, not the server, set the pace,
    // and a server whose players read less often writes bigger chunks less often: such a step says little about
    // the server.
    println!(
        "{}: readers  server-cpu%  cpu%/reader  KB/reader  min-Mbit/s-per-reader  readers-core-busy%",
        server.name
    );
    let mut best = 0;
    rt.block_on(async {
        let mut started = 0;
        let mut n = step;
        while n <= max {
            for c in counters.iter().take(n).skip(started) {
                let (addr, app, stream, c) =
                    (server.addr.clone(), server.app.clone(), server.stream.clone(), Arc::clone(c));
                tokio::spawn(async move {
                    let _ = reader(addr, app, stream, c).await;
                });
            }
            started = n;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let measured = measure_step(server.pid, &counters[..n], rss0).await;
            let (cpu, readers_busy, kb) = (measured.cpu, measured.readers_busy, measured.kb_per_reader);
            let min_mbps = measured.rates.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{:>w$}  {n:7}  {:11.1}  {:11.3}  {kb:9.1}  {min_mbps:8.2}  {:22.1}",
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
    let _ = publisher.kill();
    let _ = publisher.wait();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let max: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let step: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let clip_mbps = 4.0;
    // The default: frames reach players in bunches at most 50 ms apart.
    run(sluice("sluice", "50ms"), max, step, clip_mbps);
    // Every frame written as it arrives, as nginx-rtmp does.
    run(sluice("sluice-0ms", "0ms"), max, step, clip_mbps);
    run(nginx(), max, step, clip_mbps);
}
