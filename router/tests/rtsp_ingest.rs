//! Pulling RTSP cameras: a GStreamer RTSP server (gst-rtsp-server through Python, `peers/rtsp_camera.py`) plays
//! the IP camera; the real `sluice` binary pulls it; the HTTP frame tap reads what reaches the route's readers.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{RouterProcess, WAIT};

/// A camera process; killed on drop.
struct Camera {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Camera {
    fn start(port: u16, codec: &str, auth: Option<(&str, &str)>) -> Camera {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/rtsp_camera.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).arg(port.to_string()).arg(codec);
        if let Some((user, pass)) = auth {
            cmd.args([user, pass]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start the camera script");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut camera = Camera { child, lines, port };
        camera.wait_line("ready");
        camera
    }

    fn wait_line(&mut self, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == wanted => return,
                Ok(_) => {}
                Err(_) => panic!("the camera never printed {wanted:?}"),
            }
        }
    }

    /// Lines printed so far, without waiting.
    fn printed(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    fn url(&self, auth: &str) -> String {
        format!("rtsp://{auth}127.0.0.1:{}/test", self.port)
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn routes_file(dir: &Path, routes: &str) -> std::path::PathBuf {
    let path = dir.join("routes.toml");
    let text = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\nwebrtc = {{ udp = \"127.0.0.1:0\" }}\n\n{routes}"
    );
    std::fs::write(&path, text).expect("write routes");
    path
}

fn route(name: &str, from: &str, extra: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nfrom = \"{from}\"\nto = [\"whep\"]\n{extra}\n")
}

/// (codec, pts, keyframe) of the next `n` frames a new reader of the route gets.
async fn frames(router: &RouterProcess, route: &str, n: usize) -> Vec<(String, i64, bool)> {
    let url = router.url(&format!("/v1/routes/{route}/frames?limit={n}"));
    let body = tokio::time::timeout(WAIT, async { reqwest::get(url).await.expect("tap").text().await.expect("body") })
        .await
        .unwrap_or_else(|_| panic!("route {route} delivered no {n} frames in time"));
    body.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("ndjson");
            (
                v["codec"].as_str().unwrap_or_default().to_string(),
                v["pts"].as_i64().unwrap_or(-1),
                v["keyframe"] == true,
            )
        })
        .collect()
}

async fn route_json(router: &RouterProcess, route: &str) -> serde_json::Value {
    reqwest::get(router.url(&format!("/v1/routes/{route}"))).await.expect("get").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_h265_and_g711_cameras_reach_readers() {
    let h264 = Camera::start(free_port(), "h264", None);
    let h265 = Camera::start(free_port(), "h265", None);
    let pcma = Camera::start(free_port(), "h264+pcma", None);
    let opus = Camera::start(free_port(), "h264+opus", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = [
        route("h264", &h264.url(""), ""),
        route("h265", &h265.url(""), "rtsp_transport = \"udp\""),
        route("pcma", &pcma.url(""), ""),
        route("opus", &opus.url(""), ""),
    ]
    .concat();
    let router = RouterProcess::start(&routes_file(dir.path(), &routes));

    for (name, codec) in [("h264", "h264"), ("h265", "h265")] {
        let got = frames(&router, name, 40).await;
        assert!(got[0].2, "{name}: a reader starts on a keyframe");
        assert!(got.iter().all(|(c, _, _)| c == codec), "{name}: {got:?}");
        assert!(got.windows(2).all(|w| w[1].1 >= w[0].1), "{name}: monotonic timestamps");
        let live = route_json(&router, name).await;
        assert_eq!(live["live"]["state"], "live");
        assert!(live["live"]["tracks"][0]["description"].as_str().is_some_and(|d| d.starts_with("320x240")), "{live}");
    }
    let got = frames(&router, "pcma", 120).await;
    assert!(got.iter().any(|(c, _, _)| c == "pcma"), "G.711 audio arrives beside the video");
    assert!(got.iter().any(|(c, _, _)| c == "h264"));
    let live = route_json(&router, "pcma").await;
    let codecs: Vec<&str> =
        live["live"]["tracks"].as_array().expect("tracks").iter().filter_map(|t| t["codec"].as_str()).collect();
    assert_eq!(codecs, ["h264", "pcma"]);
    // Opus cannot be depacketized by retina: the video still flows, and the log says why audio does not.
    let got = frames(&router, "opus", 20).await;
    assert!(got.iter().all(|(c, _, _)| c == "h264"));
    let mut router = router;
    router.saw_or_wait(|l| l["message"].as_str().is_some_and(|m| m.contains("Opus audio over RTSP is not supported")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_and_a_wrong_password() {
    let camera = Camera::start(free_port(), "h264", Some(("admin", "s3cret")));
    let dir = tempfile::tempdir().expect("tempdir");
    let routes =
        [route("good", &camera.url("admin:s3cret@"), ""), route("bad", &camera.url("admin:wrong@"), "")].concat();
    let mut router = RouterProcess::start(&routes_file(dir.path(), &routes));
    let got = frames(&router, "good", 10).await;
    assert_eq!(got.len(), 10);

    // The wrong password: a clear error, backoff, one warning however many retries.
    let deadline = Instant::now() + WAIT;
    let bad = loop {
        let bad = route_json(&router, "bad").await;
        if bad["live"]["reconnects"].as_u64().unwrap_or(0) >= 3 {
            break bad;
        }
        assert!(Instant::now() < deadline, "no retries: {bad}");
        // Retries are seconds apart by design (backoff); sampling the API is how an operator sees them too.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(bad["live"]["state"], "reconnecting");
    let error = bad["live"]["last_error"].as_str().expect("last_error");
    assert!(error.contains("401") || error.to_lowercase().contains("unauthorized"), "{error}");
    assert!(!error.contains("wrong"), "the password is not echoed: {error}");
    assert_eq!(bad["live"]["source"], format!("rtsp://admin:***@127.0.0.1:{}/test", camera.port));
    router.wait_log(|l| l["message"] == "RTSP source failed; retrying with backoff");
    // Everything logged during the three retries, not just up to the first match.
    router.drain();
    let warnings = router
        .seen
        .iter()
        .filter(|l| {
            l["message"] == "RTSP source failed; retrying with backoff"
                && l["camera"].as_str().is_some_and(|c| c.contains("***"))
        })
        .count();
    assert_eq!(warnings, 1, "no log flood");
}

/// The next (pts, keyframe) from a streaming tap response.
async fn next_frame(tap: &mut reqwest::Response, buf: &mut Vec<u8>) -> (i64, bool) {
    loop {
        if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).expect("ndjson");
            return (v["pts"].as_i64().expect("pts"), v["keyframe"] == true);
        }
        let chunk = tokio::time::timeout(WAIT, tap.chunk()).await.expect("frames in time").expect("chunk");
        buf.extend_from_slice(&chunk.expect("tap open"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_camera_comes_back_to_the_same_reader() {
    let port = free_port();
    let camera = Camera::start(port, "h264", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut router = RouterProcess::start(&routes_file(dir.path(), &route("cam", &camera.url(""), "")));
    // One reader for the whole test.
    let url = router.url("/v1/routes/cam/frames");
    let mut tap = reqwest::get(url).await.expect("tap");
    let mut buf = Vec::new();
    for _ in 0..30 {
        next_frame(&mut tap, &mut buf).await;
    }
    drop(camera);
    router.wait_log(|l| l["message"] == "RTSP source failed; retrying with backoff");
    // Frames already in flight when the camera died are not "after the outage": read until the tap is quiet.
    while tokio::time::timeout(Duration::from_millis(500), next_frame(&mut tap, &mut buf)).await.is_ok() {}
    let _camera = Camera::start(port, "h264", None);
    // Same reader, frames again: the first after the outage is a keyframe, the clock keeps going forward.
    let last = route_json(&router, "cam").await; // state while the camera was away
    assert_eq!(last["live"]["state"], "reconnecting");
    let (pts, keyframe) = next_frame(&mut tap, &mut buf).await;
    assert!(keyframe, "resumes on a keyframe");
    let (pts2, _) = next_frame(&mut tap, &mut buf).await;
    assert!(pts2 > pts && pts > 0, "timestamps keep going forward across the reconnect");
    let live = route_json(&router, "cam").await;
    assert_eq!(live["live"]["state"], "live");
    assert!(live["live"]["reconnects"].as_u64().unwrap_or(0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_connects_for_readers_and_leaves_when_idle() {
    let mut camera = Camera::start(free_port(), "h264", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = route("cam", &camera.url(""), "on_demand = true\nidle_timeout = \"1s\"");
    let router = RouterProcess::start(&routes_file(dir.path(), &routes));
    let idle = route_json(&router, "cam").await;
    assert_eq!(idle["live"]["state"], "waiting");
    assert!(camera.printed().is_empty(), "no connection before a reader");
    let got = frames(&router, "cam", 10).await;
    assert!(got[0].2);
    camera.wait_line("client connected");
    // The reader left: after the idle timeout the router hangs up.
    camera.wait_line("client disconnected");
    let after = route_json(&router, "cam").await;
    assert_eq!(after["live"]["state"], "waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cameras_and_garbage_servers_fail_clearly() {
    let closed = free_port();
    let garbage = TcpListener::bind("127.0.0.1:0").expect("bind");
    let garbage_port = garbage.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in garbage.incoming().map_while(Result::ok) {
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n\x00\xff garbage \x13\x37\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = [
        route("down", &format!("rtsp://127.0.0.1:{closed}/x"), ""),
        route("junk", &format!("rtsp://127.0.0.1:{garbage_port}/x"), ""),
        route("demo", "demo", ""),
    ]
    .concat();
    let mut router = RouterProcess::start(&routes_file(dir.path(), &routes));
    for (name, port) in [("down", closed), ("junk", garbage_port)] {
        let camera = format!("rtsp://127.0.0.1:{port}/x");
        router.saw_or_wait(|l| {
            l["message"] == "RTSP source failed; retrying with backoff" && l["camera"] == camera.as_str()
        });
        let r = route_json(&router, name).await;
        assert_eq!(r["live"]["state"], "reconnecting", "{name}: {r}");
        assert!(r["live"]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {r}");
    }
    let down = route_json(&router, "down").await;
    assert!(down["live"]["last_error"].as_str().is_some_and(|e| e.to_lowercase().contains("refused")), "{down}");
    // The rest of the router is unaffected.
    assert_eq!(frames(&router, "demo", 5).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_give_frames_their_wall_clock_time() {
    let camera = Camera::start(free_port(), "h264", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let router = RouterProcess::start(&routes_file(dir.path(), &route("cam", &camera.url(""), "")));
    let mut tap = reqwest::get(router.url("/v1/routes/cam/frames")).await.expect("tap");
    let mut buf = Vec::new();
    // gst-rtsp-server sends an RTCP sender report every few seconds; frames after the first one carry the time.
    let wallclock = tokio::time::timeout(WAIT, async {
        loop {
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).expect("ndjson");
                if let Some(w) = v["wallclock"].as_f64() {
                    return w;
                }
            }
            let chunk = tap.chunk().await.expect("chunk").expect("tap open");
            buf.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("a frame with wall-clock time from a sender report");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((now - wallclock).abs() < 5.0, "the camera's clock is this machine's: {wallclock} vs {now}");
}
