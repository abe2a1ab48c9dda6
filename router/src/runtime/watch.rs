//! Reload triggers outside the API: changes to the routes file and SIGHUP.
//!
//! The watcher watches the file's directory, not the file: editors save by writing a temporary file and renaming
//! it over the original, which replaces the inode a file watch would be attached to.

use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{ReloadTrigger, Runtime, WATCH_SETTLE};

/// Keeps the OS watch alive; dropping it stops watching.
#[derive(Debug)]
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `path`'s directory and reloading `runtime` when the file changes.
pub fn watch_file(path: &Path, runtime: Runtime) -> notify::Result<FileWatch> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_os_string());
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
            && event.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        if relevant {
            // A full channel means a reload is already pending; that one will read the newest file.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let the editor finish (write, rename, chmod) so we read the file once, complete.
            tokio::time::sleep(WATCH_SETTLE).await;
            while rx.try_recv().is_ok() {}
            runtime.reload(ReloadTrigger::FileChange).await;
        }
    });
    Ok(FileWatch { _watcher: watcher })
}

/// Reloads on every SIGHUP until the process ends.
pub fn reload_on_sighup(runtime: Runtime) -> std::io::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the routes file");
            runtime.request_reload(ReloadTrigger::Signal);
        }
    });
    Ok(())
}
