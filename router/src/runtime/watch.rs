//! Reload triggers outside the API: changes to the routes file or to a plugin's .wasm file, and SIGHUP.
//!
//! The watcher watches the files' directories, not the files: editors save (and builds write) by writing a
//! temporary file and renaming it over the original, which replaces the inode a file watch would be attached to.
//! The set of plugin files follows the configuration: after each reload the new files' directories are watched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{ReloadTrigger, Runtime, WATCH_SETTLE, WATCH_SETTLE_MAX};
use crate::plugin::Plugins;

/// Keeps the OS watch alive; dropping it stops watching.
#[derive(Debug)]
pub struct FileWatch {
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// Starts watching `path` and the plugin files it names, reloading `runtime` when one changes.
pub fn watch_file(path: &Path, runtime: Runtime) -> notify::Result<FileWatch> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let files: Arc<Mutex<HashSet<PathBuf>>> = Arc::new(Mutex::new(HashSet::from([path.clone()])));
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let matcher = Arc::clone(&files);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let watched = matcher.lock().unwrap_or_else(|p| p.into_inner());
        let relevant = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
            && event.paths.iter().any(|p| watched.contains(p));
        if relevant {
            // A full channel means a reload is already pending; that one will read the newest files.
            let _ = tx.try_send(());
        }
    })?;
    let mut dirs = HashSet::new();
    watch_dir(&mut watcher, &mut dirs, &path)?;
    let mut directory = runtime.subscribe();
    let task = tokio::spawn(async move {
        loop {
            // Follow the plugin files of the configuration in force.
            let wanted = {
                let dir = directory.borrow_and_update();
                let mut wanted = Plugins::files(&dir.table.plugins);
                wanted.push(path.clone());
                wanted
            };
            for file in &wanted {
                if let Err(e) = watch_dir(&mut watcher, &mut dirs, file) {
                    tracing::warn!(file = %file.display(), error = %e, "cannot watch a plugin file for changes");
                }
            }
            *files.lock().unwrap_or_else(|p| p.into_inner()) = wanted.into_iter().collect();
            tokio::select! {
                changed = directory.changed() => if changed.is_err() { return },
                event = rx.recv() => {
                    if event.is_none() {
                        return;
                    }
                    // Let the editor (or cargo) finish writing so the files are read once, complete: wait until
                    // the files have been quiet for WATCH_SETTLE (at most WATCH_SETTLE_MAX in all).
                    let give_up = tokio::time::Instant::now() + WATCH_SETTLE_MAX;
                    while let Ok(Some(())) = tokio::time::timeout_at(
                        give_up.min(tokio::time::Instant::now() + WATCH_SETTLE),
                        rx.recv(),
                    )
                    .await
                    {}
                    runtime.reload(ReloadTrigger::FileChange).await;
                }
            }
        }
    });
    Ok(FileWatch { _task: task })
}

fn watch_dir(watcher: &mut notify::RecommendedWatcher, dirs: &mut HashSet<PathBuf>, file: &Path) -> notify::Result<()> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    if !dirs.contains(&dir) {
        // Recorded only once the watch is in place, so a failed one is tried again after the next reload.
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        dirs.insert(dir);
    }
    Ok(())
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
