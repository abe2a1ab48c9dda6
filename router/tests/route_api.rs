//! Route changes through the API (`POST/PATCH/DELETE /v1/routes`): written into the admin's commented routes.toml
//! byte for byte outside the changed route, validated like a hand edit, applied like a reload, guarded by the
//! file's ETag and by `api_auth`.

mod common;

use common::RouterProcess;
use common::jwt::{hs256, now};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SERVER: &str = "# Our shop's router.\n[server]\nhttp = \"127.0.0.1:0\"   # any free port\nrtsp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\nwebrtc = { udp = \"127.0.0.1:0\" }\n";
const ROUTES: &str = "\n# The demo clip, for newcomers.\n[[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [ \"whep\" ]   # spacing as the admin left it\n\n\
    # The door camera.\n[[route]]\nname = \"door\"\nfrom = \"whip\"\nto = [\"whep\"]\nmax_readers = 8 # a small uplink\n\n# End of routes.\n";

struct Answer {
    status: StatusCode,
    etag: Option<String>,
    location: Option<String>,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let header = |name| {
        response.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_string)
    };
    let (etag, location) = (header("etag"), header("location"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, etag, location, body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_are_written_into_the_file_validated_and_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    let original = format!("{SERVER}data_dir = \"{}\"\n{ROUTES}", dir.path().join("data").display());
    std::fs::write(&path, &original).expect("write");
    let router = RouterProcess::start(&path);
    let client = reqwest::Client::new();
    let file = || std::fs::read_to_string(&path).expect("read");

    let listed = send(client.get(router.url("/v1/routes"))).await;
    let first_etag = listed.etag.expect("GET /v1/routes has an ETag");

    // Add, against the version just read.
    let added = send(
        client
            .post(router.url("/v1/routes"))
            .header("if-match", &first_etag)
            .json(&json!({ "name": "studio", "from": "rtmp", "to": ["rtmp", "whep"], "max_readers": 10 })),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.location.as_deref(), Some("/v1/routes/studio"));
    assert_eq!(added.body["result"], "applied");
    assert_eq!(added.body["trigger"], "route_api");
    assert_eq!(added.body["changes"]["added"], json!(["studio"]));
    assert_eq!(added.body["changes"]["unchanged"], 2, "the other routes were not touched");
    let etag = added.etag.expect("new ETag");
    assert_eq!(added.body["etag"], etag.as_str());
    assert_ne!(etag, first_etag);
    let studio = "\n[[route]]\nname = \"studio\"\nfrom = \"rtmp\"\nto = [\"rtmp\", \"whep\"]\nmax_readers = 10\n";
    let end = "\n# End of routes.\n";
    let with_studio = original.replace(end, &format!("{studio}{end}"));
    assert_eq!(file(), with_studio, "the file is the old one, byte for byte, and the new route");
    let shown = send(client.get(router.url("/v1/routes/studio"))).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["config"]["max_readers"], 10);
    assert_eq!(shown.etag.as_deref(), Some(etag.as_str()));

    // Update one key, remove another: the golden file differs from the old one in those lines only.
    let updated = send(
        client
            .patch(router.url("/v1/routes/door"))
            .header("if-match", &etag)
            .json(&json!({ "max_readers": 3, "override_publisher": true })),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["changes"]["updated"], json!(["door"]));
    let golden = original
        .replace("max_readers = 8 # a small uplink\n", "max_readers = 3 # a small uplink\noverride_publisher = true\n");
    assert_eq!(file(), golden.replace(end, &format!("{studio}{end}")));

    // A change made against an old version of the file: 409, nothing written.
    let before = file();
    let stale =
        send(client.patch(router.url("/v1/routes/door")).header("if-match", &etag).json(&json!({ "max_readers": 4 })))
            .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert_eq!(stale.body["error"]["code"], "file_changed");
    assert_eq!(stale.etag, updated.etag, "the 409 names the version to read");
    assert_eq!(file(), before);

    // Invalid changes get the file's own validation messages (and change nothing).
    let invalid = send(client.patch(router.url("/v1/routes/door")).json(&json!({ "to": ["whap"] }))).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", invalid.body);
    assert_eq!(invalid.body["error"]["code"], "invalid_config");
    let message = invalid.body["error"]["details"]["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("\"whap\""), "{message}");
    assert!(invalid.body["error"]["details"]["errors"][0]["line"].is_u64(), "{}", invalid.body);
    let duplicate = send(client.post(router.url("/v1/routes")).json(&json!({ "name": "demo", "from": "whip" }))).await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", duplicate.body);
    assert!(duplicate.body["error"]["message"].as_str().is_some_and(|m| m.contains("demo")), "{}", duplicate.body);
    for (request, status) in [
        (client.patch(router.url("/v1/routes/nope")).json(&json!({ "max_readers": 1 })), StatusCode::NOT_FOUND),
        (client.delete(router.url("/v1/routes/nope")), StatusCode::NOT_FOUND),
        (client.post(router.url("/v1/routes")).json(&json!(["not", "an", "object"])), StatusCode::BAD_REQUEST),
        (client.post(router.url("/v1/routes")).json(&json!({ "from": "whip" })), StatusCode::BAD_REQUEST),
        (client.post(router.url("/v1/routes")).body("{not json"), StatusCode::BAD_REQUEST),
        (client.patch(router.url("/v1/routes/door")).json(&json!({ "to": [null] })), StatusCode::BAD_REQUEST),
        // A page of another site in an admin's browser may not change routes (a "simple" POST needs no preflight).
        (
            client
                .post(router.url("/v1/routes"))
                .header("origin", "http://evil.example")
                .header("content-type", "text/plain")
                .body(r#"{"name":"x","from":"whip"}"#),
            StatusCode::FORBIDDEN,
        ),
        (client.post(router.url("/v1/reload")).header("sec-fetch-site", "cross-site"), StatusCode::FORBIDDEN),
        // The API may not make the router read its environment into a value it shows back.
        (
            client.patch(router.url("/v1/routes/door")).json(&json!({ "from": "rtsp://h/${HOME}" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            client.patch(router.url("/v1/routes/door")).header("if-match", "W/\"x\"").json(&json!({})),
            StatusCode::CONFLICT,
        ),
        (client.patch(router.url("/v1/routes")).json(&json!({ "changes": [] })), StatusCode::BAD_REQUEST),
        (
            client.patch(router.url("/v1/routes")).json(&json!({ "changes": [{ "op": "rename" }] })),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = send(request).await;
        assert_eq!(answer.status, status, "{}", answer.body);
        assert!(answer.body["error"]["message"].is_string(), "{}", answer.body);
    }
    assert_eq!(file(), before, "no refused change wrote anything");

    // Many changes at once, all or nothing: one bad change keeps the others out.
    let half = send(client.patch(router.url("/v1/routes")).json(&json!({ "changes": [
        { "op": "delete", "name": "studio" },
        { "op": "update", "name": "nope", "set": {} },
    ] })))
    .await;
    assert_eq!(half.status, StatusCode::NOT_FOUND);
    assert_eq!(file(), before);
    let batch = send(client.patch(router.url("/v1/routes")).json(&json!({ "changes": [
        { "op": "delete", "name": "studio" },
        { "op": "add", "route": { "name": "lobby", "from": "whip", "to": ["whep"] } },
        { "op": "update", "name": "door", "set": { "max_readers": null } },
    ] })))
    .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    assert_eq!(batch.body["changes"]["removed"], json!(["studio"]));
    assert_eq!(batch.body["changes"]["added"], json!(["lobby"]));
    let names: Vec<String> = send(client.get(router.url("/v1/routes")))
        .await
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, ["demo", "door", "lobby"]);

    // A name with segments: its URL in /v1 writes the '/' as %2F.
    let segmented = send(
        client.post(router.url("/v1/routes")).json(&json!({ "name": "cams/yard", "from": "whip", "to": ["whep"] })),
    )
    .await;
    assert_eq!(segmented.status, StatusCode::CREATED, "{}", segmented.body);
    assert_eq!(segmented.location.as_deref(), Some("/v1/routes/cams%2Fyard"));
    assert_eq!(send(client.get(router.url("/v1/routes/cams%2Fyard"))).await.status, StatusCode::OK);
    assert_eq!(send(client.delete(router.url("/v1/routes/cams%2Fyard"))).await.status, StatusCode::OK);

    // Delete: the route and the comment above it go, the rest stays.
    let deleted = send(client.delete(router.url("/v1/routes/door"))).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let text = file();
    assert!(!text.contains("door"), "{text}");
    assert!(text.starts_with(&original[..original.find("\n# The door camera.").expect("door")]), "{text}");
    assert!(text.contains("# End of routes.\n"), "{text}");
    let gone = send(client.get(router.url("/v1/routes/door"))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_decides_who_may_change_routes() {
    const SECRET: &str = "route-api-secret";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    let text = format!(
        "{SERVER}data_dir = \"{}\"\napi_auth = \"jwt\"\n\n[plugins.jwt]\nsource = \"builtin:auth-jwt\"\n\
         config = {{ secret_env = \"SLUICE_TEST_JWT_SECRET\" }}\ngrants = {{ env = [\"SLUICE_TEST_JWT_SECRET\"] }}\n{ROUTES}",
        dir.path().join("data").display()
    );
    std::fs::write(&path, &text).expect("write");
    let router = RouterProcess::start_with_env(&path, &[("SLUICE_TEST_JWT_SECRET", SECRET)]);
    let client = reqwest::Client::new();
    let token = |permissions: &[&str]| {
        hs256(json!({ "sub": "t", "exp": now() + 600, "sluice": permissions }), SECRET.as_bytes())
    };
    let route = json!({ "name": "lobby", "from": "whip", "to": ["whep"] });

    let anonymous = send(client.post(router.url("/v1/routes")).json(&route)).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.body);
    let reader = send(client.post(router.url("/v1/routes")).bearer_auth(token(&["read:*"])).json(&route)).await;
    assert_eq!(reader.status, StatusCode::FORBIDDEN, "{}", reader.body);
    let door_only = send(client.delete(router.url("/v1/routes/demo")).bearer_auth(token(&["api:door"]))).await;
    assert_eq!(door_only.status, StatusCode::FORBIDDEN, "{}", door_only.body);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text, "refused calls change nothing");
    let admin = send(client.post(router.url("/v1/routes")).bearer_auth(token(&["api:*"])).json(&route)).await;
    assert_eq!(admin.status, StatusCode::CREATED, "{}", admin.body);
    let door = send(
        client
            .patch(router.url("/v1/routes/door"))
            .bearer_auth(token(&["api:door"]))
            .json(&json!({ "max_readers": 2 })),
    )
    .await;
    assert_eq!(door.status, StatusCode::OK, "{}", door.body);
    // Every name a change touches is judged: a rename, or a batch naming other routes.
    let rename = send(
        client.patch(router.url("/v1/routes/door")).bearer_auth(token(&["api:door"])).json(&json!({ "name": "gate" })),
    )
    .await;
    assert_eq!(rename.status, StatusCode::FORBIDDEN, "{}", rename.body);
    let batch = json!({ "changes": [{ "op": "delete", "name": "demo" }] });
    let batch =
        send(client.patch(router.url("/v1/routes")).bearer_auth(token(&["api:door", "api:"])).json(&batch)).await;
    assert_eq!(batch.status, StatusCode::FORBIDDEN, "{}", batch.body);
}
