//! The demo clip as a real decoder sees it: ffprobe reads the embedded file, and the demo source hands out
//! exactly the frames ffprobe counts, keyframes where ffprobe finds them.

use std::path::Path;
use std::process::Command;

#[test]
fn ffprobe_agrees_with_the_demo_source() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.h264");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=key_frame", "-of", "json"])
        .arg(&clip)
        .output()
        .expect("ffprobe (installed by .ci/test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let keyframes: Vec<bool> =
        probe["frames"].as_array().expect("frames").iter().map(|f| f["key_frame"] == 1).collect();
    let demo = sluice::ingest::demo::clip();
    assert_eq!(keyframes.len(), demo.frames.len());
    assert_eq!(keyframes, demo.frames.iter().map(|(_, key)| *key).collect::<Vec<_>>());
}
