//! The recordings index: one SQLite row per committed file (route, wall-clock start, duration, size, codecs,
//! where it is), in the router's database (`sluice_store`, queries on its own thread). The files are the truth;
//! the index is rebuilt from them at start ([`Index::rebuild`]) and kept current by the storage's commit and
//! delete notifications ([`run_indexer`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sluice_store::{Store, StoreError};

use crate::config::model::RouteTable;
use tokio::sync::mpsc;

use super::probe;
use crate::plugin::storage::{Change, Storage};

/// One recording file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recording {
    pub id: i64,
    pub route: String,
    /// Wall-clock time of the first sample, ms since the Unix epoch.
    pub start_ms: i64,
    pub duration_ms: i64,
    pub size: i64,
    /// Codecs by track, comma-separated ("h264,aac").
    pub codecs: String,
    /// Relative to the storage directory.
    pub path: String,
    #[serde(skip)]
    pub root: PathBuf,
}

impl Recording {
    pub fn end_ms(&self) -> i64 {
        self.start_ms.saturating_add(self.duration_ms)
    }

    pub fn file(&self) -> PathBuf {
        self.root.join(&self.path)
    }
}

/// What went wrong with the index, with the file or database it concerns.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the recordings index: {0}")]
    Store(#[from] StoreError),
    #[error("{}: {source}", .path.display())]
    File { path: PathBuf, source: std::io::Error },
    /// The file is not a recording the index can read.
    #[error("{}: {source}", .path.display())]
    Unreadable { path: PathBuf, source: super::probe::ProbeError },
    #[error("listing {}: {source}", .dir.display())]
    Listing { dir: PathBuf, source: crate::plugin::storage::StorageError },
}

/// The recordings table of the router's database.
#[derive(Debug)]
pub struct Index {
    store: Store,
    /// The routes in force: a file found on disk is filed under the longest leading folders that name one of
    /// them (or a name a template matches): `cameras/7/2026-...mp4` is route `cameras/7`.
    table: std::sync::RwLock<Option<Arc<RouteTable>>>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS recordings (
        id INTEGER PRIMARY KEY,
        root TEXT NOT NULL,
        path TEXT NOT NULL,
        route TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        size INTEGER NOT NULL,
        codecs TEXT NOT NULL,
        UNIQUE (root, path)
    );
    CREATE INDEX IF NOT EXISTS recordings_by_route_start ON recordings (route, start_ms);";

const COLUMNS: &str = "id, route, start_ms, duration_ms, size, codecs, path, root";

impl Index {
    /// The index in `store`, its table created if missing. Blocking: call it off the async threads.
    pub fn open(store: Store) -> Result<Arc<Index>, IndexError> {
        store.call_blocking(|c| c.execute_batch(SCHEMA))?;
        Ok(Arc::new(Index { store, table: std::sync::RwLock::new(None) }))
    }

    /// The database the index lives in (other parts of the router keep their tables there too).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// An index held in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Arc<Index>, IndexError> {
        Index::open(Store::in_memory()?)
    }

    /// Probes the committed file `path` under `root` and records it; `route` defaults to the first folder of
    /// the path (how the default name template files recordings). Returns the route it was filed under.
    pub fn add(&self, root: &Path, path: &str, route: Option<&str>) -> Result<String, IndexError> {
        let full = root.join(path);
        let meta = std::fs::metadata(&full).map_err(|source| IndexError::File { path: full.clone(), source })?;
        let probed = probe::probe(&full).map_err(|source| IndexError::Unreadable { path: full.clone(), source })?;
        // Clamped: the file was written by a plugin, and a wild timestamp must not overflow the arithmetic below.
        let duration_ms = (probed.duration * 1000.0).round().clamp(0.0, 1e12) as i64;
        let start_ms = match probed.start_ms {
            Some(ms) => ms.min(1 << 50) as i64,
            // No prft: the file was last written when its last sample arrived.
            None => {
                let modified = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
                    .saturating_sub(duration_ms)
            }
        };
        let route = match route {
            Some(route) => route.to_string(),
            None => self.route_of(path),
        };
        let (root_text, path, filed_as) = (root.to_string_lossy().into_owned(), path.to_string(), route.clone());
        let (size, codecs) = (meta.len() as i64, probed.codecs.join(","));
        self.store.call_blocking(move |c| {
            c.execute(
                "INSERT INTO recordings (root, path, route, start_ms, duration_ms, size, codecs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (root, path) DO UPDATE SET route = ?3, start_ms = ?4, duration_ms = ?5, size = ?6,
                     codecs = ?7",
                params![root_text, path, filed_as, start_ms, duration_ms, size, codecs],
            )
        })?;
        Ok(route)
    }

    /// Forgets a file. Blocking, like [`add`](Self::add).
    pub fn remove(&self, root: &Path, path: &str) -> Result<(), IndexError> {
        let (root, path) = (root.to_string_lossy().into_owned(), path.to_string());
        self.store.call_blocking(move |c| {
            c.execute("DELETE FROM recordings WHERE root = ?1 AND path = ?2", params![root, path])
        })?;
        Ok(())
    }

    /// Makes the rows of `storage`'s directory match its committed files: rows of missing files go, files
    /// without a row (or whose size changed) are probed and added. Returns (added, removed).
    pub fn rebuild(&self, storage: &Storage) -> Result<(usize, usize), IndexError> {
        let root = storage.root();
        // Rows first, files second: a file committed in between is then on disk and keeps its row.
        let root_text = root.to_string_lossy().into_owned();
        let known: Vec<(String, i64)> = self.store.call_blocking(move |c| {
            let mut stmt = c.prepare("SELECT path, size FROM recordings WHERE root = ?1")?;
            let rows = stmt.query_map(params![root_text], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let files = storage.list("").map_err(|source| IndexError::Listing { dir: root.to_path_buf(), source })?;
        let on_disk: std::collections::HashMap<&str, u64> = files.iter().map(|(p, e)| (p.as_str(), e.size)).collect();
        let mut removed = 0;
        for (path, _) in known.iter().filter(|(p, _)| !on_disk.contains_key(p.as_str())) {
            self.remove(root, path)?;
            removed += 1;
        }
        let mut added = 0;
        for (path, size) in &on_disk {
            if known.iter().any(|(p, s)| p == path && *s as u64 == *size) {
                continue;
            }
            match self.add(root, path, None) {
                Ok(_) => added += 1,
                Err(e) => tracing::warn!(path, error = %e, "not indexed: unreadable as a recording"),
            }
        }
        Ok((added, removed))
    }

    /// Uses `table` to tell which route a file found on disk belongs to.
    pub fn use_table(&self, table: Arc<RouteTable>) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Some(table);
    }

    /// The route a file at `path` was recorded from: its longest leading folders that name a route (or that a
    /// template matches), else its first folder (how the default name template files recordings).
    fn route_of(&self, path: &str) -> String {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        let folders: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
        let known = |name: &str| {
            table
                .as_ref()
                .is_some_and(|t| t.routes.iter().any(|r| r.name.as_str() == name) || t.template_for(name).is_some())
        };
        folders
            .iter()
            .rev()
            .map(|&end| &path[..end])
            .find(|name| known(name))
            .unwrap_or_else(|| path.split('/').next().unwrap_or(path))
            .to_string()
    }

    /// Recordings of `route` (all when `None`) overlapping [from_ms, to_ms), oldest first.
    /// Recordings of `route` (all when `None`) overlapping `[from_ms, to_ms)`, oldest first, at most 10,000.
    pub async fn query(
        &self,
        route: Option<String>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Recording>, IndexError> {
        let found = self
            .store
            .call(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM recordings
                         WHERE (?1 IS NULL OR route = ?1) AND (?2 IS NULL OR start_ms + duration_ms > ?2)
                           AND (?3 IS NULL OR start_ms < ?3)
                         ORDER BY start_ms, id LIMIT 10000"
                ))?;
                let rows = stmt.query_map(params![route, from_ms, to_ms], row)?;
                rows.collect()
            })
            .await?;
        Ok(found)
    }

    pub async fn get(&self, id: i64) -> Result<Option<Recording>, IndexError> {
        let found = self
            .store
            .call(move |c| {
                c.query_row(&format!("SELECT {COLUMNS} FROM recordings WHERE id = ?1"), params![id], row).optional()
            })
            .await?;
        Ok(found)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Recording> {
    Ok(Recording {
        id: r.get(0)?,
        route: r.get(1)?,
        start_ms: r.get(2)?,
        duration_ms: r.get(3)?,
        size: r.get(4)?,
        codecs: r.get(5)?,
        path: r.get(6)?,
        root: PathBuf::from(r.get::<_, String>(7)?),
    })
}

/// Applies storage changes to the index as they happen (probing files off the async threads).
pub async fn run_indexer(index: Arc<Index>, mut changes: mpsc::UnboundedReceiver<Change>) {
    while let Some(change) = changes.recv().await {
        let index = Arc::clone(&index);
        let done = tokio::task::spawn_blocking(move || match &change {
            Change::Committed { root, path, route } => index.add(root, path, route.as_deref()).map(|route| {
                tracing::info!(path, route, dir = %root.display(), "recording indexed");
            }),
            Change::Removed { root, path } => index.remove(root, path),
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "recordings index not updated"),
            Err(e) => tracing::error!(error = %e, "recordings indexer task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_found_on_disk_is_filed_under_the_route_its_folders_name() {
        let index = Index::in_memory().expect("index");
        assert_eq!(index.route_of("cameras/7/2026-12-04_10-00-00.mp4"), "cameras", "no table yet: the first folder");
        let table = crate::config::parse(
            "[[route]]\nname = \"cameras/*\"\nfrom = \"rtmp\"\nto = [\"whep\"]\n\n\
             [[route]]\nname = \"door\"\nfrom = \"whip\"\nto = [\"whep\"]\n",
            "routes.toml",
            &|_| None,
        )
        .expect("valid");
        index.use_table(Arc::new(table));
        assert_eq!(index.route_of("cameras/7/2026-12-04_10-00-00.mp4"), "cameras/7");
        assert_eq!(index.route_of("door/2026-12-04_10-00-00.mp4"), "door");
        assert_eq!(index.route_of("gone/2026/12/04/10-00-00.mp4"), "gone", "a route no longer configured");
    }
}
