//! Imports go one way. `lib.rs` lists the layers; this test reads `router/src` and fails when a module uses one
//! it may not (an upward import is how cycles start), when a new top-level module has no place in the table, or
//! when an upward import listed as known is gone (so the list only shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `router/src` and the modules it may use, lowest layers first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("media", &[]),
    ("backoff", &[]),
    ("logging", &[]),
    ("config", &["media"]),
    // Codec conversions of route frames (AAC -> Opus): pure frames in, frames out.
    ("transcode", &["media"]),
    ("route", &["config", "media", "transcode"]),
    ("connections", &["config"]),
    ("credentials", &["config"]),
    // `sluice import`: other servers' configs into routes files, checked by the config layer.
    ("import", &["config", "credentials"]),
    ("plugin", &["config", "media"]),
    ("auth", &["config", "connections", "plugin"]),
    ("recording", &["config", "media", "plugin"]),
    ("admit", &["auth", "config", "plugin", "route"]),
    // Protocol cores: what every path of a protocol shares, with no notion of admission.
    ("webrtc", &["config", "connections", "media", "route", "transcode"]),
    ("rtmp", &["connections", "media", "route"]),
    ("rtsp", &["media"]),
    // The data path: sources into routes, outputs out of them. Neither knows the other.
    ("ingest", &["admit", "backoff", "config", "connections", "media", "route", "rtmp", "rtsp", "webrtc"]),
    ("egress", &["admit", "backoff", "config", "connections", "media", "plugin", "route", "rtmp", "rtsp", "webrtc"]),
    ("runtime", &["admit", "auth", "backoff", "config", "egress", "ingest", "media", "plugin", "recording", "route"]),
    // Drivers of ports where one connection may publish or play: they admit it and hand it to ingest or egress.
    ("listen", &["admit", "auth", "config", "connections", "egress", "ingest", "media", "route", "rtmp", "rtsp"]),
    // Signaling transports feeding signaling plugins, which start WebRTC sessions as WHIP/WHEP do.
    ("signal", &["admit", "auth", "config", "egress", "ingest", "plugin", "route", "runtime", "webrtc"]),
    ("accounts", &["auth", "config", "credentials", "route", "runtime"]),
    (
        "api",
        &[
            "accounts",
            "admit",
            "auth",
            "config",
            "connections",
            "credentials",
            "egress",
            "ingest",
            "media",
            "plugin",
            "recording",
            "route",
            "runtime",
            "signal",
            "webrtc",
        ],
    ),
    // The top: it starts everything.
    ("server", &["*"]),
];

/// Upward imports that exist today and are to go with issue 19's re-layering: (from, to, why it is there).
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = rel.iter().next().and_then(|c| c.to_str()).expect("a path").trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for target in crate_references(&text) {
            if target != module {
                used.entry(module.clone()).or_default().insert(target);
            }
        }
        used.entry(module).or_default();
    }

    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, targets) in &used {
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!("`{module}` has no place in the layering table of tests/layering.rs (and lib.rs)"));
            continue;
        };
        for target in targets {
            let known = KNOWN_UPWARD.iter().any(|(f, t, _)| f == module && t == target);
            if !may.contains(&target.as_str()) && !may.contains(&"*") && !known {
                problems.push(format!("`{module}` uses `{target}`, which its layer may not"));
            }
        }
    }
    for (from, to, why) in KNOWN_UPWARD {
        if !used.get(*from).is_some_and(|t| t.contains(*to)) {
            problems.push(format!("`{from}` no longer uses `{to}` ({why}): remove it from KNOWN_UPWARD"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules a source names as `crate::NAME` (or inside `crate::{...}`), outside comments and the
/// unit tests at its end (tests may reach anywhere).
fn crate_references(text: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests"))
        .unwrap_or(lines.len());
    let mut found = BTreeSet::new();
    for line in &lines[..end] {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                found.extend(inner.split(',').filter_map(|item| ident(item.trim())));
            } else if let Some(name) = ident(rest) {
                found.insert(name);
            }
        }
    }
    found
}

fn ident(s: &str) -> Option<String> {
    let name: String = s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

#[test]
fn references_are_read_from_code_not_comments_or_tests() {
    let text = "use crate::route::RouteHandle;\nuse crate::{config, media::Frame};\n// crate::api in a comment\n\
        fn f() { crate::backoff::next(); }\n#[cfg(test)]\nmod tests {\n    use crate::server;\n}\n";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["backoff", "config", "media", "route"]);
}
