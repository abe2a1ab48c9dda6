//! Accounts (issue 29): register and log in, cameras with stream keys, sessions written as ffmpeg publishes over
//! RTMP, and one user kept out of another's cameras on the API and on the media protocols.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{RouterProcess, ffmpeg_rtmp_publish};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .call("POST", "/api/auth/login", None, Some(json!({ "username": username, "password": password })))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_string()
    }

    async fn sessions(&self, token: &str, camera: i64) -> Vec<Value> {
        let (status, body) = self.call("GET", &format!("/api/cameras/{camera}/sessions"), Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().expect("list").clone()
    }
}

/// Whether ffmpeg can read two seconds of `url` over RTMP.
fn rtmp_plays(url: &str) -> bool {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "10000000",
            "-i",
            url,
            "-t",
            "2",
            "-f",
            "null",
            "-",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ffmpeg reader")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_cameras_keys_and_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:{port}\"\nwebrtc = {{ udp = \"127.0.0.1:0\" }}\n\
             data_dir = \"{}\"\n\n[accounts]\nregistration = \"admin\"\ncameras = \"cameras/*\"\n\n\
             [[route]]\nname = \"cameras/*\"\nfrom = \"publisher\"\nto = [\"whep\", \"rtmp\"]\nauth = \"accounts\"\nidle_timeout = \"1s\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write routes");
    let mut router = RouterProcess::start(&path);
    let api = Api { client: reqwest::Client::new(), base: router.url("") };
    let user =
        |name: &str| json!({ "username": name, "email": format!("{name}@example.com"), "password": "correct horse" });

    // Registration: the first account is the admin; then only an admin adds people.
    let (status, alice) = api.call("POST", "/api/auth/register", None, Some(user("alice"))).await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    assert_eq!(alice["user"]["admin"], true);
    let (status, body) = api.call("POST", "/api/auth/register", None, Some(user("bob"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let admin = api.login("alice", "correct horse").await;
    for name in ["bob", "carol"] {
        let (status, body) = api.call("POST", "/api/auth/register", Some(&admin), Some(user(name))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["user"]["admin"], false);
    }
    // Duplicates and bad input name the field.
    let taken = json!({ "username": "BOB", "email": "x@example.com", "password": "correct horse" });
    let (status, body) = api.call("POST", "/api/auth/register", Some(&admin), Some(taken)).await;
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::CONFLICT, &json!("username")), "{body}");
    let same_email = json!({ "username": "bobby", "email": "bob@example.com", "password": "correct horse" });
    let (status, body) = api.call("POST", "/api/auth/register", Some(&admin), Some(same_email)).await;
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::CONFLICT, &json!("email")), "{body}");
    for (bad, field) in [
        (json!({ "username": "dave", "email": "not-an-email", "password": "correct horse" }), "email"),
        (json!({ "username": "dave", "email": "d@example.com", "password": "short" }), "password"),
        (json!({ "username": "a b", "email": "d@example.com", "password": "correct horse" }), "username"),
        (json!({ "username": "dave", "email": "d@example.com" }), "password"),
    ] {
        let (status, body) = api.call("POST", "/api/auth/register", Some(&admin), Some(bad)).await;
        assert_eq!(
            (status, body["error"]["details"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}"
        );
    }

    // Login.
    let (status, body) =
        api.call("POST", "/api/auth/login", None, Some(json!({ "username": "bob", "password": "wrong one" }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = api
        .call("POST", "/api/auth/login", None, Some(json!({ "username": "bob", "password": "correct horse" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    assert_eq!(body["user"]["username"], "bob");
    let bob = body["token"].as_str().expect("token").to_string();
    let carol = api.login("carol", "correct horse").await;
    let (status, me) = api.call("GET", "/api/auth/me", Some(&bob), None).await;
    assert_eq!((status, &me["user"]["username"]), (StatusCode::OK, &json!("bob")));
    assert_eq!(api.call("GET", "/api/cameras", None, None).await.0, StatusCode::UNAUTHORIZED);

    // Bob's camera: a key, a route from the template, URLs to publish and play it.
    let (status, camera) =
        api.call("POST", "/api/cameras", Some(&bob), Some(json!({ "name": "Porch", "resolution": "1280x720" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{camera}");
    let id = camera["id"].as_i64().expect("id");
    let key = camera["stream_key"].as_str().expect("key").to_string();
    assert_eq!(key.len(), 36, "a UUID: {key}");
    assert_eq!(camera["route"], format!("cameras/{id}"));
    assert_eq!(camera["status"], "offline");
    let (status, urls) = api.call("GET", &format!("/api/cameras/{id}/stream"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::OK, "{urls}");
    let publish_url = urls["rtmp"].as_str().expect("rtmp url").to_string();
    assert!(publish_url.ends_with(&format!("/cameras/{id}/{key}")), "{urls}");
    assert!(urls["whip"].as_str().is_some_and(|u| u.ends_with(&format!("/cameras/{id}/whip"))), "{urls}");
    assert!(urls["rtsp"].is_null(), "the template does not serve RTSP: {urls}");
    assert!(urls["hls"].is_null(), "nor HLS: {urls}");
    assert!(urls["whep"].as_str().is_some_and(|u| u.ends_with(&format!("/cameras/{id}/whep"))), "{urls}");

    // Carol cannot see, change or delete it; the admin can see it.
    let other = format!("/api/cameras/{id}");
    for (method, path) in [
        ("GET", other.clone()),
        ("PUT", other.clone()),
        ("DELETE", other.clone()),
        ("GET", format!("{other}/stream")),
        ("GET", format!("{other}/sessions")),
        ("POST", format!("{other}/key")),
    ] {
        let (status, body) = api.call(method, &path, Some(&carol), Some(json!({ "name": "mine" }))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    assert_eq!(api.call("GET", "/api/cameras", Some(&carol), None).await.1, json!([]));
    let (_, all) = api.call("GET", "/api/cameras", Some(&admin), None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let (status, renamed) = api.call("PUT", &other, Some(&bob), Some(json!({ "name": "Front porch" }))).await;
    assert_eq!((status, &renamed["name"]), (StatusCode::OK, &json!("Front porch")), "{renamed}");

    // A wrong key publishes nothing.
    let wrong = ffmpeg_rtmp_publish(&format!("rtmp://127.0.0.1:{port}/cameras/{id}/nope"), 2)
        .wait_with_output()
        .expect("ffmpeg");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("not your camera, or not a valid login or stream key"),
        "{wrong:?}"
    );

    // Published with the key: the camera streams, a session is active; its owner plays it, Carol does not.
    let mut publisher = ffmpeg_rtmp_publish(&publish_url.replace("localhost", "127.0.0.1"), 60);
    router.wait_log(|l| l["message"] == "accounts: camera streaming" && l["camera"] == id);
    let (_, shown) = api.call("GET", &other, Some(&bob), None).await;
    assert_eq!(shown["status"], "streaming", "{shown}");
    let sessions = api.sessions(&bob, id).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["status"], "active");
    assert!(sessions[0]["end_time"].is_null());
    let play = |token: &str| format!("rtmp://127.0.0.1:{port}/cameras/{id}?token={token}");
    assert!(rtmp_plays(&play(&bob)), "the owner plays his camera");
    assert!(rtmp_plays(&play(&admin)), "an admin plays any camera");
    assert!(!rtmp_plays(&play(&carol)), "another user does not");
    assert!(!rtmp_plays(&format!("rtmp://127.0.0.1:{port}/cameras/{id}")), "nor does anyone without a login");

    // WHEP too: Carol is refused before her offer is read; Bob's (not a real offer here) gets as far as the SDP.
    let whep = |token: &str| {
        api.client
            .post(format!("{}/cameras/{id}/whep", api.base))
            .bearer_auth(token)
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
    };
    assert_eq!(whep(&carol).await.expect("whep").status(), StatusCode::FORBIDDEN);
    assert_eq!(whep(&bob).await.expect("whep").status(), StatusCode::BAD_REQUEST);

    // Killed mid-stream: the session ends as an error.
    publisher.kill().expect("kill ffmpeg");
    let _ = publisher.wait();
    router.wait_log(|l| l["message"] == "accounts: camera session closed" && l["status"] == "error");
    // Stopped by itself (`-t 3`): the next session ends cleanly.
    let clean =
        ffmpeg_rtmp_publish(&publish_url.replace("localhost", "127.0.0.1"), 3).wait_with_output().expect("ffmpeg");
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    router.wait_log(|l| l["message"] == "accounts: camera session closed" && l["status"] == "ended");
    let statuses: Vec<Value> = api.sessions(&bob, id).await.iter().map(|s| s["status"].clone()).collect();
    assert_eq!(statuses, [json!("ended"), json!("error")], "newest first");

    // A new key: a publisher streaming with the old one is cut off, and the old one no longer publishes.
    let mut streaming = ffmpeg_rtmp_publish(&publish_url.replace("localhost", "127.0.0.1"), 60);
    router.wait_log(|l| l["message"] == "accounts: camera streaming" && l["camera"] == id);
    let (status, rekeyed) = api.call("POST", &format!("{other}/key"), Some(&bob), None).await;
    router.wait_log(|l| l["message"] == "accounts: camera route ended (key renewed or camera deleted)");
    // A child's exit has no event to await short of blocking: polled in 20 ms steps, for at most 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let cut_off = loop {
        if let Some(exit) = streaming.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "the publisher with the old key was not cut off");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!cut_off.success(), "ffmpeg saw its stream end under it");
    assert_eq!(status, StatusCode::OK, "{rekeyed}");
    assert_ne!(rekeyed["stream_key"], key.as_str());
    let old =
        ffmpeg_rtmp_publish(&publish_url.replace("localhost", "127.0.0.1"), 2).wait_with_output().expect("ffmpeg");
    assert!(!old.status.success(), "the old key was refused");

    // Deleted: gone for its owner too.
    assert_eq!(api.call("DELETE", &other, Some(&bob), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.call("GET", &other, Some(&bob), None).await.0, StatusCode::NOT_FOUND);

    // Failed logins count against the address like any failed access: then it is refused for a while.
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        let wrong = json!({ "username": "carol", "password": "guess guess" });
        last = api.call("POST", "/api/auth/login", None, Some(wrong)).await.0;
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn accounts_config_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |text: &str| {
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, text).expect("write");
        let out = common::sluice().arg("check").arg(&path).output().expect("sluice check");
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    };
    let route = "[[route]]\nname = \"cameras/*\"\nfrom = \"rtmp\"\nto = [\"whep\"]\n";
    assert!(check(&format!("{route}auth = \"accounts\"\n")).contains("\"accounts\" needs an [accounts] table"));
    assert!(
        check(&format!("[accounts]\ncameras = \"cameras/*\"\n\n{route}")).contains("must have `auth = \"accounts\"`")
    );
    assert!(
        check("[accounts]\ncameras = \"cams/*\"\n\n[[route]]\nname = \"x\"\nfrom = \"demo\"\nto = [\"whep\"]\n")
            .contains("there is no template route \"cams/*\"")
    );
    assert!(
        check("[accounts]\nregistration = \"closed\"\n\n[[route]]\nname = \"x\"\nfrom = \"demo\"\nto = [\"whep\"]\n")
            .contains("is not a registration policy")
    );
    let overlap = "[accounts]\n\n[plugins.cams]\nsource = \"builtin:signal-cameras\"\nmount = \"/cams/\"\nhttp = \"/api/cameras\"\n\n\
        [[route]]\nname = \"x\"\nfrom = \"demo\"\nto = [\"whep\"]\n";
    assert!(check(overlap).contains("overlaps /api/cameras"), "{}", check(overlap));
    assert!(check(&format!("[accounts]\ncameras = \"cameras/*\"\n\n{route}auth = \"accounts\"\n")).contains("ok"));
}
