//! WHIP/WHEP against real peers: runs the Node browser tests (`web/tests/*.test.mjs`: headless Chromium through
//! playwright-core, GStreamer webrtcbin through a Python WHIP client) against this build's `sluice` binary.
//!
//! They run in a private network namespace, so ICE only sees addresses that exist nowhere else: loopback for
//! Chromium, and a veth pair because libnice (GStreamer) never gathers loopback candidates. The sluice-edge tests
//! (`edge.test.mjs`) run here too, with the edge binaries for x86_64 and, under qemu, aarch64.

use std::path::Path;
use std::process::Command;

const NETNS_SETUP: &str = "ip link set lo up \
    && ip link add sl0 type veth peer name sl1 \
    && ip addr add 10.99.0.1/24 dev sl0 && ip addr add 10.99.0.2/24 dev sl1 \
    && ip link set sl0 up && ip link set sl1 up";

#[test]
fn browser_and_gstreamer_peers() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run the test command (.ci/test), which installs the npm dev packages"
    );
    // sluice-edge, built beside `sluice` (the edge crate's own tests make cargo build it), and its aarch64 build,
    // which the test command cross-compiles before running the tests.
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice"));
    let edge = bin.with_file_name("sluice-edge");
    let target = bin.parent().and_then(Path::parent).expect("target dir");
    let edge_aarch64 = target.join("aarch64-unknown-linux-gnu/debug/sluice-edge");
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &format!("{NETNS_SETUP} && exec node --test --test-reporter=spec tests/")])
        .current_dir(&web)
        .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
        .env("SLUICE_EDGE_BIN", &edge)
        .env("SLUICE_EDGE_AARCH64", &edge_aarch64)
        .env("SLUICE_TEST_PLUGINS", env!("SLUICE_TEST_PLUGINS"))
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "browser tests failed (see output above); unshare needs root or CAP_SYS_ADMIN");
    assert!(stdout.contains("pass") && !stdout.contains("✖"), "{stdout}");
}
