//! Recording through `builtin:record-mp4` with the real binary: segments ffprobe reads frame for frame, the index
//! and playback API (Range, a span stitched across segments), start/stop from the API, `kill -9` mid-segment
//! and recovery at the next start, and the storage quota deleting oldest first.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{RouterProcess, WAIT, ffprobe_video};
use serde_json::{Value, json};

fn config(dir: &Path, plugin: &str, routes: &str) -> std::path::PathBuf {
    let text = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\n\
         webrtc = {{ udp = \"127.0.0.1:0\" }}\ndata_dir = \"{data}\"\n\n\
         [plugins.mp4]\nsource = \"builtin:record-mp4\"\n{plugin}\n\n{routes}",
        data = dir.join("data").display(),
    );
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).expect("write routes.toml");
    path
}

fn indexed(route: &'static str) -> impl Fn(&Value) -> bool {
    move |l| l["message"] == "recording indexed" && l["route"] == route
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    let r = client.get(&url).send().await.expect("GET");
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.expect("json")
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = client.post(&url).json(&body).send().await.expect("POST");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Frames of a file ffmpeg decodes, and whatever it complained about.
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_frames_match_duration(path: &Path) -> (u64, f64) {
    let (frames, duration) = ffprobe_video(path);
    let expected = duration * 30.0;
    assert!(
        (frames as f64 - expected).abs() <= expected * 0.01 + 1.0,
        "{}: {frames} frames in {duration} s (30 fps: {expected})",
        path.display()
    );
    (frames, duration)
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_seconds_recorded_indexed_and_played_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let plugin = format!(
        "config = {{ segment_duration = \"10s\", part_duration = \"1s\" }}\ngrants = {{ storage = {{ dir = \"{}\" }} }}",
        rec.display()
    );
    let routes = "[[route]]\nname = \"rec\"\nfrom = \"demo\"\nto = [\"whep\", \"record:mp4\"]\n\n\
                  [[route]]\nname = \"other\"\nfrom = \"demo\"\nto = [\"whep\"]\n";
    let mut router = RouterProcess::start(&config(dir.path(), &plugin, routes));
    let client = reqwest::Client::new();

    // 30 s of the demo route: three 10 s segments, each indexed as it is committed.
    for _ in 0..3 {
        router.wait_log(indexed("rec"));
    }
    let list = get(&client, router.url("/v1/recordings?route=rec")).await;
    let recordings = list["recordings"].as_array().expect("list").clone();
    assert_eq!(recordings.len(), 3, "{list:#}");
    let mut previous_end: Option<i64> = None;
    for r in &recordings {
        assert_eq!(r["codecs"], "h264");
        let file = rec.join(r["path"].as_str().expect("path"));
        let (_, duration) = assert_frames_match_duration(&file);
        assert!((duration - 10.0).abs() < 1.5, "segments rotate at the first keyframe after 10 s: {duration}");
        assert!((r["duration_ms"].as_f64().expect("ms") / 1000.0 - duration).abs() < 0.1, "index agrees: {r}");
        assert_eq!(decode_errors(&file), "", "{} decodes cleanly", file.display());
        // Segments follow each other without a gap or an overlap (within a frame).
        let start = r["start_ms"].as_i64().expect("start");
        if let Some(end) = previous_end {
            assert!((start - end).abs() <= 40, "segment starts {start}, previous ended {end}");
        }
        previous_end = Some(start + r["duration_ms"].as_i64().expect("ms"));
    }
    let first = &recordings[0];
    let first_start = first["start_ms"].as_i64().expect("start");

    // The index filters by time: a span inside the second segment finds only it.
    let second_start = recordings[1]["start_ms"].as_i64().expect("start");
    let span = format!("/v1/recordings?route=rec&from={}&to={}", second_start / 1000 + 2, second_start / 1000 + 4);
    let found = get(&client, router.url(&span)).await;
    assert_eq!(found["recordings"].as_array().map(Vec::len), Some(1), "{found:#}");
    assert_eq!(found["recordings"][0]["id"], recordings[1]["id"]);
    let bad = client.get(router.url("/v1/recordings?from=yesterday")).send().await.expect("GET");
    assert_eq!(bad.status().as_u16(), 400);

    // Range requests on one file, as a <video> tag seeking makes them.
    let url = router.url(first["url"].as_str().expect("url"));
    let bytes = std::fs::read(rec.join(first["path"].as_str().expect("path"))).expect("read");
    let size = bytes.len();
    let whole = client.get(&url).send().await.expect("GET");
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.bytes().await.expect("body").len(), size);
    let part = client.get(&url).header("Range", "bytes=100-1099").send().await.expect("GET");
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 100-1099/{size}").as_str());
    assert_eq!(&part.bytes().await.expect("body")[..], &bytes[100..1100]);
    let tail = client.get(&url).header("Range", "bytes=-10").send().await.expect("GET");
    assert_eq!(&tail.bytes().await.expect("body")[..], &bytes[size - 10..]);
    let past = client.get(&url).header("Range", format!("bytes={size}-")).send().await.expect("GET");
    assert_eq!(past.status().as_u16(), 416);
    assert_eq!(past.headers()["content-range"], format!("bytes */{size}").as_str());
    let missing = client.get(router.url("/v1/recordings/999999/file")).send().await.expect("GET");
    assert_eq!(missing.status().as_u16(), 404);

    // A span across all three segments, stitched into one MP4 that starts on a keyframe at or before `from`.
    let (from, to) = (first_start + 3_000, first_start + 25_000);
    let stitched = client
        .get(router.url(&format!("/v1/recordings/download?route=rec&from={}&to={}", from / 1000, to / 1000)))
        .send()
        .await
        .expect("GET");
    assert_eq!(stitched.status().as_u16(), 200);
    let out = dir.path().join("span.mp4");
    std::fs::write(&out, stitched.bytes().await.expect("body")).expect("write");
    let (_, duration) = assert_frames_match_duration(&out);
    let asked = (to / 1000 - from / 1000) as f64;
    assert!(duration >= asked - 1.0 && duration <= asked + 5.0, "stitched {duration} s for a {asked} s span");
    assert_eq!(decode_errors(&out), "", "the stitched span decodes cleanly");

    // Recording is switched on and off from the API without touching the routes' other outputs.
    let (status, body) = post(&client, router.url("/v1/routes/other/record"), json!({ "action": "start" })).await;
    assert_eq!((status, &body["plugin"], &body["recording"]), (200, &json!("mp4"), &json!(true)), "{body}");
    router.wait_log(|l| l["message"] == "recording started" && l["route"] == "other");
    let (status, _) = post(&client, router.url("/v1/routes/rec/record"), json!({ "action": "stop" })).await;
    assert_eq!(status, 200);
    // Stopping commits the segment under way at once.
    router.wait_log(indexed("rec"));
    router.wait_log(indexed("other"));
    let other = get(&client, router.url("/v1/routes/other")).await;
    assert_eq!(other["live"]["source_starts"], 1, "the route was not restarted: {other:#}");
    assert_eq!(other["recordings"][0]["state"], "recording", "{other:#}");
    let rec_route = get(&client, router.url("/v1/routes/rec")).await;
    assert_eq!(rec_route["live"]["state"], "live");
    assert_eq!(rec_route["live"]["source_starts"], 1);
    for (body, code) in [
        (json!({ "action": "pause" }), 400),
        (json!({ "action": "start", "plugin": "nope" }), 400),
        (json!({ "verb": "start" }), 400),
    ] {
        assert_eq!(post(&client, router.url("/v1/routes/rec/record"), body.clone()).await.0, code, "{body}");
    }
    assert_eq!(post(&client, router.url("/v1/routes/nope/record"), json!({ "action": "start" })).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_segment_loses_at_most_the_last_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let plugin = format!(
        "config = {{ segment_duration = \"10m\", part_duration = \"1s\" }}\ngrants = {{ storage = {{ dir = \"{}\" }} }}",
        rec.display()
    );
    let routes = "[[route]]\nname = \"cam\"\nfrom = \"demo\"\nto = [\"record:mp4\"]\n";
    let path = config(dir.path(), &plugin, routes);
    let mut router = RouterProcess::start(&path);
    let client = reqwest::Client::new();

    // Until the plugin has been handed 6 s of frames (the route API counts them).
    let deadline = Instant::now() + WAIT;
    let written = loop {
        let route = get(&client, router.url("/v1/routes/cam")).await;
        let frames = route["recordings"][0]["frames"].as_u64().unwrap_or(0);
        if frames >= 180 {
            break frames;
        }
        assert!(Instant::now() < deadline, "recording did not progress: {route:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    router.child.kill().expect("kill -9");
    router.child.wait().expect("reap");
    let partial: Vec<_> = walk(&rec).into_iter().filter(|p| p.to_string_lossy().ends_with(".mp4.partial")).collect();
    assert_eq!(partial.len(), 1, "the segment under way is left uncommitted: {partial:?}");

    let mut router = RouterProcess::start(&path);
    router.saw_or_wait(|l| l["message"] == "recovered a file left unfinished");
    let line = router.saw_or_wait(indexed("cam"));
    let file = rec.join(line["path"].as_str().expect("path"));
    assert!(!partial[0].exists(), "the partial file was finalized");
    let (frames, _) = assert_frames_match_duration(&file);
    assert_eq!(decode_errors(&file), "", "the recovered segment decodes cleanly");
    // At most the last part (1 s) plus the batch on its way (250 ms) is lost; frames written after the API
    // said `written` may be there too.
    assert!(frames + 38 >= written, "recovered {frames} frames of {written} written");
    assert!(frames <= written + 30, "recovered {frames}, more than was written ({written}) allows");
    let list = get(&client, router.url("/v1/recordings?route=cam")).await;
    assert!(list["recordings"].as_array().is_some_and(|r| r.iter().any(|r| r["path"] == line["path"])), "{list:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quota_deletes_the_oldest_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    // The demo route is about 55 kB/s: 2 s segments of ~110 kB, a quota for about three of them.
    let quota = 350_000u64;
    let plugin = format!(
        "config = {{ segment_duration = \"2s\", part_duration = \"500ms\" }}\n\
         grants = {{ storage = {{ dir = \"{}\", quota = \"{quota}B\" }} }}",
        rec.display()
    );
    let routes = "[[route]]\nname = \"q\"\nfrom = \"demo\"\nto = [\"record:mp4\"]\n";
    let mut router = RouterProcess::start(&config(dir.path(), &plugin, routes));
    let client = reqwest::Client::new();
    let first = router.wait_log(indexed("q"));
    let deleted = router.wait_log(|l| l["message"] == "deleted the oldest recording to stay within the storage quota");
    assert_eq!(deleted["path"], first["path"], "oldest first");
    // The next commit comes after the deletion reached the index.
    router.wait_log(indexed("q"));
    let list = get(&client, router.url("/v1/recordings?route=q")).await;
    let paths: Vec<&str> =
        list["recordings"].as_array().expect("list").iter().filter_map(|r| r["path"].as_str()).collect();
    assert!(!paths.contains(&first["path"].as_str().expect("path")), "{paths:?}");
    assert!(paths.len() >= 2, "newer segments stay: {paths:?}");
    let on_disk: u64 = walk(&rec).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    assert!(on_disk <= quota, "{on_disk} bytes on disk, quota {quota}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Reading recordings is `playback` on their route, decided by the route's own auth: a viewer token for the route
/// is enough (no API rights), a token for another action is not, and listing every route's recordings at once is
/// an API call.
#[tokio::test(flavor = "multi_thread")]
async fn recordings_are_authorized_as_playback_on_their_route() {
    use common::jwt::{hs256, now};
    const SECRET: &str = "recording-test-secret";
    let token = |permissions: &[&str]| {
        hs256(json!({ "sub": "viewer", "aud": "sluice", "exp": now() + 600, "sluice": permissions }), SECRET.as_bytes())
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("recordings");
    let plugin = format!(
        "config = {{ segment_duration = \"2s\", part_duration = \"1s\" }}\ngrants = {{ storage = {{ dir = \"{}\" }} }}",
        storage.display()
    );
    let routes = format!(
        "[plugins.jwt]\nsource = \"builtin:auth-jwt\"\nconfig = {{ secret = \"{SECRET}\", audience = \"sluice\" }}\n\n\
         [defaults]\nanonymous = []\n\n\
         [[route]]\nname = \"guarded\"\nfrom = \"demo\"\nto = [\"record:mp4\"]\nauth = \"jwt\"\n"
    );
    let text = std::fs::read_to_string(config(dir.path(), &plugin, &routes)).expect("read");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, text.replacen("[server]\n", "[server]\napi_auth = \"jwt\"\n", 1)).expect("write");
    let mut router = RouterProcess::start(&path);
    router.wait_log(indexed("guarded"));
    let client = reqwest::Client::new();
    let status = |url: String, bearer: Option<String>| {
        let client = client.clone();
        async move {
            let mut req = client.get(&url);
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            req.send().await.expect("GET").status().as_u16()
        }
    };
    let list = router.url("/v1/recordings?route=guarded");
    assert_eq!(status(list.clone(), None).await, 401);
    assert_eq!(status(list.clone(), Some(token(&["read:guarded"]))).await, 403, "read is not playback");
    assert_eq!(status(list.clone(), Some(token(&["api"]))).await, 403, "API rights are not playback either");
    let viewer = token(&["playback:guarded"]);
    let r = client.get(&list).bearer_auth(&viewer).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("json");
    let id = body["recordings"][0]["id"].as_i64().expect("a recording");

    // The file, as a <video> tag fetches it (?token=), and a stitched span.
    let file = router.url(&format!("/v1/recordings/{id}/file"));
    assert_eq!(status(file.clone(), None).await, 401);
    assert_eq!(status(file.clone(), Some(token(&["playback:other"]))).await, 403);
    assert_eq!(status(format!("{file}?token={viewer}"), None).await, 200);
    let start = body["recordings"][0]["start_ms"].as_i64().expect("start") / 1000;
    let download = router.url(&format!("/v1/recordings/download?route=guarded&from={start}&to={}", start + 1));
    assert_eq!(status(download.clone(), Some(token(&["read:guarded"]))).await, 403);
    assert_eq!(status(download, Some(viewer.clone())).await, 200);

    // Every route's recordings at once: the API's business.
    assert_eq!(status(router.url("/v1/recordings"), Some(viewer)).await, 403);
    assert_eq!(status(router.url("/v1/recordings"), Some(token(&["api"]))).await, 200);
}

/// A recording started on a route with no media yet says what it waits for (the API's answer and the route's
/// warnings) instead of sitting in "starting" unexplained; the body is taken as JSON without a Content-Type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_a_route_without_media_says_what_it_waits_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let plugin = format!("grants = {{ storage = {{ dir = \"{}\" }} }}", rec.display());
    let path = config(dir.path(), &plugin, "[[route]]\nname = \"inbox\"\nfrom = \"whip\"\nto = [\"whep\"]\n");
    let router = RouterProcess::start(&path);
    let client = reqwest::Client::new();
    // No Content-Type, as `curl -d` without -H sends it (form encoding's, in fact).
    let r = client
        .post(router.url("/v1/routes/inbox/record"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"action": "start"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    let waiting = body["waiting_for"].as_str().unwrap_or_default().to_string();
    assert!(waiting.contains("starts at the route's first keyframe") && waiting.contains("no media yet"), "{body:#}");
    let route = get(&client, router.url("/v1/routes/inbox")).await;
    let warnings = route["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w.as_str().is_some_and(|w| w.starts_with("recording with \"mp4\""))), "{route:#}");
}
