//! Access control through the real binary: routes guarded by the built-in JWT plugin over WHEP, WHIP, RTMP and
//! the REST API; `[defaults] anonymous`; a plugin file replaced on disk; a hostile plugin that cannot stall the
//! router; failed attempts rate-limited per address.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::RouterProcess;
use common::jwt::{hs256, now};
use reqwest::StatusCode;
use serde_json::json;
use str0m::media::{Direction, MediaKind};

const SECRET: &str = "integration-test-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn token(permissions: &[&str]) -> String {
    hs256(json!({ "sub": "tester", "aud": "sluice", "exp": now() + 600, "sluice": permissions }), SECRET.as_bytes())
}

/// A real WHEP/WHIP offer (str0m), so an allowed request gets all the way to 201.
fn offer(direction: Direction) -> String {
    let mut rtc = str0m::Rtc::builder().clear_codecs().enable_h264(true).build(Instant::now());
    let addr = "127.0.0.1:40000".parse().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _pending) = change.apply().expect("offer");
    offer.to_sdp_string()
}

fn routes(dir: &Path, rtmp_port: u16, plugin_file: &Path) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"
rtsp = "127.0.0.1:0"
rtmp = "127.0.0.1:{rtmp_port}"
webrtc = {{ udp = "127.0.0.1:0" }}
data_dir = "{data}"
api_auth = "jwt"

[defaults]
anonymous = ["read"]
to = ["whep"]

[plugins.jwt]
source = "builtin:auth-jwt"
config = {{ secret_env = "SLUICE_TEST_JWT_SECRET", audience = "sluice" }}
grants = {{ env = ["SLUICE_TEST_JWT_SECRET"] }}

[plugins.file]
source = "{plugin}"
config = {{ readers = ["10."], publish_key = "k" }}

[plugins.hostile]
source = "{hostile}"
limits = {{ call_timeout = "100ms" }}

[[route]]
name = "secure"
from = "demo"
to = ["whep", "hls", "rtmp"]
auth = "jwt"

[[route]]
name = "open"
from = "demo"
to = ["whep"]

[[route]]
name = "inbox"
from = "whip"

[[route]]
name = "stage"
from = "whip"
auth = "jwt"

[[route]]
name = "studio"
from = "rtmp"
auth = "jwt"

[[route]]
name = "byfile"
from = "demo"
to = ["whep"]
auth = "file"

[[route]]
name = "loop"
from = "demo"
to = ["whep"]
auth = "hostile"
"#,
        data = dir.join("data").display(),
        plugin = plugin_file.display(),
        hostile = Path::new(env!("SLUICE_TEST_PLUGINS")).join("sluice_test_hostile.wasm").display(),
    )
}

async fn post_sdp(client: &reqwest::Client, url: String, sdp: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client.post(url).header("content-type", "application/sdp").body(sdp.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("post")
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_guard_every_entry_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rtmp_port = free_port();
    // Starts as the hostile plugin (allows everyone) and is replaced by the example allowlist later.
    let plugin_file = dir.path().join("gatekeeper.wasm");
    let plugins = Path::new(env!("SLUICE_TEST_PLUGINS"));
    std::fs::copy(plugins.join("sluice_test_hostile.wasm"), &plugin_file).expect("copy plugin");
    let config = dir.path().join("routes.toml");
    std::fs::write(&config, routes(dir.path(), rtmp_port, &plugin_file)).expect("write routes");
    let mut router = RouterProcess::start_with_env(&config, &[("SLUICE_TEST_JWT_SECRET", SECRET)]);
    let client = reqwest::Client::new();
    let view = offer(Direction::RecvOnly);
    let publish = offer(Direction::SendOnly);

    // WHEP on a guarded route: no token -> 401 with Bearer and Basic challenges; wrong rights -> 403; right -> 201.
    let r = post_sdp(&client, router.url("/secure/whep"), &view, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let offered: Vec<_> = r.headers().get_all("www-authenticate").iter().map(|v| v.to_str().expect("ascii")).collect();
    assert_eq!(offered, ["Bearer realm=\"sluice\"", "Basic realm=\"sluice\""]);
    let r = post_sdp(&client, router.url("/secure/whep"), &view, Some(&token(&["read:other"]))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["message"], "the token does not allow read on \"secure\"");
    let reader = token(&["read:sec*"]);
    let r = post_sdp(&client, router.url("/secure/whep"), &view, Some(&reader)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = post_sdp(&client, router.url(&format!("/secure/whep?token={reader}")), &view, None).await;
    assert_eq!(r.status(), StatusCode::CREATED, "?token= works for clients that cannot set headers");

    // HLS is admitted like WHEP, on the multivariant playlist; what it lists carries the viewer's session.
    let r = client.get(router.url("/secure/index.m3u8")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers().get_all("www-authenticate").iter().count(), 2, "Bearer and Basic offered");
    let r = client.get(router.url("/secure/index.m3u8")).bearer_auth(token(&["read:other"])).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client.get(router.url("/secure/index.m3u8")).bearer_auth(&reader).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let r = client.get(router.url(&format!("/secure/index.m3u8?token={reader}"))).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK, "?token= works for players that cannot set headers");
    let variant = r.text().await.expect("body").lines().last().expect("a variant").to_string();
    assert!(variant.starts_with("stream.m3u8?session="), "{variant}");
    let playlist = client.get(router.url(&format!("/secure/{variant}"))).send().await.expect("get");
    assert_eq!(playlist.status(), StatusCode::OK, "the session is the credential from here on");
    let playlist = playlist.text().await.expect("body");
    let segment = playlist.lines().find(|l| l.starts_with("seg")).expect("a segment");
    let r = client.get(router.url(&format!("/secure/{segment}"))).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let bare = segment.split('?').next().expect("name");
    let r = client.get(router.url(&format!("/secure/{bare}"))).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no file without a session");
    let r = client.get(router.url(&format!("/secure/{bare}?session=0123"))).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "nor with a made-up one");

    // WHIP: publishing needs a publish permission; anonymous publish is not in [defaults] anonymous.
    let r = post_sdp(&client, router.url("/stage/whip"), &publish, Some(&reader)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_sdp(&client, router.url("/stage/whip"), &publish, Some(&token(&["publish:stage"]))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = post_sdp(&client, router.url("/inbox/whip"), &publish, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["error"]["message"].as_str().expect("message").contains("does not allow anonymous publish"));
    // Anonymous reading of an open route is allowed.
    let r = post_sdp(&client, router.url("/open/whep"), &view, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // The REST API: 401 without credentials (Bearer and Basic offered), 403 without `api`, 200 with it.
    let r = client.get(router.url("/v1/routes")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let offered: Vec<_> = r.headers().get_all("www-authenticate").iter().map(|v| v.to_str().expect("ascii")).collect();
    assert_eq!(offered, ["Bearer realm=\"sluice\"", "Basic realm=\"sluice\""]);
    let r = client.get(router.url("/v1/routes")).bearer_auth(&reader).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let admin = token(&["api"]);
    let r = client.get(router.url("/v1/routes")).bearer_auth(&admin).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let r = client.get(router.url("/healthz")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK, "health checks stay open");

    // RTMP play with ?token=: refused without, played with.
    let probe = |url: String| {
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "5000000",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
            ])
            .arg(url)
            .stderr(Stdio::piped())
            .output()
            .expect("ffprobe")
    };
    let refused = probe(format!("rtmp://127.0.0.1:{rtmp_port}/secure"));
    assert!(!refused.status.success(), "no token, no play");
    let played = probe(format!("rtmp://127.0.0.1:{rtmp_port}/secure?token={reader}"));
    assert!(played.status.success(), "{}", String::from_utf8_lossy(&played.stderr));
    assert_eq!(String::from_utf8_lossy(&played.stdout).trim(), "h264");

    // RTMP publish: the token as OBS's stream key. A reader's token is refused, a publisher's accepted.
    let publish_with = |key: &str| {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
            .args(["-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{rtmp_port}/studio/{key}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("ffmpeg")
    };
    assert!(!publish_with(&reader).success(), "a read-only token cannot publish");
    // The refusal carries the plugin's reason (the client sees it in the NetStream status; the log keeps it).
    router.saw_or_wait(|l| {
        l["message"] == "RTMP connection closed"
            && l["error"].as_str().is_some_and(|e| e.contains("the token does not allow publish on \"studio\""))
    });
    assert!(publish_with(&token(&["publish:studio"])).success());
    router.saw_or_wait(|l| l["message"] == "RTMP publisher connected" && l["route"] == "studio");

    // A hostile plugin that spins forever: the request fails closed in ~100 ms; the router keeps serving.
    let started = Instant::now();
    let r = post_sdp(&client, router.url("/loop/whep"), &view, None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "auth_unavailable", "{body}");
    router.saw_or_wait(|l| l["plugin"] == "hostile" && l["error"].as_str().is_some_and(|e| e.contains("timed out")));
    assert!(started.elapsed().as_secs() < 5);
    let r = post_sdp(&client, router.url("/open/whep"), &view, None).await;
    assert_eq!(r.status(), StatusCode::CREATED, "other routes unaffected");
    let metrics = client.get(router.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.contains("sluice_plugin_failures_total{plugin=\"hostile\",kind=\"timeout\"} 1"),
        "{}",
        metrics.lines().filter(|l| l.contains("plugin")).collect::<Vec<_>>().join("\n")
    );

    // The plugin file replaced on disk: the next request meets the new plugin (127.0.0.1 is not in "10.").
    let r = post_sdp(&client, router.url("/byfile/whep"), &view, None).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the first version allows everyone");
    let tmp = dir.path().join("gatekeeper.wasm.part");
    std::fs::copy(plugins.join("example_allowlist.wasm"), &tmp).expect("copy");
    std::fs::rename(&tmp, &plugin_file).expect("replace");
    router.wait_log(|l| l["message"] == "plugin reloaded: new sessions use the new version" && l["plugin"] == "file");
    let r = post_sdp(&client, router.url("/byfile/whep"), &view, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Failed attempts: after the limit, this address gets 429 with Retry-After, even with a good token.
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        last = post_sdp(&client, router.url("/secure/whep"), &view, Some("not-a-token")).await.status();
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let r = post_sdp(&client, router.url("/secure/whep"), &view, Some(&token(&["read:x"]))).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()["retry-after"].to_str().expect("ascii").parse::<u64>().expect("seconds") <= 60);
}

/// `sluice passwd` and `sluice token` make credentials the built-in plugins take; behind a trusted reverse proxy
/// the failure limit keys on the client its `X-Forwarded-For` names, so one client's failures lock out only it.
#[tokio::test(flavor = "multi_thread")]
async fn cli_credentials_work_and_a_trusted_proxy_keeps_clients_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut passwd =
        common::sluice().arg("passwd").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("run sluice passwd");
    std::io::Write::write_all(&mut passwd.stdin.take().expect("stdin"), b"hunter2\n").expect("write");
    let out = passwd.wait_with_output().expect("passwd");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let config = dir.path().join("routes.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
http = "127.0.0.1:0"
rtsp = "127.0.0.1:0"
rtmp = "127.0.0.1:0"
webrtc = {{ udp = "127.0.0.1:0" }}
data_dir = "data"
trusted_proxies = ["127.0.0.1"]

[plugins.jwt]
source = "builtin:auth-jwt"
config = {{ secret_env = "SLUICE_TEST_JWT_SECRET", audience = "sluice" }}
grants = {{ env = ["SLUICE_TEST_JWT_SECRET"] }}

[plugins.users]
source = "builtin:auth-users"
config = {{ users = [{{ name = "ana", password_hash = "{hash}", permissions = ["read:*"] }}] }}

[[route]]
name = "secure"
from = "demo"
to = ["whep"]
auth = "jwt"

[[route]]
name = "members"
from = "demo"
to = ["whep"]
auth = "users"
"#
        ),
    )
    .expect("write routes");
    // The hash is one auth-users takes: checking the file loads the plugin with it.
    let check =
        common::sluice().arg("check").arg(&config).env("SLUICE_TEST_JWT_SECRET", SECRET).output().expect("check");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(!dir.path().join("data").exists(), "`sluice check` writes nothing");

    let token = common::sluice()
        .args(["token", "--allow", "read:secure", "--sub", "tester", "--expires", "10m", "--config"])
        .arg(&config)
        .env("SLUICE_TEST_JWT_SECRET", SECRET)
        .output()
        .expect("run sluice token");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).expect("utf-8").trim().to_string();

    let router = RouterProcess::start_with_env(&config, &[("SLUICE_TEST_JWT_SECRET", SECRET)]);
    assert!(dir.path().join("data").is_dir(), "data_dir is relative to the routes file");
    let client = reqwest::Client::new();
    let view = offer(Direction::RecvOnly);
    let from = |client_ip: &'static str, bearer: &str| {
        client
            .post(router.url("/secure/whep"))
            .header("content-type", "application/sdp")
            .header("x-forwarded-for", client_ip)
            .bearer_auth(bearer)
            .body(view.clone())
            .send()
    };
    assert_eq!(from("203.0.113.1", &token).await.expect("post").status(), StatusCode::CREATED, "sluice token's token");

    // MediaMTX's clients: HTTP Basic on WHEP. auth-users checks the password; auth-jwt takes a JWT as the password.
    let basic = |route: &str, client_ip: &'static str, user: &str, password: &str| {
        client
            .post(router.url(&format!("/{route}/whep")))
            .header("content-type", "application/sdp")
            .header("x-forwarded-for", client_ip)
            .basic_auth(user, Some(password))
            .body(view.clone())
            .send()
    };
    assert_eq!(basic("members", "203.0.113.2", "ana", "hunter2").await.expect("post").status(), StatusCode::CREATED);
    assert_eq!(basic("members", "203.0.113.2", "ana", "wrong").await.expect("post").status(), StatusCode::FORBIDDEN);
    assert_eq!(basic("secure", "203.0.113.2", "any", &token).await.expect("post").status(), StatusCode::CREATED);
    let anonymous = client
        .post(router.url("/members/whep"))
        .header("content-type", "application/sdp")
        .header("x-forwarded-for", "203.0.113.3")
        .body(view.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> =
        anonymous.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(challenges.iter().any(|c| c.starts_with("Basic realm=")), "{challenges:?}");
    assert!(challenges.iter().any(|c| c.starts_with("Bearer realm=")), "{challenges:?}");

    // One client behind the proxy fails until it is limited...
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        last = from("203.0.113.66", "not-a-token").await.expect("post").status();
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // ...and another client behind the same proxy is not.
    assert_eq!(from("203.0.113.1", &token).await.expect("post").status(), StatusCode::CREATED);
    assert_eq!(from("203.0.113.66", "still-guessing").await.expect("post").status(), StatusCode::TOO_MANY_REQUESTS);
}
