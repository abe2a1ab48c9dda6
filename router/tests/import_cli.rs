//! `sluice import`: MediaMTX's configurations users post, converted into files `sluice check` accepts (plugins
//! loaded too: the users plugin reads the converted users), and the command's handling of its files.

mod common;

use std::path::Path;

fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mediamtx").join(name)
}

#[test]
fn each_sample_converts_into_a_file_sluice_check_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, summary) in [
        ("cameras.yml", "ok (3 routes, 1 template, 1 plugins)"),
        ("publisher-recording.yml", "ok (1 routes, 1 template, 2 plugins)"),
        ("users.yml", "ok (3 routes, 1 plugins)"),
    ] {
        let out_file = dir.path().join(name.replace(".yml", ".toml"));
        let out = common::sluice().arg("import").arg(sample(name)).arg("-o").arg(&out_file).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("not converted: srt: ")), "{name}: {stderr}");
        assert!(stderr.contains(&format!("wrote {}", out_file.display())), "{stderr}");
        let check = common::sluice().arg("check").arg(&out_file).output().expect("run check");
        assert!(check.status.success(), "{name}: {}", String::from_utf8_lossy(&check.stderr));
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert_eq!(stdout.trim(), format!("{}: {summary}", out_file.display()), "{name}");
    }
}

#[test]
fn the_file_goes_to_standard_output_unless_named_and_is_never_replaced_silently() {
    let out = common::sluice().arg("import").arg(sample("cameras.yml")).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("# Sluice routes file converted from MediaMTX"), "{text}");
    assert!(text.contains("name = \"front_door\""));

    let dir = tempfile::tempdir().expect("tempdir");
    let existing = dir.path().join("routes.toml");
    std::fs::write(&existing, "# mine\n").expect("write");
    let out = common::sluice().arg("import").arg(sample("cameras.yml")).arg("-o").arg(&existing).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists; pass --force to replace it"));
    assert_eq!(std::fs::read_to_string(&existing).expect("read"), "# mine\n", "left as it was");
    let out = common::sluice()
        .arg("import")
        .arg(sample("cameras.yml"))
        .arg("-o")
        .arg(&existing)
        .arg("--force")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&existing).expect("read").contains("front_door"));
}

#[test]
fn a_file_that_is_not_mediamtx_settings_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("mediamtx.yml");
    std::fs::write(&bad, "paths:\n  cam: {source: [\n").expect("write");
    let out = common::sluice().arg("import").arg(&bad).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("sluice import: {}: not valid YAML", bad.display())), "{stderr}");
    assert!(out.stdout.is_empty());
    let out = common::sluice().args(["import", "/nonexistent/mediamtx.yml"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/mediamtx.yml"));
}

/// Each converted sample runs (its plugins load, the users' anonymous API rule lets this machine in), on free
/// ports instead of MediaMTX's.
#[tokio::test]
async fn each_converted_sample_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["cameras.yml", "publisher-recording.yml", "users.yml"] {
        let out = common::sluice().arg("import").arg(sample(name)).output().expect("run");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut text = text.replace("0.0.0.0:8189", "127.0.0.1:0").replace("127.0.0.1:9997", "127.0.0.1:0");
        for port in ["8889", "8554", "1935"] {
            text = text.replace(&format!("\"0.0.0.0:{port}\""), "\"127.0.0.1:0\"");
        }
        let config = dir.path().join(name.replace(".yml", ".toml"));
        std::fs::write(&config, &text).expect("write");
        let router = common::RouterProcess::start(&config);
        let routes = reqwest::get(router.url("/v1/routes")).await.expect("get");
        // MediaMTX's local API rule carries over where its API was on or the users list it; otherwise the API
        // asks for credentials.
        let expected = if name == "cameras.yml" { 401 } else { 200 };
        assert_eq!(routes.status().as_u16(), expected, "{name}");
    }
}
