//! RTMP against ffmpeg: publish H.264 + AAC with a stream key, read it back with ffmpeg/ffprobe, refuse wrong
//! keys and second publishers, survive a publisher killed mid-stream.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::RouterProcess;
use common::ffmpeg_rtmp_publish as publish;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn start_router(dir: &Path, rtmp_port: u16) -> RouterProcess {
    let path = dir.join("routes.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:{rtmp_port}\"\nwebrtc = {{ udp = \"127.0.0.1:0\" }}\n\n\
             [[route]]\nname = \"cam\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp\"]\npublish_key = \"s3cret\"\n\n\
             [[route]]\nname = \"studio\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\noverride_publisher = true\n\n\
             [[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [\"rtmp\"]\n"
        ),
    )
    .expect("write routes");
    RouterProcess::start(&path)
}

/// Reads `seconds` of a stream over RTMP into an FLV file and returns ffprobe's (codec, frames) per stream.
fn read_back(url: &str, seconds: u32, out: &Path) -> Vec<(String, u64)> {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-rw_timeout",
            "10000000",
            "-i",
            url,
            "-t",
            &seconds.to_string(),
        ])
        .args(["-map", "0:v", "-map", "0:a?", "-c", "copy"])
        .arg(out)
        .status()
        .expect("ffmpeg reader");
    assert!(status.success(), "ffmpeg could not read {url}");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json"])
        .arg(out)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            let frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
            (s["codec_name"].as_str().unwrap_or_default().to_string(), frames)
        })
        .collect()
}

#[test]
fn ffmpeg_publishes_and_reads_back_over_rtmp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut router = start_router(dir.path(), port);
    let mut publisher = publish(&format!("rtmp://127.0.0.1:{port}/cam/s3cret"), 12);
    router.wait_log(|l| l["message"] == "RTMP publisher connected" && l["route"] == "cam");

    let streams = read_back(&format!("rtmp://127.0.0.1:{port}/cam"), 4, &dir.path().join("back.flv"));
    let video = streams.iter().find(|(c, _)| c == "h264").expect("h264 video read back");
    let audio = streams.iter().find(|(c, _)| c == "aac").expect("aac audio read back");
    // 4 s at 30 fps and 48 kHz AAC (1024 samples per frame): within a few frames of what was sent.
    assert!((110..=130).contains(&video.1), "video frames: {streams:?}");
    assert!((170..=200).contains(&audio.1), "audio frames: {streams:?}");

    // A wrong key is refused with the reason, and the running publisher is untouched.
    let wrong = publish(&format!("rtmp://127.0.0.1:{port}/cam/nope"), 2).wait_with_output().expect("ffmpeg");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong or missing stream key"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    // A second publisher with the right key is refused while the first is live.
    let second = publish(&format!("rtmp://127.0.0.1:{port}/cam?key=s3cret"), 2).wait_with_output().expect("ffmpeg");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already has a publisher"));

    // The publisher killed mid-stream: the route goes back to waiting for the next one.
    publisher.kill().expect("kill ffmpeg");
    let _ = publisher.wait();
    router.wait_log(|l| l["message"] == "publisher left; waiting for the next one" && l["route"] == "cam");
}

#[test]
fn routes_play_over_rtmp_and_override_publishers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut router = start_router(dir.path(), port);
    // The demo route (no audio) plays over RTMP too: late joiners start on the GOP cache's keyframe.
    let streams = read_back(&format!("rtmp://127.0.0.1:{port}/demo"), 2, &dir.path().join("demo.flv"));
    assert_eq!(streams.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["h264"]);
    assert!(streams[0].1 >= 50, "{streams:?}");

    // override_publisher: the newcomer takes over the route, the old publisher is dropped.
    let mut first = publish(&format!("rtmp://127.0.0.1:{port}/studio/a"), 20);
    router.wait_log(|l| l["message"] == "RTMP publisher connected" && l["route"] == "studio");
    let mut second = publish(&format!("rtmp://127.0.0.1:{port}/studio/b"), 20);
    router.wait_log(|l| l["message"].as_str().is_some_and(|m| m.starts_with("a new publisher replaces")));
    let first_status = first.wait().expect("first ffmpeg");
    assert!(!first_status.success(), "the replaced publisher was disconnected");
    let _ = second.kill();
    let _ = second.wait();

    // Hostile peers that get through the handshake close their own connection only.
    hostile(port, &deeply_nested_amf_command());
    hostile(port, &inconsistent_chunk_lengths());
    hostile(port, &[0x55; 4096]);
    let again = read_back(&format!("rtmp://127.0.0.1:{port}/demo"), 1, &dir.path().join("demo2.flv"));
    assert!(!again.is_empty(), "the router still serves");
    router.wait_log(|l| {
        l["message"] == "RTMP connection closed" && l["error"].as_str().is_some_and(|e| e.contains("RTMP"))
    });
}

/// nginx with nginx-rtmp on a free port: the other server a route pushes to and pulls from. Killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\n\
                 error_log stderr warn;\npid {pid};\nevents {{}}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
                pid = dir.path().join("nginx.pid").display()
            ),
        )
        .expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (installed by .ci/test)");
        // nginx has no readiness signal on stdout; its port accepting connections is the event to wait for.
        let deadline = std::time::Instant::now() + common::WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Nginx { child, port, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_nginx_rtmp_and_pull_back() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:{port}\"\nwebrtc = {{ udp = \"127.0.0.1:0\" }}\n\n\
             [[route]]\nname = \"out\"\nfrom = \"demo\"\nto = [\"rtmp://127.0.0.1:{n}/live/restream\"]\n\n\
             [[route]]\nname = \"back\"\nfrom = \"rtmp://127.0.0.1:{n}/live/restream\"\nto = [\"rtmp\"]\n",
            n = nginx.port
        ),
    )
    .expect("write routes");
    let mut router = RouterProcess::start(&path);
    router.wait_log(|l| l["message"] == "RTMP push connected");

    // What nginx relays is the demo clip: read it from nginx directly...
    let from_nginx = read_back(&format!("rtmp://127.0.0.1:{}/live/restream", nginx.port), 2, &dir.path().join("n.flv"));
    assert_eq!(from_nginx.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["h264"]);
    assert!(from_nginx[0].1 >= 40, "{from_nginx:?}");
    // ...and through the route that pulls it back from nginx.
    let pulled = read_back(&format!("rtmp://127.0.0.1:{port}/back"), 2, &dir.path().join("b.flv"));
    assert_eq!(pulled.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["h264"]);
    assert!(pulled[0].1 >= 40, "{pulled:?}");

    let out: serde_json::Value =
        reqwest::get(router.url("/v1/routes/out")).await.expect("get").json().await.expect("json");
    assert_eq!(out["pushes"][0]["state"], "live", "{out}");
    assert_eq!(out["pushes"][0]["target"], format!("rtmp://127.0.0.1:{}/live/***", nginx.port), "the key is masked");
    let back: serde_json::Value =
        reqwest::get(router.url("/v1/routes/back")).await.expect("get").json().await.expect("json");
    assert_eq!(back["live"]["state"], "live");

    // nginx goes away: the push retries with backoff and says why; the pull reconnects.
    drop(nginx);
    router.wait_log(|l| l["message"] == "RTMP push failed; retrying with backoff");
    let out: serde_json::Value =
        reqwest::get(router.url("/v1/routes/out")).await.expect("get").json().await.expect("json");
    assert_ne!(out["pushes"][0]["state"], "live");
}

/// Completes an RTMP handshake as a client, then sends `payload` and waits for the router to hang up.
fn hostile(port: u16, payload: &[u8]) {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(common::WAIT)).expect("timeout");
    let mut hs = Handshake::new(PeerType::Client);
    tcp.write_all(&hs.generate_outbound_p0_and_p1().expect("p0p1")).expect("write");
    let mut buf = [0u8; 8192];
    loop {
        let n = tcp.read(&mut buf).expect("handshake read");
        assert!(n > 0, "closed during the handshake");
        match hs.process_bytes(&buf[..n]).expect("handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => tcp.write_all(&response_bytes).expect("write"),
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                tcp.write_all(&response_bytes).expect("write");
                break;
            }
        }
    }
    let _ = tcp.write_all(payload);
    // The router closes the connection (EOF or reset) instead of crashing or hanging.
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// An AMF0 command (message type 20) whose object is nested 20,000 levels deep: once enough to overflow the
/// stack of the decoder's recursion.
fn deeply_nested_amf_command() -> Vec<u8> {
    let mut amf = vec![0x02, 0x00, 0x07];
    amf.extend_from_slice(b"connect");
    amf.extend_from_slice(&[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]); // transaction id 1.0
    for _ in 0..20_000 {
        amf.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    sluice::media::flv::chunk_message(3, 0, 20, 0, &amf, 128).to_vec()
}

/// A message on chunk stream 3 declared 1000 bytes long but cut off after one chunk, then a new message on
/// chunk stream 4: lengths that made rml_rtmp's decoder underflow.
fn inconsistent_chunk_lengths() -> Vec<u8> {
    let mut b = sluice::media::flv::chunk_message(3, 0, 20, 0, &[0x02; 1000], 128)[..12 + 128].to_vec();
    b.extend_from_slice(&sluice::media::flv::chunk_message(4, 0, 20, 0, &[0x02; 10], 128));
    b.extend_from_slice(&[0xc3; 200]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_audio_is_dropped_and_reported_video_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut router = start_router(dir.path(), port);
    // H.264 with MP3 audio: routes carry AAC, so the audio goes and the video stays.
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "15"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "libmp3lame"])
        .args(["-f", "flv", &format!("rtmp://127.0.0.1:{port}/cam/s3cret")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    router.wait_log(|l| l["message"] == "source problem" && l["route"] == "cam");
    let streams = read_back(&format!("rtmp://127.0.0.1:{port}/cam"), 2, &dir.path().join("v.flv"));
    assert_eq!(streams.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["h264"], "{streams:?}");
    let cam: serde_json::Value =
        reqwest::get(router.url("/v1/routes/cam")).await.expect("get").json().await.expect("json");
    let error = cam["live"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("audio format 2") && error.contains("video continues"), "{cam}");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// What trips newcomers (issue 18): ffmpeg's default H.264 has B-frames, which WebRTC viewers cannot play; that is
/// reported on the route with the fix. Its AAC-LC audio is not (WebRTC viewers get it as Opus). And an RTMP reader
/// gets `onMetaData` naming the route's tracks, so `ffmpeg -map 0 -c copy` finds exactly them (no phantom data
/// stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_frames_are_reported_and_players_get_the_tracks_in_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut router = start_router(dir.path(), port);
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "12"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-pix_fmt", "yuv420p", "-g", "30"])
        .args(["-c:a", "aac", "-f", "flv", &format!("rtmp://127.0.0.1:{port}/cam/s3cret")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    router.wait_log(|l| l["message"] == "RTMP publisher connected" && l["route"] == "cam");
    router.wait_log(|l| l["message"].as_str().is_some_and(|m| m.starts_with("the video has B-frames")));

    let route: serde_json::Value =
        reqwest::get(router.url("/v1/routes/cam")).await.expect("get").json().await.expect("json");
    assert_eq!(route["live"]["reordered_video"], true, "{route:#}");
    let warnings: Vec<&str> =
        route["warnings"].as_array().expect("warnings").iter().filter_map(|w| w.as_str()).collect();
    assert!(warnings.iter().any(|w| w.contains("B-frames") && w.contains("-bf 0")), "{warnings:?}");
    assert!(!warnings.iter().any(|w| w.contains("AAC")), "AAC-LC is transcoded for WebRTC: {warnings:?}");
    let audio = route["live"]["tracks"].as_array().expect("tracks").iter().find(|t| t["codec"] == "aac");
    assert!(audio.is_some_and(|t| t.get("opus_refusal").is_none()), "{route:#}");

    let out = dir.path().join("copy.mp4");
    let copy = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-rw_timeout", "10000000", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/cam"))
        .args(["-t", "3", "-map", "0", "-c", "copy"])
        .arg(&out)
        .output()
        .expect("ffmpeg reader");
    assert!(copy.status.success(), "-map 0 -c copy: {}", String::from_utf8_lossy(&copy.stderr));
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name,width,height", "-of", "json"])
        .arg(&out)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    let mut streams: Vec<(String, String)> = v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| (s["codec_type"].as_str().unwrap_or("").into(), s["codec_name"].as_str().unwrap_or("").into()))
        .collect();
    streams.sort();
    assert_eq!(streams, [("audio".into(), "aac".into()), ("video".into(), "h264".into())], "{v:#}");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// Issue 29: a template route (`live/*`) makes a route per name published to, played like any other (RTMP, the
/// frame tap, the viewer page under a path with segments), and ends it once idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_makes_a_route_per_publisher_and_ends_it_when_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:{port}\"\nwebrtc = {{ udp = \"127.0.0.1:0\" }}\n\n\
             [[route]]\nname = \"live/*\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp\"]\nidle_timeout = \"1s\"\n\n\
             [[route]]\nname = \"live/fixed\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\n\n\
             [[route]]\nname = \"live\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\n\n\
             [[route]]\nname = \"keyed/*\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\npublish_key = \"k\"\n"
        ),
    )
    .expect("write routes");
    let mut router = RouterProcess::start(&path);
    let client = reqwest::Client::new();
    let base = router.url("");
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    // Nothing is made before a publisher comes; the viewer page exists for any name the template matches.
    assert_eq!(get("/v1/routes/live%2Fcam1").await.expect("get").status(), 404);
    assert_eq!(get("/live/cam1").await.expect("page").status(), 200);
    assert_eq!(get("/elsewhere/cam1").await.expect("page").status(), 404);

    // A template's key is checked before anything is made.
    let wrong = publish(&format!("rtmp://127.0.0.1:{port}/keyed/cam9/nope"), 2).wait_with_output().expect("ffmpeg");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong or missing stream key"));
    assert_eq!(
        get("/v1/routes/keyed%2Fcam9").await.expect("get").status(),
        404,
        "nothing made for a refused publisher"
    );

    // `live/cam1` is the template's, though the exact route `live` exists (the longest name that matches wins).
    let mut publisher = publish(&format!("rtmp://127.0.0.1:{port}/live/cam1"), 30);
    router.wait_log(|l| l["message"] == "route made from its template" && l["route"] == "live/cam1");
    router.wait_log(|l| l["message"] == "RTMP publisher connected" && l["route"] == "live/cam1");
    let shown: serde_json::Value = get("/v1/routes/live%2Fcam1").await.expect("get").json().await.expect("json");
    assert_eq!(shown["template"], "live/*");
    assert_eq!(shown["config"]["to"], serde_json::json!(["whep", "rtmp"]), "the template's settings");
    // The exact route keeps its own settings: it was not made from the template.
    let fixed: serde_json::Value = get("/v1/routes/live%2Ffixed").await.expect("get").json().await.expect("json");
    assert!(fixed["template"].is_null(), "{fixed}");

    // Played over RTMP under the same path.
    let streams = read_back(&format!("rtmp://127.0.0.1:{port}/live/cam1"), 2, &dir.path().join("back.flv"));
    assert!(streams.iter().any(|(c, n)| c == "h264" && *n > 30), "{streams:?}");

    // The publisher goes; the route ends once idle for its `idle_timeout`, and is gone from the API.
    publisher.kill().expect("kill ffmpeg");
    let _ = publisher.wait();
    router.wait_log(|l| l["message"] == "route made from a template ended: idle" && l["route"] == "live/cam1");
    assert_eq!(get("/v1/routes/live%2Fcam1").await.expect("get").status(), 404);
    let names: Vec<String> = get("/v1/routes")
        .await
        .expect("get")
        .json::<Vec<serde_json::Value>>()
        .await
        .expect("json")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, ["live/fixed", "live"]);
}
