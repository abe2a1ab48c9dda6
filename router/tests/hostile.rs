//! The holes a hostile-input probe found (issue 24), each tried again against the real binary on loopback:
//! idle, slowloris and slow-body connections, a flood from one address while another client and a recording carry
//! on; standard trickle ICE fragments; SDP errors in words; an editor's truncate-then-write save; a file with more
//! routes than the cap; SIGTERM during a reload of a big file.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{RouterProcess, WAIT};
use serde_json::Value;
use str0m::media::{Direction, MediaKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SERVER: &str = "[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\n\
    webrtc = { udp = \"127.0.0.1:0\" }\n";
const DEMO: &str = "[[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [\"whep\"]\n\n";
const SECOND: &str = "[[route]]\nname = \"second\"\nfrom = \"demo\"\nto = [\"whep\"]\n\n";

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.0/8 is all ours), so one test can be
/// several clients.
async fn connect_from(from: &str, addr: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().expect("address"))?;
    socket.connect(addr.parse().expect("address")).await
}

/// A plain `GET path` from `from`; the status code, or the error.
async fn get_from(from: &str, addr: &str, path: &str) -> Result<u16, String> {
    get_body_from(from, addr, path).await.map(|(status, _)| status)
}

/// `GET path` from `from`: the status and the body (the server closes after it: `connection: close`).
async fn get_body_from(from: &str, addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = connect_from(from, addr).await.map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut reply)).await.map_err(|_| "no answer".to_string())?.ok();
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The value of the metric line starting with `prefix`.
fn metric(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
}

/// Waits until the peer closes `s` (read returns 0 or fails); how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let began = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| began.elapsed())
}

async fn json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.expect("get").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_slow_clients_are_bounded_while_others_and_a_recording_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    let rec = dir.path().join("rec");
    std::fs::write(
        &path,
        format!(
            "{SERVER}data_dir = \"{data}\"\n\n[server.limits]\nconnections_per_ip = 40\nheader_timeout = \"1s\"\n\
             body_timeout = \"1s\"\n\n[plugins.mp4]\nsource = \"builtin:record-mp4\"\n\
             config = {{ segment_duration = \"1s\", part_duration = \"500ms\" }}\n\
             grants = {{ storage = {{ dir = \"{rec}\" }} }}\n\n\
             [[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [\"whep\", \"record:mp4\"]\n",
            data = dir.path().join("data").display(),
            rec = rec.display()
        ),
    )
    .expect("write");
    let mut router = RouterProcess::start(&path);
    let addr = router.http.clone();
    let client = reqwest::Client::new();
    router.saw_or_wait(|l| l["message"] == "recording started");
    let began = Instant::now();

    // 1. A flood of connections that send nothing, from one address: it gets its 40 and no more.
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = connect_from("127.0.0.1", &addr).await {
            held.push(s);
        }
    }
    // Another client is served meanwhile, and the router holds no more than the flooding address's 40 (places
    // free up as the header timeout closes the first ones, so a slow machine lets more in over time, never more
    // at once).
    assert_eq!(get_from("127.0.0.2", &addr, "/healthz").await, Ok(200), "another address is served during a flood");
    let (status, metrics) = get_body_from("127.0.0.2", &addr, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    let open = metric(&metrics, "sluice_connections ");
    assert!(open <= 41, "at most 40 from the flood and this one: {open}");
    let mut closed = 0;
    let mut slowest = Duration::ZERO;
    for s in &mut held {
        if let Some(after) = closed_within(s, Duration::from_secs(10)).await {
            closed += 1;
            slowest = slowest.max(after);
        }
    }
    assert_eq!(closed, held.len(), "every idle connection is closed: refused at once, or after header_timeout");
    assert!(slowest < Duration::from_secs(8), "idle connections go after the 1 s header timeout: {slowest:?}");
    let metrics = client.get(router.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let refused = metric(&metrics, "sluice_connections_refused_total{limit=\"per_address\"} ");
    assert!((1..=160).contains(&refused), "{refused} refused of 200 (40 allowed at a time)");
    drop(held);

    // 2. Slowloris: a header byte every 200 ms never completes a request; the connection ends at header_timeout.
    let mut slow = connect_from("127.0.0.3", &addr).await.expect("connect");
    let trickler = tokio::spawn(async move {
        let began = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nhost: slow-slow-slow-slow-slow-slow-slow-slow\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                return Some(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    let cut = tokio::time::timeout(WAIT, trickler).await.expect("slowloris ends").expect("task");
    assert!(cut.is_some_and(|d| d < Duration::from_secs(8)), "slowloris is cut off after ~1 s, not served: {cut:?}");

    // 3. A body sent a byte at a time: the request fails when body_timeout passes, and the connection closes.
    let mut body = connect_from("127.0.0.4", &addr).await.expect("connect");
    body.write_all(b"POST /v1/routes/demo/record HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .expect("write");
    let mut reply = Vec::new();
    let slow_body = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if body.write_all(b" ").await.is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(WAIT, body.read_to_end(&mut reply)).await;
        reply
    });
    let reply = tokio::time::timeout(WAIT, slow_body).await.expect("slow body ends").expect("task");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "a body over its time is refused: {reply:?}");

    // The recording went on through all of it: once two more segments are committed, the segments cover the
    // whole attack with no gap between them.
    let attack = began.elapsed().as_millis() as i64;
    router.drain();
    router.wait_log(|l| l["message"] == "recording indexed");
    router.wait_log(|l| l["message"] == "recording indexed");
    let list = json(&client, router.url("/v1/recordings?route=demo")).await;
    let mut segments: Vec<(i64, i64)> = list["recordings"]
        .as_array()
        .expect("recordings")
        .iter()
        .map(|r| (r["start_ms"].as_i64().expect("start"), r["duration_ms"].as_i64().expect("duration")))
        .collect();
    segments.sort();
    for pair in segments.windows(2) {
        let gap = pair[1].0 - (pair[0].0 + pair[0].1);
        assert!(gap.abs() <= 100, "segments follow each other without a gap: {segments:?}");
    }
    let covered = segments.last().map_or(0, |(s, d)| s + d) - segments.first().map_or(0, |(s, _)| *s);
    assert!(covered >= attack, "{covered} ms recorded without a gap, the attack took {attack} ms: {segments:?}");
}

/// A real WHEP offer (str0m) with known ICE credentials.
fn offer() -> String {
    let mut rtc = str0m::Rtc::builder().clear_codecs().enable_h264(true).build(Instant::now());
    let addr = "127.0.0.1:40000".parse().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("offer");
    offer.to_sdp_string()
}

fn sdp_line<'a>(sdp: &'a str, prefix: &str) -> &'a str {
    sdp.lines().find(|l| l.starts_with(prefix)).expect("line in the offer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_fragments_with_the_sessions_credentials_are_taken_and_sdp_errors_are_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, format!("{SERVER}\n[server.limits]\nwebrtc_sessions_per_ip = 3\n\n{DEMO}")).expect("write");
    let router = RouterProcess::start(&path);
    let client = reqwest::Client::new();
    let post =
        |sdp: String| client.post(router.url("/demo/whep")).header("content-type", "application/sdp").body(sdp).send();

    let offer = offer();
    let created = post(offer.clone()).await.expect("post");
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().expect("location").to_string();
    let patch = |fragment: String| {
        client
            .patch(router.url(&location))
            .header("content-type", "application/trickle-ice-sdpfrag")
            .body(fragment)
            .send()
    };
    // RFC 8840: the fragment repeats the session's ufrag and pwd beside the candidates.
    let (ufrag, pwd) = (sdp_line(&offer, "a=ice-ufrag:"), sdp_line(&offer, "a=ice-pwd:"));
    let fragment = format!(
        "{ufrag}\r\n{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host\r\n"
    );
    assert_eq!(patch(fragment).await.expect("patch").status(), 204, "a standard fragment is taken");
    let restart = format!("a=ice-ufrag:zzzz\r\n{pwd}\r\na=candidate:3 1 udp 2130706431 127.0.0.1 40002 typ host\r\n");
    let refused = patch(restart).await.expect("patch");
    assert_eq!(refused.status(), 422, "new credentials are an ICE restart, which is refused");

    // Errors say what is wrong in words; no debug output, no memory addresses.
    let no_direction: String =
        offer.lines().filter(|l| !l.starts_with("a=recvonly")).map(|l| format!("{l}\r\n")).collect();
    let no_credentials = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n".to_string();
    for bad in [no_direction, "v=0\r\nm=video\r\n".into(), no_credentials, offer.replace("a=", "")] {
        let response = post(bad.clone()).await.expect("post");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_client_error(), "{status} for {bad:?}");
        assert!(!text.contains("0x") && !text.contains("PointerOffset"), "{text}");
    }
    let response = post(offer.lines().filter(|l| !l.starts_with("a=recvonly")).map(|l| format!("{l}\r\n")).collect())
        .await
        .expect("post");
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["error"]["message"],
        "the SDP offer is not valid: media section 1 (video) lacks a direction attribute (a=sendrecv, a=sendonly, a=recvonly or a=inactive)"
    );

    // One address holds at most `webrtc_sessions_per_ip` sessions.
    for _ in 0..2 {
        assert_eq!(post(offer.clone()).await.expect("post").status(), 201);
    }
    let over = post(offer.clone()).await.expect("post");
    assert_eq!(over.status(), 429);
    let body: Value = over.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_sessions");
    // Ending a session gives its place back.
    assert_eq!(client.delete(router.url(&location)).send().await.expect("delete").status(), 200);
    assert_eq!(post(offer).await.expect("post").status(), 201);
}

fn is_message(line: &Value, prefix: &str) -> bool {
    line["message"].as_str().is_some_and(|m| m.starts_with(prefix))
}

/// Streams a route's frame tap and returns the pts of every frame until `stop`, checking none was skipped.
async fn tap_pts(client: &reqwest::Client, url: String) -> tokio::sync::mpsc::UnboundedReceiver<i64> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut resp = client.get(url).send().await.expect("tap");
    assert_eq!(resp.status(), 200);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let v: Value = serde_json::from_slice(&line).expect("json line");
                if tx.send(v["pts"].as_i64().expect("pts")).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_caught_half_written_keeps_every_viewer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    let good = format!("{SERVER}\n{DEMO}{SECOND}");
    std::fs::write(&path, &good).expect("write");
    let mut router = RouterProcess::start(&path);
    let client = reqwest::Client::new();
    let mut frames = tap_pts(&client, router.url("/v1/routes/demo/frames")).await;
    let first = tokio::time::timeout(WAIT, frames.recv()).await.expect("a frame").expect("tap");

    // An editor that truncates, pauses, then writes: read once, whole.
    std::fs::write(&path, "").expect("truncate");
    tokio::time::sleep(Duration::from_millis(100)).await; // the editor's pause, part of what is being tested
    std::fs::write(&path, format!("{good}# saved again\n")).expect("write");
    let line = router.wait_log(|l| is_message(l, "configuration reloaded") || is_message(l, "routes file rejected"));
    assert!(is_message(&line, "configuration reloaded"), "{line}");
    assert_eq!((line["removed"].as_u64(), line["unchanged"].as_u64()), (Some(0), Some(2)), "{line}");

    // A file left empty is refused: every route keeps running.
    std::fs::write(&path, "").expect("truncate");
    let line = router.wait_log(|l| is_message(l, "routes file rejected"));
    assert!(line["message"].as_str().is_some_and(|m| m.contains("declares no routes")), "{line}");
    let routes = json(&client, router.url("/v1/routes")).await;
    assert_eq!(routes.as_array().map(Vec::len), Some(2));

    // The viewer never noticed: frames kept coming with no gap (the demo clip is 30 fps: 3,000 ticks apart).
    let mut last = first;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let pts = tokio::time::timeout(WAIT, frames.recv()).await.expect("frames keep coming").expect("tap");
        assert!(pts - last <= 3_000 * 2, "no frame lost: {last} -> {pts}");
        last = pts;
    }

    // Saying so removes every route.
    std::fs::write(&path, format!("route = []\n{SERVER}")).expect("write");
    let line = router.wait_log(|l| is_message(l, "configuration reloaded"));
    assert_eq!(line["removed"].as_u64(), Some(2), "{line}");
}

fn many_routes(n: usize) -> String {
    let mut s = format!("{SERVER}\n[defaults]\nto = [\"whep\"]\non_demand = true\n\n");
    for i in 0..n {
        s.push_str(&format!("[[route]]\nname = \"cam-{i}\"\nfrom = \"rtsp://10.9.{}.{}/s\"\n", i / 250, i % 250 + 1));
    }
    s
}

#[test]
fn a_file_over_the_route_cap_is_refused_by_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, many_routes(100_000)).expect("write");
    let out = common::sluice().arg("check").arg(&path).output().expect("run sluice check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than 10000 routes (100000 in the file)"), "{err}");
    // Bigger than any routes file should be: refused before it is read.
    let big = format!("{}#{}\n", many_routes(1), "x".repeat(9 << 20));
    std::fs::write(&path, big).expect("write");
    let out = common::sluice().arg("check").arg(&path).output().expect("run sluice check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routes files may be at most 8388608 bytes (8 MiB)"), "{err}");
}

#[test]
fn sigterm_during_a_reload_of_a_big_file_exits_in_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, format!("{SERVER}\n{DEMO}")).expect("write");
    let mut router = RouterProcess::start(&path);
    write_big(&path);
    router.signal("HUP");
    router.wait_log(|l| is_message(l, "SIGHUP"));
    router.signal("TERM");
    let began = Instant::now();
    let status = router.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(began.elapsed() < WAIT, "exited within the shutdown budgets");
}

fn write_big(path: &Path) {
    std::fs::write(path, many_routes(10_000)).expect("write");
}
