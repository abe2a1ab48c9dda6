//! What pushing costs on the Pi: the CPU sluice-edge takes to push a 1080p30 4 Mbit/s H.264 stream read from
//! standard input, side by side with `ffmpeg -re -i - -c copy -f flv` doing the same, both into nginx-rtmp; then
//! sluice-edge over WHIP into a Sluice router (when one is built: `SLUICE_BIN`, default target/release/sluice);
//! and the edge's binary size and resident memory.
//!
//! `cargo bench -p sluice-edge --bench push_cpu [-- SECONDS ROUNDS]` (default 20 s, 3 rounds). The pushers take
//! turns, so a busy moment of the machine falls on both; the ratio reported is the median of the rounds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let clip = clip();
    let edge = PathBuf::from(env!("CARGO_BIN_EXE_sluice-edge"));
    println!("input: {} ({} bytes), {seconds} s per run, {rounds} rounds", clip.display(), size(&clip));
    println!("cpu: {}", cpu_model());

    let nginx = Nginx::start();
    let url = format!("rtmp://127.0.0.1:{}/live/bench", nginx.port);
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let e = measure(
            &clip,
            seconds,
            Command::new(&edge).args(["push", "--source", "stdin", "--fps", "30", "--to", &url]),
        );
        let f = measure(
            &clip,
            seconds,
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "h264", "-framerate", "30", "-i", "-"])
                .args(["-c", "copy", "-f", "flv", &url]),
        );
        println!(
            "round {round}: RTMP push  sluice-edge {:.2}% of a core, RSS {} KB | ffmpeg {:.2}%, RSS {} KB | ratio {:.2}",
            e.cpu * 100.0,
            e.rss_kb,
            f.cpu * 100.0,
            f.rss_kb,
            e.cpu / f.cpu
        );
        ratios.push(e.cpu / f.cpu);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median sluice-edge/ffmpeg CPU ratio: {:.2} (spread {:.2}..{:.2}; target <= 0.5)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    drop(nginx);

    let router_bin = std::env::var("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sluice"));
    if router_bin.is_file() {
        let router = Router::start(&router_bin);
        let whip = format!("http://127.0.0.1:{}/bench/whip", router.http_port);
        let w = measure(
            &clip,
            seconds,
            Command::new(&edge).args(["push", "--source", "stdin", "--fps", "30", "--to", &whip]),
        );
        println!("WHIP push  sluice-edge {:.2}% of a core, RSS {} KB", w.cpu * 100.0, w.rss_kb);
    } else {
        println!("WHIP push: skipped ({} not built; cargo build --release -p sluice)", router_bin.display());
    }
    let stripped = std::env::temp_dir().join("sluice-edge-stripped");
    let _ = std::fs::copy(&edge, &stripped);
    let _ = Command::new("strip").arg(&stripped).status();
    println!("binary: {} bytes as built (bench profile), {} bytes stripped", size(&edge), size(&stripped));
    let _ = std::fs::remove_file(&stripped);
}

struct Usage {
    /// Fraction of one core over the measured window.
    cpu: f64,
    rss_kb: u64,
}

/// Runs `cmd` with the clip on its standard input for `seconds`, and measures its CPU from 2 s in (after start-up)
/// to the end, and its resident memory at the end.
fn measure(clip: &Path, seconds: u64, cmd: &mut Command) -> Usage {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start pusher");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = std::fs::read(clip).expect("clip");
    // The clip as often as the run needs, written as fast as the pusher takes it (it paces itself, -re / --fps).
    let feeder = std::thread::spawn(move || {
        for _ in 0..8 {
            if stdin.write_all(&data).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let (t0, c0) = (Instant::now(), cpu_seconds(child.id()));
    std::thread::sleep(Duration::from_secs(seconds));
    let (t1, c1) = (Instant::now(), cpu_seconds(child.id()));
    let rss_kb = rss_kb(child.id());
    stop(&mut child);
    let _ = feeder.join();
    Usage { cpu: (c1 - c0) / (t1 - t0).as_secs_f64(), rss_kb }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A 20-second 1080p30 4 Mbit/s H.264 stream (x264, a keyframe every 2 s, no B-frames as cameras send), made once.
fn clip() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-edge-1080p30-4M.h264");
    if !path.is_file() {
        println!("encoding the input clip once (ffmpeg, libx264)...");
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
            .args(["-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "4M"])
            .args(["-bufsize", "8M", "-g", "60", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "h264"])
            .arg(&path)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg could not make the clip");
    }
    path
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// CPU time of every thread of `pid` in seconds, from the scheduler's nanosecond counters (the tick-based
/// /proc/PID/stat is too coarse for a process that uses well under 1% of a core).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ns as f64 / 1e9
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx-rtmp taking the pushes (and dropping them: no players).
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\n\
                 pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{ worker_connections 64; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
                dir.path().display()
            ),
        )
        .expect("conf");
        let child = Command::new("nginx")
            .args(["-p", &dir.path().display().to_string(), "-c"])
            .arg(&conf)
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (the test command installs it)");
        wait_listening(port, "nginx");
        Nginx { child, port, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Sluice router with one WHIP route, for the WHIP row.
struct Router {
    child: Child,
    http_port: u16,
    _dir: tempfile::TempDir,
}

impl Router {
    fn start(bin: &Path) -> Router {
        let dir = tempfile::tempdir().expect("dir");
        let http_port = free_port();
        let routes = dir.path().join("routes.toml");
        std::fs::write(
            &routes,
            format!(
                "[server]\nhttp = \"127.0.0.1:{http_port}\"\nwebrtc = {{ udp = \"127.0.0.1:0\" }}\ndata_dir = \"{}\"\n\n\
                 [[route]]\nname = \"bench\"\nfrom = \"whip\"\nto = [\"whep\"]\n",
                dir.path().join("data").display()
            ),
        )
        .expect("routes");
        let child = Command::new(bin).arg("run").arg(&routes).stderr(Stdio::null()).spawn().expect("start sluice");
        wait_listening(http_port, "sluice");
        Router { child, http_port, _dir: dir }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
