//! The command line as a user meets it: `check` on good and bad edge.toml files, refusals with the reason and
//! exit code 2. (Pushing and pulling against a real router and Chromium: web/tests/edge.test.mjs, run by the
//! router's browser test.)

use std::process::Command;

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice-edge"))
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.env_remove("SLUICE_EDGE_CONFIG").env_remove("SLUICE_EDGE_TOKEN").output().expect("run sluice-edge");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_accepts_the_shipped_example_and_says_what_would_run() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/edge.toml");
    let (code, text) = run(edge().args(["--config", example, "check"]));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("push: Test 640x360 at 30 fps"), "{text}");
    assert!(text.contains("a keyframe every 60 frames"), "{text}");
}

#[test]
fn check_refuses_bad_files_with_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        ("[push]\nsource = \"webcam\"\nto = \"http://r:8889/x/whip\"\n", 1, "use test, stdin"),
        ("[push]\nsource = \"file:/no/such.h264\"\nto = \"http://r:8889/x/whip\"\n", 1, "/no/such.h264"),
        ("[push]\ncolour = \"red\"\n", 2, "unknown field `colour`"),
        ("[pull]\nfrom = \"http://r:8889/x/whep\"\n", 1, "--record DIR"),
        ("", 2, "nothing configured"),
    ];
    for (text, want_code, want) in cases {
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, text).expect("write");
        let (code, out) = run(edge().arg("--config").arg(&path).arg("check"));
        assert_eq!(code, want_code, "{text}: {out}");
        assert!(out.contains(want), "{text}: {out}");
    }
}

#[test]
fn push_and_pull_refuse_missing_or_bad_options_before_starting() {
    let (code, text) = run(edge().args(["push", "--source", "test"]));
    assert_eq!(code, 2);
    assert!(text.contains("say where to push"), "{text}");
    let (code, text) = run(edge().args(["push", "--to", "rtsp://cam/x"]));
    assert_eq!(code, 2);
    assert!(text.contains("not a push target"), "{text}");
    let (code, text) = run(edge().args(["pull", "http://r:8889/x/whep"]));
    assert_eq!(code, 2);
    assert!(text.contains("--record"), "{text}");
    let (code, text) = run(edge().arg("--version"));
    assert_eq!((code, text.trim()), (0, concat!("sluice-edge ", env!("CARGO_PKG_VERSION"))));
}
