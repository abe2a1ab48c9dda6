//! Plugins loaded and called through the real wasmtime host: the embedded built-ins (`builtin:auth-jwt`, the
//! signaling built-ins `builtin:signal-rooms`, `builtin:signal-cameras`, `builtin:signal-live`,
//! `builtin:auth-users`), the SDK's example, and hostile plugins that must be stopped or refused.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::config::model::{BuiltinPlugin, PluginConfig, PluginGrants, PluginLimits, PluginSource};
use sluice::plugin::auth::{Action, BasicCredentials, Credentials, Decision, Protocol, Request};
use sluice::plugin::{CallFailure, Plugin, PluginHost, PluginStats};

use common::jwt::hs256;

fn test_plugin(file: &str) -> PathBuf {
    PathBuf::from(env!("SLUICE_TEST_PLUGINS")).join(file)
}

fn config(name: &str, source: PluginSource, config: serde_json::Value) -> PluginConfig {
    PluginConfig {
        name: name.to_string(),
        limits: source.default_limits(),
        source,
        config,
        grants: PluginGrants::default(),
        mount: None,
    }
}

fn load(config: &PluginConfig) -> Result<Plugin, String> {
    load_on(&PluginHost::shared(None).expect("engine"), config)
}

/// Loads through `host`: plugins loaded through one host share its storage registry, as a router's do.
fn load_on(host: &PluginHost, config: &PluginConfig) -> Result<Plugin, String> {
    let bytes = match &config.source {
        PluginSource::Builtin(b) => sluice::plugin::builtin_bytes(*b).expect("built in").to_vec(),
        PluginSource::File(p) => std::fs::read(p).expect("read plugin"),
    };
    host.load(config, &bytes).map_err(|e| e.to_string())
}

fn request(action: Action, route: &str, credentials: Credentials) -> Request {
    Request {
        action,
        protocol: Protocol::Whep,
        route: route.to_string(),
        target: format!("/{route}/whep"),
        query: Vec::new(),
        remote_ip: "127.0.0.1".to_string(),
        credentials,
    }
}

fn bearer(token: &str) -> Credentials {
    Credentials::Bearer(token.to_string())
}

const JWT_SECRET: &str = "host-test-secret";
const RSA_PUBLIC: &str = include_str!("../../plugins/auth-jwt/testdata/rs256-public.pem");

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

fn jwt_plugin() -> Plugin {
    let c = config(
        "jwt",
        PluginSource::Builtin(BuiltinPlugin::AuthJwt),
        json!({ "secret": JWT_SECRET, "public_key": RSA_PUBLIC, "audience": "sluice" }),
    );
    load(&c).expect("builtin:auth-jwt loads")
}

fn deny_reason(d: Result<Decision, CallFailure>) -> String {
    match d {
        Ok(Decision::Deny(reason)) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn builtin_auth_jwt_decides_under_the_real_host() {
    let plugin = jwt_plugin();
    let auth = plugin.as_auth().expect("an auth plugin");
    let claims = |extra: serde_json::Value| {
        let mut c = json!({ "sub": "ana", "aud": "sluice", "exp": now() + 600, "sluice": ["read:cams/*"] });
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let good = hs256(claims(json!({})), JWT_SECRET.as_bytes());
    match auth.authorize(&request(Action::Read, "cams/1", bearer(&good))) {
        Ok(Decision::Allow(a)) => assert_eq!(a.identity, "ana"),
        other => panic!("{other:?}"),
    }
    assert!(auth.cached(&request(Action::Read, "cams/1", bearer(&good))).is_some(), "allow is cached");
    assert!(auth.cached(&request(Action::Publish, "cams/1", bearer(&good))).is_none(), "per action");

    let expired = hs256(claims(json!({ "exp": now() - 120 })), JWT_SECRET.as_bytes());
    assert_eq!(
        deny_reason(auth.authorize(&request(Action::Read, "cams/1", bearer(&expired)))),
        "the token has expired"
    );
    let wrong_aud = hs256(claims(json!({ "aud": "elsewhere" })), JWT_SECRET.as_bytes());
    assert_eq!(
        deny_reason(auth.authorize(&request(Action::Read, "cams/1", bearer(&wrong_aud)))),
        "the token is for another audience"
    );
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJldmUiLCJleHAiOjQxMDI0NDQ4MDAsInNsdWljZSI6WyIqOioiXX0.";
    assert_eq!(deny_reason(auth.authorize(&request(Action::Read, "cams/1", bearer(none)))), "the token is not a JWT");
    // HS/RS confusion: HS256 with the RSA public key as the secret.
    let confused = hs256(claims(json!({})), RSA_PUBLIC.as_bytes());
    assert_eq!(
        deny_reason(auth.authorize(&request(Action::Read, "cams/1", bearer(&confused)))),
        "the token's signature does not verify"
    );
    // A character inside the signature (the last one also carries padding bits, which decoders ignore).
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_eq!(
        deny_reason(auth.authorize(&request(Action::Read, "cams/1", bearer(&tampered)))),
        "the token's signature does not verify"
    );
    assert_eq!(
        deny_reason(auth.authorize(&request(Action::Publish, "cams/1", bearer(&good)))),
        "the token does not allow publish on \"cams/1\""
    );
    assert_eq!(
        auth.authorize(&request(Action::Read, "cams/1", Credentials::None)),
        Ok(Decision::Challenge("sluice".into()))
    );
}

#[test]
fn builtin_auth_users_checks_argon2_passwords() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$YW5hLXNhbHQtMTIz$9ek1O8vea3hRkGsQGnKSmH/AkzV1kgq4Ep1at13JXCI";
    let c = config(
        "users",
        PluginSource::Builtin(BuiltinPlugin::AuthUsers),
        json!({ "users": [{ "name": "ana", "password_hash": hash, "permissions": ["publish:studio"] }] }),
    );
    let plugin = load(&c).expect("builtin:auth-users loads");
    let auth = plugin.as_auth().expect("auth");
    let basic = |p: &str| Credentials::Basic(BasicCredentials { user: "ana".into(), password: p.into() });
    assert!(matches!(auth.authorize(&request(Action::Publish, "studio", basic("opensesame"))), Ok(Decision::Allow(_))));
    assert_eq!(
        deny_reason(auth.authorize(&request(Action::Publish, "studio", basic("guess")))),
        "wrong user name or password"
    );
}

#[test]
fn a_config_the_plugin_rejects_fails_the_load_with_its_message() {
    let c =
        config("jwt", PluginSource::Builtin(BuiltinPlugin::AuthJwt), json!({ "secret_env": "SLUICE_UNSET_FOR_TEST" }));
    let e = load(&c).expect_err("no key");
    assert!(
        e.starts_with("plugin \"jwt\": could not be instantiated: its init refused the config: `secret_env`"),
        "{e}"
    );
    assert!(e.contains("grants = { env = [\"SLUICE_UNSET_FOR_TEST\"] }"), "{e}");
}

#[test]
fn granted_environment_variables_reach_the_plugin() {
    // SAFETY of the test: the variable name is unique to this test; nothing else reads it.
    let var = "SLUICE_PLUGIN_HOST_TEST_SECRET";
    // Set before any plugin instance starts; Rust 2024 marks set_var unsafe because of other threads reading
    // the environment, which this test binary's other tests do not do for this name.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(var, JWT_SECRET)
    };
    let mut c = config("jwt", PluginSource::Builtin(BuiltinPlugin::AuthJwt), json!({ "secret_env": var }));
    assert!(load(&c).expect_err("not granted").contains("not granted"), "an ungranted variable stays invisible");
    c.grants.env = vec![var.to_string()];
    let plugin = load(&c).expect("granted");
    let token = hs256(json!({ "sub": "env", "exp": now() + 60, "sluice": ["*"] }), JWT_SECRET.as_bytes());
    let d = plugin.as_auth().expect("auth").authorize(&request(Action::Read, "x", bearer(&token)));
    assert!(matches!(d, Ok(Decision::Allow(_))), "{d:?}");
}

fn counters(stats: &PluginStats) -> (u64, u64, u64, u64) {
    (
        PluginStats::get(&stats.timeouts),
        PluginStats::get(&stats.out_of_memory),
        PluginStats::get(&stats.traps),
        PluginStats::get(&stats.recycled),
    )
}

#[test]
fn hostile_plugins_are_stopped_and_the_host_keeps_serving() {
    let mut c = config("hostile", PluginSource::File(test_plugin("sluice_test_hostile.wasm")), json!({}));
    c.limits = PluginLimits { memory_bytes: 8 << 20, call_timeout: Duration::from_millis(50) };
    let plugin = load(&c).expect("the hostile plugin loads (it only misbehaves when called)");
    let auth = plugin.as_auth().expect("auth");
    let call = |route: &str| auth.authorize(&request(Action::Read, route, Credentials::None));

    let started = Instant::now();
    assert_eq!(call("loop"), Err(CallFailure::Timeout(Duration::from_millis(50))));
    assert!(started.elapsed() < Duration::from_secs(5), "the deadline stopped the loop: {:?}", started.elapsed());
    assert_eq!(counters(auth.stats()), (1, 0, 0, 1));

    assert_eq!(call("oom"), Err(CallFailure::OutOfMemory(8 << 20)));
    assert_eq!(counters(auth.stats()), (1, 1, 0, 2));

    match call("trap") {
        Err(CallFailure::Trap(_)) => {}
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(counters(auth.stats()), (1, 1, 1, 3));

    let started = Instant::now();
    match call("sleep") {
        Err(CallFailure::Trap(reason)) => assert!(reason.contains("plugins may not block"), "{reason}"),
        other => panic!("expected a refused wait, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "the 30 s sleep was cut short");
    assert_eq!(counters(auth.stats()), (1, 1, 2, 4));

    // After each failure a fresh instance answers normally.
    for _ in 0..3 {
        assert!(matches!(call("fine"), Ok(Decision::Allow(_))));
    }
    assert!(matches!(call("log"), Ok(Decision::Allow(_))));
}

#[test]
fn a_plugin_importing_the_network_is_refused_at_load() {
    let c = config("phone-home", PluginSource::File(test_plugin("sluice_test_network.wasm")), json!({}));
    let e = load(&c).expect_err("refused");
    assert!(e.starts_with("plugin \"phone-home\": it imports wasi:sockets/"), "{e}");
    assert!(e.ends_with("which it was not granted: plugins get no network access"), "{e}");
}

#[test]
fn garbage_and_plain_modules_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.wasm");
    for (bytes, expected) in [
        (&b"\0asm not really"[..], "plugin \"g\": not a WebAssembly component (unknown binary version)"),
        (b"PK\x03\x04 a zip", "plugin \"g\": not a WebAssembly file (it does not start with the \\0asm magic bytes)"),
        (b"\0asm\x01\0\0\0", "plugin \"g\": a core WebAssembly module, not a component"),
        // A component header with nothing valid after it: wasmtime's own reason, without the bytes it read.
        (b"\0asm\x0d\0\x01\0\xff\xff", "plugin \"g\": not a WebAssembly component this router can run"),
    ] {
        std::fs::write(&garbage, bytes).expect("write");
        let e = load(&config("g", PluginSource::File(garbage.clone()), json!({}))).expect_err("garbage");
        assert!(e.starts_with(expected), "{e}");
    }
}

#[test]
fn the_sdk_example_runs_under_the_real_host() {
    let c = config(
        "lan",
        PluginSource::File(test_plugin("example_allowlist.wasm")),
        json!({ "readers": ["192.168.1."], "publish_key": "k" }),
    );
    let plugin = load(&c).expect("example loads");
    let auth = plugin.as_auth().expect("auth");
    let mut lan = request(Action::Read, "cam", Credentials::None);
    lan.remote_ip = "192.168.1.7".into();
    assert!(matches!(auth.authorize(&lan), Ok(Decision::Allow(_))));
    assert!(auth.cached(&lan).is_none(), "TTL 0 decisions are not cached");
    lan.remote_ip = "203.0.113.1".into();
    assert_eq!(auth.authorize(&lan), Ok(Decision::Deny("not on the list".into())));
}

/// `sluice plugin test` on one of the test plugins, with `cases` written to a file.
fn plugin_test(plugin: &str, world: &str, cases: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cases.toml");
    std::fs::write(&path, cases).expect("write cases");
    common::sluice()
        .args(["plugin", "test"])
        .arg(test_plugin(plugin))
        .args(["--world", world, "--cases"])
        .arg(&path)
        .output()
        .expect("run sluice plugin test")
}

/// The cases file an example plugin ships.
fn shipped_cases(example: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(example).join("cases.toml");
    std::fs::read_to_string(path).expect("the example's cases")
}

#[test]
fn sluice_plugin_test_runs_a_table_of_cases() {
    let run = |cases: &str| plugin_test("example_allowlist.wasm", "auth", cases);
    let shipped = shipped_cases("example-allowlist");
    let out = run(&shipped);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok   a reader on the LAN: allow (identity \"192.168.1.20\", cache 0 ms) in "), "{stdout}");
    assert!(stdout.contains(" µs, memory "), "time and memory per case: {stdout}");
    assert!(stdout.ends_with("all cases passed\n"), "{stdout}");

    let wrong = "config = { readers = [], publish_key = \"k\" }\n[[case]]\naction = \"read\"\nroute = \"cam\"\nexpect = \"allow\"\n";
    let out = run(wrong);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL case 1: deny (expected allow)"), "{stdout}");

    let bad_config = "config = { readers = \"oops\" }\n[[case]]\naction = \"read\"\n";
    let out = run(bad_config);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("its init refused the config: invalid config"), "{stderr}");
    assert!(!stderr.contains(" at line "), "no position in JSON the author never wrote: {stderr}");

    // Mistakes named for what they are: a missing file, a sink tested as auth, settings errors without positions
    // in text the tool made up.
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = dir.path().join("cases.toml");
    std::fs::write(&cases, "[[case]]\naction = \"read\"\n").expect("write");
    let with = |plugin: &Path, cases: &Path| {
        let out = common::sluice()
            .args(["plugin", "test"])
            .arg(plugin)
            .arg("--cases")
            .arg(cases)
            .output()
            .expect("run sluice plugin test");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = with(&dir.path().join("nope.wasm"), &cases);
    assert!(missing.contains("nope.wasm: No such file or directory"), "{missing}");
    let sink = with(&test_plugin("sluice_test_trap_sink.wasm"), &cases);
    assert!(sink.contains("this is a sink plugin, not --world auth"), "{sink}");
    std::fs::write(&cases, "limits = { memory = \"lots\" }\n[[case]]\naction = \"read\"\n").expect("write");
    let limits = with(&test_plugin("example_allowlist.wasm"), &cases);
    assert!(limits.starts_with(&format!("{}: `limits.memory`", cases.display())), "{limits}");
}

/// `builtin:record-mp4` under the real host: the demo clip recorded through the sink world and the storage
/// interface into rotating segments, each one a complete fragmented MP4 that ffprobe reads with every frame.
#[test]
fn record_mp4_writes_segments_ffprobe_reads() {
    use sluice::config::model::StorageGrant;
    use sluice::plugin::sink::{MediaBatch, Sample};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(
        "mp4",
        PluginSource::Builtin(BuiltinPlugin::RecordMp4),
        json!({ "segment_duration": "2s", "part_duration": "500ms" }),
    );
    cfg.grants.storage = Some(StorageGrant { dir: dir.path().to_path_buf(), quota_bytes: None, max_age: None });
    let plugin = load(&cfg).expect("record-mp4 loads");
    let sink = plugin.as_sink().expect("a sink plugin");
    let clip = sluice::ingest::demo::clip();
    let track = sluice::egress::record::wit_track(&clip.track);
    assert_eq!((track.width, track.height), (640, 360));
    let mut session = sink.open("cam", &[track]).expect("recorder starts");

    // 8 s: the 4 s clip twice, in batches of 8 frames (about 250 ms) as the router sends them.
    let frames: Vec<_> = clip.frames.iter().chain(clip.frames.iter()).collect();
    let start_ms = 1_795_219_200_000u64;
    for (n, chunk) in frames.chunks(8).enumerate() {
        let (mut payload, mut samples) = (Vec::new(), Vec::new());
        for (i, (data, keyframe)) in chunk.iter().enumerate() {
            let index = (n * 8 + i) as i64;
            samples.push(Sample {
                track: 0,
                pts: index * 3000,
                dts: index * 3000,
                keyframe: *keyframe,
                offset: payload.len() as u32,
                len: data.len() as u32,
                wallclock_ms: Some(start_ms + index as u64 * 1000 / 30),
            });
            payload.extend_from_slice(data);
        }
        session.write(MediaBatch { payload: payload.into(), samples }).expect("write");
    }
    session.finish().expect("finish");

    let storage = sink.storage().expect("storage").expect("granted");
    let files = storage.list("").expect("list");
    assert!(files.len() >= 2, "2 s segments of an 8 s recording: {files:?}");
    assert!(files.iter().all(|(p, _)| p.starts_with("cam/2026-11-21_") && p.ends_with(".mp4")), "{files:?}");
    assert!(storage.orphans().is_empty(), "everything committed");
    let mut total_frames = 0;
    let mut total_duration = 0.0;
    for (path, _) in &files {
        let probed = sluice::recording::probe::probe(&dir.path().join(path)).expect("probe");
        assert_eq!(probed.codecs, ["h264"]);
        assert!(probed.fragments.first().is_some_and(|f| f.starts_with_keyframe), "{path} starts on a keyframe");
        let (frames, duration) = common::ffprobe_video(&dir.path().join(path));
        total_frames += frames;
        total_duration += duration;
    }
    assert_eq!(total_frames, frames.len() as u64, "every frame recorded once");
    assert!((total_duration - 8.0).abs() < 0.1, "segments add up to 8 s: {total_duration}");
}

/// Batch payloads stay in the router while a sink holds their handles; what it holds counts against its memory
/// limit, so a sink that keeps every payload is stopped (out of memory) instead of growing the router without bound.
#[test]
fn payloads_a_sink_holds_count_against_its_memory_limit() {
    use sluice::config::model::StorageGrant;
    use sluice::plugin::sink::RecorderError;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(
        "hoarder",
        PluginSource::File(test_plugin("sluice_test_trap_sink.wasm")),
        json!({ "trap_after": 1_000_000, "hold_payloads": true }),
    );
    c.limits = PluginLimits { memory_bytes: 8 << 20, call_timeout: Duration::from_secs(2) };
    c.grants.storage = Some(StorageGrant { dir: dir.path().to_path_buf(), quota_bytes: None, max_age: None });
    let plugin = load(&c).expect("loads");
    let sink = plugin.as_sink().expect("a sink");
    let track = sluice::egress::record::wit_track(&sluice::ingest::demo::clip().track);
    let mut session = sink.open("cam", &[track]).expect("recorder starts");

    let payload = bytes::Bytes::from(vec![0u8; 1 << 20]);
    let mut accepted = 0;
    let failure = loop {
        match session.write(whole_payload_batch(payload.clone())) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 8, "8 MiB of payloads held past an 8 MiB limit");
    };
    assert_eq!(failure, RecorderError::Failed(CallFailure::OutOfMemory(8 << 20)));
    assert!(accepted >= 4, "a few 1 MiB batches fit beside the instance's own memory: {accepted}");
    assert!(session.memory() <= 8 << 20, "peak {} within the limit", session.memory());
    assert_eq!(counters(sink.stats()).1, 1, "counted as out of memory");
    assert!(session.write(whole_payload_batch(payload)).is_err(), "the recorder is gone");
}

/// A sink call's deadline counts the plugin's own work, not its time in the host's file-system calls (where a slow
/// card makes it wait): that is given back, while computing past `call_timeout` still ends the recorder.
#[test]
fn time_in_storage_calls_does_not_count_against_a_sinks_deadline() {
    use sluice::config::model::StorageGrant;
    use sluice::plugin::sink::RecorderError;

    let dir = tempfile::tempdir().expect("tempdir");
    let open = |plugin_config: serde_json::Value| {
        let mut c = config_for_sink("slow", plugin_config);
        c.limits = PluginLimits { memory_bytes: 32 << 20, call_timeout: Duration::from_millis(250) };
        c.grants.storage = Some(StorageGrant { dir: dir.path().to_path_buf(), quota_bytes: None, max_age: None });
        let plugin = load(&c).expect("loads");
        let track = sluice::egress::record::wit_track(&sluice::ingest::demo::clip().track);
        let session = plugin.as_sink().expect("a sink").open("cam", &[track]).expect("recorder starts");
        (plugin, session)
    };
    let batch = || whole_payload_batch(bytes::Bytes::from(vec![7u8; 1 << 20]));

    // A second of writing a 1 MiB payload to a file and cutting it back, four times the timeout: nearly all of it
    // inside the host's file-system calls.
    let (plugin, mut session) = open(json!({ "trap_after": 10, "storage_ms": 1000 }));
    session.write(batch()).expect("time in storage is not the plugin's");
    assert_eq!(counters(plugin.as_sink().expect("a sink").stats()).0, 0, "no timeout counted");
    session.finish().expect("finishes");

    // The same time computing is stopped at the timeout.
    let (plugin, mut session) = open(json!({ "trap_after": 10, "spin_ms": 1000 }));
    assert_eq!(session.write(batch()), Err(RecorderError::Failed(CallFailure::Timeout(Duration::from_millis(250)))));
    assert_eq!(counters(plugin.as_sink().expect("a sink").stats()).0, 1, "counted as a timeout");
}

/// Recovery passes of one plugin run one at a time: many recorders failing at once (each asks for a pass) hand
/// each file to `recover` once, not once per caller racing for it. A file `recover` fails on stays for later passes
/// and does not stop the others.
#[test]
fn recovery_passes_are_coalesced_and_retry_what_failed() {
    use sluice::config::model::StorageGrant;

    let dir = tempfile::tempdir().expect("tempdir");
    // One host, as in a router: both plugins granted the directory share its storage and bookkeeping.
    let host = PluginHost::shared(None).expect("engine");
    let load_sink = |name: &str, plugin_config: serde_json::Value| {
        let mut c = config_for_sink(name, plugin_config);
        c.grants.storage = Some(StorageGrant { dir: dir.path().to_path_buf(), quota_bytes: None, max_age: None });
        load_on(&host, &c).expect("loads")
    };
    let leave_uncommitted = |storage: &std::sync::Arc<sluice::plugin::storage::Storage>, names: &[&str]| {
        for name in names {
            let mut file = storage.create(name, None).expect("create");
            file.append(b"moof").expect("append");
        }
    };

    // 300 ms per file; four callers at once.
    let plugin = load_sink("slow", json!({ "trap_after": 10, "spin_ms": 300 }));
    let sink = plugin.as_sink().expect("a sink");
    let storage = sink.storage().expect("storage opens").expect("granted");
    leave_uncommitted(&storage, &["a.mp4", "b.mp4", "c.mp4"]);
    let start = std::sync::Barrier::new(4);
    let recovered: u64 = std::thread::scope(|s| {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    sink.recover_orphans() as u64
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().expect("no panic")).sum()
    });
    assert_eq!(recovered, 3);
    assert!(storage.orphans().is_empty());
    assert_eq!(PluginStats::get(&sink.stats().calls), 3, "each file handed to recover once");

    let plugin = load_sink("picky", json!({ "trap_after": 10, "recover_fails_on": "bad" }));
    let sink = plugin.as_sink().expect("a sink");
    leave_uncommitted(&storage, &["d-bad.mp4", "e.mp4"]);
    assert_eq!(sink.recover_orphans(), 1, "e.mp4, after d-bad.mp4 failed");
    assert_eq!(storage.orphans(), ["d-bad.mp4"], "left uncommitted");
    assert_eq!(sink.recover_orphans(), 0, "tried again, failing again");
    assert_eq!(PluginStats::get(&sink.stats().calls), 3);
}

/// A batch of one sample that is the whole payload (a payload holds exactly its samples' bytes).
fn whole_payload_batch(payload: bytes::Bytes) -> sluice::plugin::sink::MediaBatch {
    let sample = sluice::plugin::sink::Sample {
        track: 0,
        pts: 0,
        dts: 0,
        keyframe: true,
        offset: 0,
        len: payload.len() as u32,
        wallclock_ms: None,
    };
    sluice::plugin::sink::MediaBatch { payload: payload.into(), samples: vec![sample] }
}

fn config_for_sink(name: &str, plugin_config: serde_json::Value) -> PluginConfig {
    config(name, PluginSource::File(test_plugin("sluice_test_trap_sink.wasm")), plugin_config)
}

/// A client of a signaling plugin under test: what the plugin sent it.
#[derive(Default)]
struct SentTo(std::sync::Mutex<Vec<String>>, Option<()>);

impl sluice::plugin::signaling::Outbound for SentTo {
    fn transport(&self) -> sluice::plugin::signaling::Transport {
        if self.1.is_some() {
            sluice::plugin::signaling::Transport::Websocket
        } else {
            sluice::plugin::signaling::Transport::SocketIo
        }
    }
    fn send(&self, message: &sluice::plugin::signaling::Outgoing) -> Result<(), String> {
        use sluice::plugin::signaling::Outgoing;
        let line = match message {
            Outgoing::Event(e) => format!("{} {}", e.name, e.args),
            Outgoing::Text(t) => t.clone(),
        };
        self.0.lock().expect("lock").push(line);
        Ok(())
    }
    fn ack(&self, ack: u64, args: &str) -> Result<(), String> {
        self.0.lock().expect("lock").push(format!("ack {ack} {args}"));
        Ok(())
    }
    fn close(&self, _reason: &str) {}
}

impl SentTo {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

fn signaling_client(id: u64, websocket: bool) -> sluice::plugin::signaling::Client {
    use sluice::plugin::signaling::{Client, Transport};
    Client {
        id,
        transport: if websocket { Transport::Websocket } else { Transport::SocketIo },
        namespace: "/".into(),
        query: Vec::new(),
        auth: "{}".into(),
        remote_ip: "127.0.0.1".into(),
        identity: None,
    }
}

/// The built-in signaling plugins under the real host: clients connect, events go in, what they send comes out,
/// and sessions are asked of the host.
#[test]
fn builtin_signaling_plugins_run_under_the_real_host() {
    use sluice::plugin::signaling::HostRequest;
    use std::sync::Arc;

    // builtin:signal-rooms: two peers meet.
    let rooms = load(&config("rooms", PluginSource::Builtin(BuiltinPlugin::SignalRooms), serde_json::json!({})))
        .expect("builtin:signal-rooms loads");
    let rooms = rooms.as_signaling().expect("a signaling plugin");
    let mut instance = rooms.start().expect("starts");
    let (a, b) = (Arc::new(SentTo::default()), Arc::new(SentTo::default()));
    for (id, client) in [(1, &a), (2, &b)] {
        instance.host().add_client(id, client.clone());
        rooms.on_connect(&mut instance, &signaling_client(id, false)).expect("call").expect("welcome");
    }
    rooms.on_event(&mut instance, 1, "join-room", r#"[{"roomId":"r","displayName":"ana"}]"#, None).expect("call");
    rooms.on_event(&mut instance, 2, "join-room", r#"[{"roomId":"r","displayName":"bo"}]"#, Some(5)).expect("call");
    assert_eq!(
        a.take(),
        [r#"peers [{"displayNames":{},"peers":[]}]"#, r#"peer-joined [{"displayName":"bo","peerId":"2"}]"#]
    );
    assert_eq!(
        b.take(),
        [r#"peers [{"displayNames":{"1":"ana"},"peers":["1"]}]"#, r#"ack 5 [{"ok":true,"peerId":"2","roomId":"r"}]"#]
    );
    instance.host().remove_client(1);
    rooms.on_disconnect(&mut instance, 1, "gone").expect("call");
    assert_eq!(b.take(), [r#"peer-left [{"peerId":"1"}]"#]);

    // builtin:signal-cameras: a camera's offer becomes a publish session into its route.
    let cameras = load(&config(
        "cameras",
        PluginSource::Builtin(BuiltinPlugin::SignalCameras),
        serde_json::json!({ "route": "cam-{cameraId}" }),
    ))
    .expect("builtin:signal-cameras loads");
    let cameras = cameras.as_signaling().expect("a signaling plugin");
    let mut instance = cameras.start().expect("starts");
    let camera = Arc::new(SentTo::default());
    instance.host().add_client(7, camera.clone());
    cameras.on_connect(&mut instance, &signaling_client(7, false)).expect("call").expect("welcome");
    cameras.on_event(&mut instance, 7, "join-room", r#"[{"cameraId":"door","role":"camera"}]"#, None).expect("call");
    cameras.on_event(&mut instance, 7, "offer", r#"[{"cameraId":"door","sdp":"v=0"}]"#, None).expect("call");
    let requests = instance.host().take_requests();
    assert!(requests.contains(&HostRequest::Watch { route: "cam-door".into(), watch: true }), "{requests:?}");
    assert!(
        requests.iter().any(|r| matches!(r, HostRequest::Session { publish: true, route, .. } if route == "cam-door")),
        "{requests:?}"
    );

    // builtin:signal-live: a broadcaster registers over a plain WebSocket.
    let live = load(&config("live", PluginSource::Builtin(BuiltinPlugin::SignalLive), serde_json::json!({})))
        .expect("builtin:signal-live loads");
    let live = live.as_signaling().expect("a signaling plugin");
    let mut instance = live.start().expect("starts");
    let host_client = Arc::new(SentTo(Default::default(), Some(())));
    instance.host().add_client(9, host_client.clone());
    live.on_connect(&mut instance, &signaling_client(9, true)).expect("call").expect("welcome");
    live.on_message(&mut instance, 9, r#"{"type":"register","role":"broadcaster"}"#).expect("call");
    let sent = host_client.take();
    assert_eq!(sent[0], r#"{"id":9,"role":"broadcaster","type":"registered"}"#, "{sent:?}");
}

/// `sluice plugin test --world signaling`: the SDK's signaling example played through its shipped script, and a
/// script the plugin does not meet reported step by step.
#[test]
fn sluice_plugin_test_plays_a_signaling_script() {
    let run = |cases: &str| plugin_test("example_presence.wasm", "signaling", cases);
    let shipped = shipped_cases("example-presence");
    let out = run(&shipped);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok   a shout reaches everyone: 2 sent, 0 requests in "), "{stdout}");
    assert!(stdout.ends_with("all steps passed\n"), "{stdout}");

    let wrong =
        "[[step]]\nconnect = 1\n[[step]]\nclient = 1\nevent = \"hello\"\nargs = [{ name = \"ana\" }]\nexpect = []\n";
    let out = run(wrong);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains(r#"FAIL step 2: sent [1 <- online [{"names":["ana"]}]], expected nothing"#), "{stdout}");
}
