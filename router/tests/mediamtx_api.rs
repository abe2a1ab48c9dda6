//! MediaMTX's read-only v3 API (`[server] mediamtx_api`), as the dashboards written for MediaMTX read it.

mod common;

use common::RouterProcess;
use serde_json::Value;

#[tokio::test]
async fn dashboards_read_paths_config_and_recordings_in_mediamtx_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("routes.toml");
    let rtsp_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    std::fs::write(
        &config,
        format!("[server]\nhttp = \"127.0.0.1:0\"\nrtsp = \"127.0.0.1:{rtsp_port}\"\nrtmp = \"127.0.0.1:0\"\nmediamtx_api = \"127.0.0.1:0\"\n\
         webrtc = {{ udp = \"127.0.0.1:0\" }}\ndata_dir = \"data\"\n\n\
         [[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [\"whep\", \"rtsp\"]\n\n\
         [[route]]\nname = \"cams/door\"\nfrom = \"rtsp\"\nto = [\"rtsp\"]\n"
        ),
    )
    .expect("write routes");
    let mut router = RouterProcess::start(&config);
    let line = router.saw_or_wait(|l| l["message"] == "MediaMTX's read-only v3 API listening");
    let api = format!("http://{}", line["mediamtx_api"].as_str().expect("address"));
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let (client, url) = (client.clone(), format!("{api}{path}"));
        async move {
            let r = client.get(url).send().await.expect("get");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };

    // The demo goes live with its first frame: the frame tap answers once there is one.
    let first = client.get(router.url("/v1/routes/demo/frames?limit=1")).send().await.expect("tap");
    assert!(first.text().await.expect("frame").contains("\"keyframe\""), "a frame came");
    let (status, demo) = get("/v3/paths/get/demo").await;
    assert_eq!(status, 200, "{demo}");
    assert_eq!(demo["ready"], true, "{demo}");
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["confName"], "demo");
    assert_eq!(demo["source"]["type"], "sluiceDemo");
    assert_eq!(demo["tracks"], serde_json::json!(["H264"]));
    assert!(demo["readyTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{demo}");
    assert!(demo["bytesReceived"].as_u64().is_some_and(|b| b > 0), "{demo}");
    assert!(demo["readers"].is_array());

    let (status, list) = get("/v3/paths/list").await;
    assert_eq!(status, 200);
    assert_eq!(list["itemCount"], 2);
    assert_eq!(list["pageCount"], 1);
    let door = list["items"].as_array().expect("items").iter().find(|p| p["name"] == "cams/door").expect("door");
    assert_eq!((door["ready"].clone(), door["source"].clone()), (Value::Bool(false), Value::Null), "no publisher yet");
    let (_, second_page) = get("/v3/paths/list?page=1&itemsPerPage=1").await;
    assert_eq!((second_page["pageCount"].clone(), second_page["items"].as_array().map(Vec::len)), (2.into(), Some(1)));

    let (status, missing) = get("/v3/paths/get/nope").await;
    assert_eq!((status, missing["error"].as_str()), (404, Some("path not found")));

    let (status, global) = get("/v3/config/global/get").await;
    assert_eq!(status, 200);
    assert_eq!(global["rtspAddress"], format!(":{rtsp_port}"));
    assert_eq!(global["rtsp"], true);

    let (status, recordings) = get("/v3/recordings/list").await;
    assert_eq!((status, recordings["itemCount"].clone()), (200, 0.into()));

    // Dashboards on other origins: the preflight is answered before auth, every answer allows any origin.
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{api}/v3/paths/list"))
        .header("Origin", "http://dashboard.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status().as_u16(), 204);
    let header = |r: &reqwest::Response, h: &str| r.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header(&preflight, "access-control-allow-origin").as_deref(), Some("*"));
    assert!(header(&preflight, "access-control-allow-headers").is_some_and(|h| h.contains("Authorization")));
    let r = client.get(format!("{api}/v3/paths/list")).header("Origin", "http://dashboard.example").send().await;
    assert_eq!(header(&r.expect("get"), "access-control-allow-origin").as_deref(), Some("*"));

    // Writes are refused with where to go instead.
    let r = client.post(format!("{api}/v3/config/paths/add/x")).body("{}").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("/v1")), "{body}");
}
