//! The router binary on a temporary routes file: the API, /metrics, and reloads (file edits, SIGHUP, the API)
//! while a reader of the demo route keeps receiving frames with no gap in timestamps.

mod common;

use common::{RouterProcess, WAIT, save_like_an_editor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const SERVER: &str = "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\nwebrtc = { udp = \"127.0.0.1:0\" }\n\n";
const DEMO: &str = "[[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [\"whep\"]\n\n";
const SECOND: &str = "[[route]]\nname = \"second\"\nfrom = \"demo\"\nto = [\"whep\"]\n";
const SECOND_CHANGED: &str =
    "[[route]]\nname = \"second\"\nfrom = \"demo\"\nto = [\"whep\", \"rtsp\"]\nmax_readers = 5\n";
const BROKEN: &str = "[[route]]\nname = \"second\"\nfrom = \"demo\"\nto = [\"whep\"]\nmax_reader = 5\n";

fn is_reload(line: &serde_json::Value, message: &str) -> bool {
    line["message"].as_str().is_some_and(|m| m.starts_with(message))
}

/// Streams the frame tap of a route into a channel of (pts, keyframe). The task's result says whether the
/// stream was well-formed; check it at the end.
/// (pts, keyframe) per frame.
type TapFrames = mpsc::UnboundedReceiver<(i64, bool)>;

fn tap(client: reqwest::Client, url: String) -> (TapFrames, JoinHandle<Result<(), String>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("tap answered {}", resp.status()));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| format!("bad line: {e}"))?;
                let frame = (v["pts"].as_i64().ok_or("no pts")?, v["keyframe"].as_bool().ok_or("no keyframe")?);
                let _ = tx.send(frame);
            }
        }
        Ok(())
    });
    (rx, task)
}

async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.expect("get").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_readers_flowing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, format!("{SERVER}{DEMO}")).expect("write");
    let mut router = RouterProcess::start(&path);
    let client = reqwest::Client::new();

    // A reader of the demo route for the whole test; its first frame is a keyframe.
    let (mut frames, tap_task) = tap(client.clone(), router.url("/v1/routes/demo/frames"));
    let (first_pts, first_key) = tokio::time::timeout(WAIT, frames.recv()).await.expect("first frame").expect("tap");
    assert!(first_key, "a reader starts on a keyframe");

    let routes = get_json(&client, router.url("/v1/routes")).await;
    assert_eq!(routes.as_array().map(Vec::len), Some(1));
    assert_eq!(routes[0]["live"]["state"], "live");
    assert_eq!(routes[0]["live"]["tracks"][0]["codec"], "h264");
    let metrics = client.get(router.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("sluice_route_state{route=\"demo\",state=\"live\"} 1"), "{metrics}");
    assert!(metrics.contains("sluice_route_readers{route=\"demo\"} 1"), "{metrics}");

    // 1. Add a route by editing the file.
    save_like_an_editor(&path, &format!("{SERVER}{DEMO}{SECOND}"));
    let line = router.wait_log(|l| is_reload(l, "configuration reloaded"));
    assert_eq!(line["added"], 1);
    assert_eq!(line["unchanged"], 1);
    let second = get_json(&client, router.url("/v1/routes/second")).await;
    assert_eq!(second["config"]["to"], serde_json::json!(["whep"]));

    // 2. Break the file: the error is reported with its position, the routes keep running.
    save_like_an_editor(&path, &format!("{SERVER}{DEMO}{BROKEN}"));
    router.wait_log(|l| is_reload(l, "routes file rejected"));
    let status = get_json(&client, router.url("/v1/status")).await;
    assert_eq!(status["config_valid"], false);
    let message = status["config_error"]["message"].as_str().expect("message");
    assert!(message.starts_with(&format!("{}:16:1: unknown key `max_reader`", path.display())), "{message}");
    assert_eq!(status["routes"]["total"], 2);

    // 3. Fix it, changing the second route: updated in place, the demo route untouched.
    save_like_an_editor(&path, &format!("{SERVER}{DEMO}{SECOND_CHANGED}"));
    let line = router.wait_log(|l| is_reload(l, "configuration reloaded"));
    assert_eq!(line["updated"], 1);
    assert_eq!(line["unchanged"], 1);
    let second = get_json(&client, router.url("/v1/routes/second")).await;
    assert_eq!(second["config"]["to"], serde_json::json!(["whep", "rtsp"]));
    assert_eq!(second["config"]["max_readers"], 5);
    let status = get_json(&client, router.url("/v1/status")).await;
    assert_eq!(status["config_valid"], true);

    // 4. SIGHUP and the API reload an unchanged file: nothing is touched.
    router.signal("HUP");
    let line = router.wait_log(|l| is_reload(l, "configuration reloaded") && l["trigger"] == "Signal");
    assert_eq!(line["unchanged"], 2);
    let resp = client.post(router.url("/v1/reload")).send().await.expect("reload");
    assert_eq!(resp.status(), 200);
    let outcome: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(outcome["result"], "applied");
    assert_eq!(outcome["changes"]["unchanged"], 2);

    // 5. The API reports a broken file with 422 and the same shape as every error.
    std::fs::write(&path, format!("{SERVER}{DEMO}{BROKEN}")).expect("write");
    let resp = client.post(router.url("/v1/reload")).send().await.expect("reload");
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_config");
    assert_eq!(body["error"]["details"]["errors"][0]["line"], 16);

    let missing = client.get(router.url("/v1/routes/nope")).send().await.expect("get");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "route_not_found");

    // Through all of it the demo reader saw every frame, one frame interval (3000 ticks at 30 fps) apart, and
    // the demo source was never restarted (a restart would be rebased to look continuous, so check it directly).
    let mut last = first_pts;
    let mut received = 1;
    let wanted = received_so_far(&frames) + 30; // what arrived during the reloads, then one more second live
    while received < wanted {
        let (pts, _) = tokio::time::timeout(WAIT, frames.recv()).await.expect("frames keep coming").expect("tap open");
        assert_eq!(pts - last, 3000, "gap in timestamps after {received} frames");
        last = pts;
        received += 1;
    }
    let demo = get_json(&client, router.url("/v1/routes/demo")).await;
    assert_eq!(demo["live"]["source_starts"], 1, "the unchanged demo route was never touched");
    assert_eq!(demo["live"]["frames_dropped"], 0);

    let metrics = client.get(router.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let metric = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    assert!(metric("sluice_config_reloads_total{result=\"applied\"}") >= 4.0, "{metrics}");
    // Step 5's write also wakes the file watcher, which may or may not have rejected it by now.
    assert!(metric("sluice_config_reloads_total{result=\"rejected\"}") >= 2.0, "{metrics}");
    assert!(metrics.contains("sluice_config_valid 0"), "{metrics}");
    assert!(metrics.contains("sluice_route_frames_dropped_total{route=\"demo\"} 0"), "{metrics}");

    // Graceful shutdown: the tap ends, the process exits 0.
    router.signal("TERM");
    assert!(router.wait_exit().success());
    assert!(tokio::time::timeout(WAIT, async { while frames.recv().await.is_some() {} }).await.is_ok());
    assert_eq!(tap_task.await.expect("tap task"), Ok(()));
}

fn received_so_far(frames: &mpsc::UnboundedReceiver<(i64, bool)>) -> usize {
    frames.len() + 1
}

/// A reload's report names the plugins added and removed, and the `[server]` keys that need a restart compared
/// with the server as it runs: a change reverted is no longer reported, and one kept is reported every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_plugins_and_restart_keys_against_the_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, format!("{SERVER}{DEMO}")).expect("write");
    let mut router = RouterProcess::start(&path);
    let client = reqwest::Client::new();
    let moved = SERVER.replace("rtsp = \"127.0.0.1:0\"", "rtsp = \"127.0.0.1:9554\"");
    let plugin = "[plugins.jwt]\nsource = \"builtin:auth-jwt\"\nconfig = { secret = \"x\" }\n\n";
    let mut changes = async |text: String| {
        save_like_an_editor(&path, &text);
        router.wait_log(|l| is_reload(l, "configuration reloaded"));
        get_json(&client, router.url("/v1/status")).await["last_reload"]["changes"].clone()
    };

    let c = changes(format!("{moved}{DEMO}")).await;
    assert_eq!(c["needs_restart"], serde_json::json!(["server.rtsp"]), "{c}");
    let c = changes(format!("{moved}{plugin}{DEMO}")).await;
    assert_eq!(c["plugins_added"], serde_json::json!(["jwt"]), "{c}");
    assert_eq!(c["needs_restart"], serde_json::json!(["server.rtsp"]), "still not what runs: {c}");
    let c = changes(format!("{SERVER}{DEMO}")).await;
    assert_eq!(c["plugins_removed"], serde_json::json!(["jwt"]), "{c}");
    assert_eq!(c["needs_restart"], serde_json::json!([]), "reverted: nothing to restart for: {c}");
}
