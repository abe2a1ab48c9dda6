//! `sluice check` on valid and invalid files, and the shipped routes.toml kept valid and documented.

mod common;

use std::path::Path;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, text).expect("write");
    let out = common::sluice().arg("check").arg(&path).output().expect("run sluice check");
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "routes.toml");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "routes.toml");
    (out.status.success(), stdout, stderr)
}

#[test]
fn valid_file_passes() {
    let (ok, stdout, _) = check("[[route]]\nname = \"cam\"\nfrom = \"rtsp://10.0.0.2/s\"\nto = [\"whep\"]\n");
    assert!(ok);
    assert_eq!(stdout, "routes.toml: ok (1 routes, 0 plugins)\n");
}

#[test]
fn invalid_file_fails_with_every_error() {
    let (ok, stdout, stderr) =
        check("[server]\nhttp = \"8889\"\n\n[[route]]\nname = \"cam\"\nfrom = \"demo\"\nto = [\"whip\"]\n");
    assert!(!ok);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "routes.toml:2:8: `server.http`: \"8889\" is not an IP address and port\n  help: write IP:PORT, e.g. \"0.0.0.0:8889\" for every interface or \"127.0.0.1:8889\" for this machine only\n\
         routes.toml:7:7: route \"cam\": `to`: \"whip\" is a source, not an output\n  help: put it in `from`; outputs are \"whep\", \"hls\", \"rtsp\", \"rtmp\", \"record:<plugin>\", or an rtmp:// or rtsp:// URL to push to\n"
    );
}

#[test]
fn unreadable_file_is_an_error() {
    let out = common::sluice().args(["check", "/nonexistent/routes.toml"]).output().expect("run");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "/nonexistent/routes.toml: cannot read the file: No such file or directory (os error 2)\n"
    );
}

fn shipped_routes_toml() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../routes.toml")
}

#[test]
fn shipped_routes_toml_is_valid_and_serves_the_demo() {
    let out = common::sluice().arg("check").arg(shipped_routes_toml()).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = sluice::config::load(&shipped_routes_toml()).expect("valid");
    let demo = table.routes.iter().find(|r| r.name.as_str() == "demo").expect("a demo route");
    assert_eq!(demo.from, sluice::config::model::Source::Demo);
    assert!(demo.to.contains(&sluice::config::model::Output::Whep), "a newcomer can watch it in a browser");
}

/// Every key the file sets is explained by a comment right above it (or on a line of its own table's comment
/// block), and every route key is documented somewhere in the file.
#[test]
fn shipped_routes_toml_is_documented() {
    let text = std::fs::read_to_string(shipped_routes_toml()).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let mut j = i;
        let mut documented = false;
        while j > 0 {
            j -= 1;
            let above = lines[j].trim();
            if above.starts_with('#') {
                documented = true;
                break;
            }
            if above.is_empty() || above.starts_with('[') {
                break;
            }
        }
        let in_route = lines[..i].iter().rev().find(|l| l.starts_with('[')).is_some_and(|l| l.starts_with("[[route]]"));
        assert!(documented || in_route, "line {} sets a key without a comment above it: {line}", i + 1);
    }
    for key in ["name", "from", "to", "auth", "on_demand", "max_readers", "public_ips", "data_dir", "${"] {
        let explained = text.lines().any(|l| l.trim_start().starts_with('#') && l.contains(key));
        assert!(explained, "no comment in routes.toml explains `{key}`");
    }
}

/// A plugin that refuses its config is reported at its `config` line in routes.toml, and a file plugin named for
/// recording that turns out not to be a sink says so.
#[test]
fn plugin_errors_point_into_routes_toml() {
    let (ok, _, stderr) =
        check("[plugins.jwt]\nsource = \"builtin:auth-jwt\"\nconfig = { secret = \"x\", leeway = \"soon\" }\n");
    assert!(!ok);
    assert!(stderr.starts_with("routes.toml:3:10: plugin \"jwt\": "), "{stderr}");
    assert!(stderr.contains("invalid config: invalid type"), "{stderr}");
    assert!(!stderr.contains(" at line "), "{stderr}");

    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = Path::new(env!("SLUICE_TEST_PLUGINS")).join("example_allowlist.wasm");
    std::fs::copy(wasm, dir.path().join("gate.wasm")).expect("copy");
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        "[plugins.gate]\nsource = \"gate.wasm\"\nconfig = { readers = [], publish_key = \"k\" }\n\n\
         [[route]]\nname = \"r\"\nfrom = \"demo\"\nto = [\"record:gate\"]\n",
    )
    .expect("write");
    let out = common::sluice().arg("check").arg(&path).output().expect("run sluice check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("record:gate: plugin \"gate\" is an auth plugin, not a sink plugin"), "{stderr}");
    assert!(stderr.contains("builtin:record-mp4"), "{stderr}");
}
