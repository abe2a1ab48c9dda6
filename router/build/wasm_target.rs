//! Makes sure the wasm32-wasip2 target is there before the plugins are built for it.
//!
//! `rust-toolchain.toml` lists the target, but rustup honours that list only when it installs the toolchain: a
//! machine that already had the pinned toolchain gets no target, and the first build failed deep inside cargo with
//! "can't find crate for `core`" (issue 18). So the build script looks for the target in the sysroot, adds it with
//! rustup when rustup is there, and otherwise stops with one line naming the command to run.
//!
//! Shared by the build script (`build/plugins.rs`) and the router's unit tests (`lib.rs`), which test [`plan`].

use std::path::Path;
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// What the build does about the target, decided from what it found.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The target's standard library is in the sysroot.
    Ready,
    /// Missing, and rustup can add it: run this rustup with these arguments.
    Install { args: Vec<String> },
    /// Missing and nothing here can add it: stop with this one line.
    Fail(String),
}

/// The decision, pure: `installed` is whether the sysroot has the target, `rustup` whether a rustup answered,
/// `toolchain` the toolchain rustup is building with (`RUSTUP_TOOLCHAIN`), so the target goes to that one and not
/// to rustup's default.
pub fn plan(installed: bool, rustup: bool, toolchain: Option<&str>) -> Plan {
    if installed {
        return Plan::Ready;
    }
    if !rustup {
        return Plan::Fail(format!(
            "the {WASM_TARGET} target is not installed for this Rust toolchain and there is no rustup to add it: \
             install it (with rustup: `rustup target add {WASM_TARGET}`), then build again"
        ));
    }
    let mut args = vec!["target".to_string(), "add".to_string(), WASM_TARGET.to_string()];
    if let Some(toolchain) = toolchain.filter(|t| !t.is_empty()) {
        args.push("--toolchain".into());
        args.push(toolchain.into());
    }
    Plan::Install { args }
}

/// Whether `sysroot` holds the target's standard library.
pub fn installed_in(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib").is_dir()
}

/// Looks, decides and acts. Returns an error line for the build script to stop with.
pub fn ensure(rustc: &str) -> Result<(), String> {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running `{rustc} --print sysroot`: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let installed = installed_in(Path::new(&sysroot));
    let rustup = !installed && Command::new("rustup").arg("--version").output().is_ok_and(|o| o.status.success());
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    match plan(installed, rustup, toolchain.as_deref()) {
        Plan::Ready => Ok(()),
        Plan::Fail(line) => Err(line),
        Plan::Install { args } => {
            // Cargo shows a build script's warnings: this is the one line a newcomer sees about it.
            println!(
                "cargo:warning=adding the {WASM_TARGET} target the built-in plugins compile to: rustup {}",
                args.join(" ")
            );
            let status = Command::new("rustup").args(&args).status().map_err(|e| format!("running rustup: {e}"))?;
            if status.success() && installed_in(Path::new(&sysroot)) {
                Ok(())
            } else {
                Err(format!("`rustup {}` failed (see above): run it by hand, then build again", args.join(" ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_target_needs_nothing() {
        assert_eq!(plan(true, true, Some("1.95.0")), Plan::Ready);
        assert_eq!(plan(true, false, None), Plan::Ready);
    }

    #[test]
    fn a_missing_target_is_added_to_the_toolchain_in_use() {
        assert_eq!(
            plan(false, true, Some("1.95.0-x86_64-unknown-linux-gnu")),
            Plan::Install {
                args: ["target", "add", "wasm32-wasip2", "--toolchain", "1.95.0-x86_64-unknown-linux-gnu"]
                    .map(String::from)
                    .to_vec()
            }
        );
        assert_eq!(
            plan(false, true, None),
            Plan::Install { args: ["target", "add", "wasm32-wasip2"].map(String::from).to_vec() }
        );
    }

    #[test]
    fn without_rustup_the_build_stops_naming_the_command() {
        let Plan::Fail(line) = plan(false, false, None) else { panic!("expected a failure") };
        assert!(line.contains("`rustup target add wasm32-wasip2`"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn the_sysroot_check_looks_for_the_target_library() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!installed_in(dir.path()));
        std::fs::create_dir_all(dir.path().join("lib/rustlib/wasm32-wasip2/lib")).expect("mkdir");
        assert!(installed_in(dir.path()));
    }
}
