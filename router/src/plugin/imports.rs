//! What a component claims to be and what it asks for, checked before it may run: which world it implements,
//! which version of `sluice:plugin` it was built for, and whether every import is something it was granted.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PLUGIN_API_VERSION;
use crate::config::model::{PluginConfig, PluginGrants, PluginWorld};

#[derive(Debug, PartialEq, Eq)]
pub struct Inspected {
    pub world: PluginWorld,
}

pub fn inspect(engine: &Engine, component: &Component, config: &PluginConfig) -> Result<Inspected, String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    check_names(&exports, &imports, &config.grants)
}

/// The checks on import and export names alone (kept apart from wasmtime so they are unit-tested).
fn check_names(exports: &[String], imports: &[String], grants: &PluginGrants) -> Result<Inspected, String> {
    check_version(exports.iter().chain(imports))?;
    let world = world_of(exports)?;
    for import in imports {
        check_import(import, world, grants)?;
    }
    Ok(Inspected { world })
}

/// Splits `sluice:plugin/host@0.1.0` into (`sluice:plugin/host`, `0.1.0`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

/// Semver compatibility as the component model has it: same major, or for 0.x the same minor.
fn compatible(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<String> { v.split(['.', '-', '+']).take(2).map(str::to_string).collect() };
    let (a, b) = (parts(a), parts(b));
    match (a.first(), b.first()) {
        (Some(ma), Some(mb)) if ma == "0" && mb == "0" => a.get(1) == b.get(1),
        (Some(ma), Some(mb)) => ma == mb,
        _ => false,
    }
}

fn check_version<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), String> {
    for name in names {
        let (base, version) = split_version(name);
        if !base.starts_with("sluice:plugin/") {
            continue;
        }
        match version {
            Some(v) if compatible(v, PLUGIN_API_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "it was built for sluice:plugin@{v} ({name}); this router hosts sluice:plugin@{PLUGIN_API_VERSION}: \
                     rebuild the plugin with a sluice-sdk for {PLUGIN_API_VERSION}"
                ));
            }
            None => return Err(format!("{name} carries no version; rebuild the plugin with sluice-sdk")),
        }
    }
    Ok(())
}

pub(super) fn world_of(exports: &[String]) -> Result<PluginWorld, String> {
    let mut worlds = exports.iter().filter_map(|e| match split_version(e).0 {
        "sluice:plugin/authorizer" => Some(PluginWorld::Auth),
        "sluice:plugin/recorder-api" => Some(PluginWorld::Sink),
        "sluice:plugin/signaling-adapter" => Some(PluginWorld::Signaling),
        _ => None,
    });
    match (worlds.next(), worlds.next()) {
        (Some(w), None) => Ok(w),
        (Some(_), Some(_)) => Err("it implements more than one world; a plugin is auth, sink or signaling".into()),
        (None, _) => Err(format!(
            "it exports none of sluice:plugin's interfaces (authorizer, recorder-api, signaling-adapter){}; build it \
             with sluice-sdk",
            if exports.is_empty() { String::new() } else { format!(", only {}", exports.join(", ")) }
        )),
    }
}

/// WASI interfaces every plugin may import. They are linked to an empty context: no environment (unless
/// `grants.env`), no preopened directories (so `wasi:filesystem` reaches nothing), stdin closed, stdout
/// discarded, stderr into the router's stderr; clocks and randomness are harmless. Rust's std imports these.
const WASI_ALLOWED: [&str; 5] = ["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/"];

fn check_import(name: &str, world: PluginWorld, grants: &PluginGrants) -> Result<(), String> {
    let (base, _) = split_version(name);
    let refused = |why: &str| Err(format!("it imports {name}, {why}"));
    match base {
        // `host` is for everyone; `auth-types` and `media` hold only types.
        "sluice:plugin/host" | "sluice:plugin/auth-types" | "sluice:plugin/media" => Ok(()),
        "sluice:plugin/storage" if world != PluginWorld::Sink => refused("which only sink plugins may use"),
        "sluice:plugin/storage" if grants.storage.is_none() => {
            refused("but it has no `grants.storage`: add grants = { storage = { dir = \"recordings\" } }")
        }
        "sluice:plugin/storage" => Ok(()),
        "sluice:plugin/signaling-host" if world == PluginWorld::Signaling => Ok(()),
        "sluice:plugin/signaling-host" => refused("which only signaling plugins may use"),
        _ if WASI_ALLOWED.iter().any(|p| base.starts_with(p)) => Ok(()),
        _ if base.starts_with("wasi:sockets/") || base.starts_with("wasi:http/") => {
            refused("which it was not granted: plugins get no network access")
        }
        _ => refused("which the router does not provide"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::model::StorageGrant;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const RUST_STD_IMPORTS: [&str; 6] = [
        "wasi:cli/environment@0.2.6",
        "wasi:cli/exit@0.2.6",
        "wasi:io/error@0.2.6",
        "wasi:io/streams@0.2.6",
        "wasi:clocks/wall-clock@0.2.6",
        "wasi:filesystem/preopens@0.2.6",
    ];

    #[test]
    fn an_auth_plugin_with_std_imports_is_accepted() {
        let mut imports = names(&RUST_STD_IMPORTS);
        imports.push("sluice:plugin/host@0.1.0".into());
        let got = check_names(&names(&["sluice:plugin/authorizer@0.1.0"]), &imports, &PluginGrants::default());
        assert_eq!(got, Ok(Inspected { world: PluginWorld::Auth }));
    }

    #[test]
    fn network_and_unknown_imports_are_refused_by_name() {
        let exports = names(&["sluice:plugin/authorizer@0.1.0"]);
        let e = check_names(&exports, &names(&["wasi:sockets/tcp@0.2.6"]), &PluginGrants::default());
        assert_eq!(
            e,
            Err("it imports wasi:sockets/tcp@0.2.6, which it was not granted: plugins get no network access".into())
        );
        let e = check_names(&exports, &names(&["acme:db/query@1.0.0"]), &PluginGrants::default());
        assert_eq!(e, Err("it imports acme:db/query@1.0.0, which the router does not provide".into()));
    }

    #[test]
    fn storage_needs_a_sink_and_a_grant() {
        let storage = names(&["sluice:plugin/storage@0.1.0"]);
        let sink = names(&["sluice:plugin/recorder-api@0.1.0"]);
        let e = check_names(&sink, &storage, &PluginGrants::default()).expect_err("no grant");
        assert!(e.contains("has no `grants.storage`"), "{e}");
        let granted = PluginGrants {
            storage: Some(StorageGrant { dir: PathBuf::from("rec"), quota_bytes: None, max_age: None }),
            ..PluginGrants::default()
        };
        assert_eq!(check_names(&sink, &storage, &granted), Ok(Inspected { world: PluginWorld::Sink }));
        let auth = names(&["sluice:plugin/authorizer@0.1.0"]);
        let e = check_names(&auth, &storage, &granted).expect_err("auth with storage");
        assert!(e.contains("only sink plugins"), "{e}");
    }

    #[test]
    fn other_interface_versions_are_refused_clearly() {
        let e = check_names(&names(&["sluice:plugin/authorizer@1.0.0"]), &[], &PluginGrants::default());
        assert_eq!(
            e,
            Err("it was built for sluice:plugin@1.0.0 (sluice:plugin/authorizer@1.0.0); this router hosts \
                 sluice:plugin@0.1.0: rebuild the plugin with a sluice-sdk for 0.1.0"
                .into())
        );
        assert!(check_names(&names(&["sluice:plugin/authorizer@0.2.0"]), &[], &PluginGrants::default()).is_err());
        assert!(check_names(&names(&["sluice:plugin/authorizer@0.1.7"]), &[], &PluginGrants::default()).is_ok());
    }

    #[test]
    fn a_component_without_our_exports_is_explained() {
        let e = check_names(&names(&["wasi:cli/run@0.2.6"]), &[], &PluginGrants::default()).expect_err("no world");
        assert!(e.contains("exports none of sluice:plugin's interfaces"), "{e}");
        assert!(e.ends_with("only wasi:cli/run@0.2.6; build it with sluice-sdk"), "{e}");
    }
}
