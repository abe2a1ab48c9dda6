//! The directory a sink plugin may write to (`grants.storage`): paths confined to it, a quota, files written
//! under a temporary name and renamed into place by `commit`, and the bookkeeping retention and the index need.
//!
//! One [`Storage`] per directory for the router ([`Storages::open`]), shared by every recorder writing there and
//! by every version of the plugin a reload brings, so usage is counted once. The [`Storages`] registry belongs to
//! whoever runs the plugins (the runtime; a test its own), and sends commits and deletions to the recordings
//! index when it was made with a channel for them.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

/// What an uncommitted file is called on disk: `<path>.partial`. Never listed, never deleted by retention.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// The longest relative path a plugin may use.
const MAX_PATH: usize = 512;
/// The most one `read-at` returns.
const MAX_READ: u32 = 16 << 20;
/// Under quota pressure, room is made down to this share of the quota, so deletions come in batches rather
/// than one per write.
const QUOTA_LOW_WATER: f64 = 0.9;
/// Files being written at once in one directory: bounds file descriptors a plugin can hold.
const MAX_OPEN_FILES: usize = 4096;

/// Why a storage call failed; maps one to one onto the WIT `storage-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("quota exceeded")]
    QuotaExceeded,
    #[error("not found")]
    NotFound,
    #[error("file already committed")]
    Closed,
    #[error("{0}")]
    Io(String),
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound { StorageError::NotFound } else { StorageError::Io(e.to_string()) }
    }
}

/// A committed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub size: u64,
    pub modified: SystemTime,
}

/// What changed in a storage directory, for the recordings index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file was committed; `route` is the route whose recorder wrote it (`None` when repaired after a crash).
    Committed {
        root: PathBuf,
        path: String,
        route: Option<String>,
    },
    Removed {
        root: PathBuf,
        path: String,
    },
}

#[derive(Debug, Default)]
struct State {
    committed: BTreeMap<String, Entry>,
    /// Uncommitted files and their sizes.
    partial: BTreeMap<String, u64>,
    /// Uncommitted files a live handle is writing: recovery must leave them alone.
    open: HashSet<String>,
    used: u64,
    quota: Option<u64>,
    max_age: Option<Duration>,
}

/// A granted directory.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    state: Mutex<State>,
    changes: Option<mpsc::UnboundedSender<Change>>,
}

/// Every storage directory one router opened, by canonical directory, and where their changes go.
#[derive(Debug, Default)]
pub struct Storages {
    open: Mutex<BTreeMap<PathBuf, Arc<Storage>>>,
    changes: Option<mpsc::UnboundedSender<Change>>,
}

impl Storages {
    /// A registry whose storages report every commit and deletion to `changes` (the recordings index).
    pub fn reporting_to(changes: mpsc::UnboundedSender<Change>) -> Storages {
        Storages { open: Mutex::default(), changes: Some(changes) }
    }

    /// The storage of `dir` (created if missing), shared by every plugin granted it; `quota` and `max_age` are
    /// updated to the latest grant.
    pub fn open(&self, dir: &Path, quota: Option<u64>, max_age: Option<Duration>) -> Result<Arc<Storage>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let root = dir.canonicalize().map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = open.get(&root) {
            let mut state = s.lock();
            state.quota = quota;
            state.max_age = max_age;
            return Ok(Arc::clone(s));
        }
        let mut state = State { quota, max_age, ..State::default() };
        scan(&root, &root, &mut state).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
        let storage = Arc::new(Storage { root: root.clone(), state: Mutex::new(state), changes: self.changes.clone() });
        open.insert(root, Arc::clone(&storage));
        Ok(storage)
    }

    /// Every storage opened so far (for retention).
    pub fn all(&self) -> Vec<Arc<Storage>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

impl Storage {
    /// Reports a change to the index, if this storage's registry has one.
    fn notify(&self, change: Change) {
        if let Some(tx) = &self.changes {
            let _ = tx.send(change);
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The absolute path of a committed file, after checking `path`.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, StorageError> {
        check_path(path)?;
        let mut full = self.root.clone();
        for part in path.split('/') {
            full.push(part);
            // A symbolic link anywhere on the way could lead outside the directory.
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StorageError::InvalidPath(format!("{path}: {part} is a symbolic link")));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(full)
    }

    /// Starts a new file at `path`, under its temporary name.
    pub fn create(self: &Arc<Self>, path: &str, owner: Option<String>) -> Result<OpenFile, StorageError> {
        let full = self.resolve(path)?;
        let temp = partial_name(&full);
        {
            // Claimed in one critical section: two creates of one name cannot both pass, and an unfinished file
            // waiting for `recover` is never overwritten (the plugin picks another name).
            let mut state = self.lock();
            if state.committed.contains_key(path) || state.partial.contains_key(path) || full.exists() {
                return Err(StorageError::Io(format!("{path} exists already")));
            }
            if state.open.len() >= MAX_OPEN_FILES {
                return Err(StorageError::Io(format!("more than {MAX_OPEN_FILES} files open in this directory")));
            }
            if !state.open.insert(path.to_string()) {
                return Err(StorageError::Io(format!("{path} is being written already")));
            }
        }
        let opened = (|| {
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if std::fs::symlink_metadata(&temp).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StorageError::InvalidPath(format!("{path}: its temporary name is a symbolic link")));
            }
            Ok(std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&temp)?)
        })();
        let mut state = self.lock();
        match opened {
            Ok(file) => {
                state.partial.insert(path.to_string(), 0);
                drop(state);
                Ok(OpenFile {
                    storage: Arc::clone(self),
                    path: path.to_string(),
                    temp,
                    file: Some(file),
                    size: 0,
                    owner,
                })
            }
            Err(e) => {
                state.open.remove(path);
                Err(e)
            }
        }
    }

    /// Reopens a file a crash left uncommitted.
    pub fn reopen(self: &Arc<Self>, path: &str) -> Result<OpenFile, StorageError> {
        let full = self.resolve(path)?;
        let temp = partial_name(&full);
        let mut state = self.lock();
        if !state.partial.contains_key(path) {
            return Err(StorageError::NotFound);
        }
        if !state.open.insert(path.to_string()) {
            return Err(StorageError::Io(format!("{path} is being written")));
        }
        drop(state);
        let opened = std::fs::OpenOptions::new().read(true).write(true).open(&temp).and_then(|f| {
            let size = f.metadata()?.len();
            Ok((f, size))
        });
        match opened {
            Ok((file, size)) => Ok(OpenFile {
                storage: Arc::clone(self),
                path: path.to_string(),
                temp,
                file: Some(file),
                size,
                owner: None,
            }),
            Err(e) => {
                self.lock().open.remove(path);
                Err(e.into())
            }
        }
    }

    /// Deletes a committed file, or (`partial_too`, during recovery) an uncommitted one nobody is writing.
    pub fn remove(&self, path: &str, partial_too: bool) -> Result<(), StorageError> {
        let full = self.resolve(path)?;
        let mut state = self.lock();
        if let Some(entry) = state.committed.remove(path) {
            state.used = state.used.saturating_sub(entry.size);
            drop(state);
            remove_file(&full)?;
            self.notify(Change::Removed { root: self.root.clone(), path: path.to_string() });
            return Ok(());
        }
        if partial_too
            && !state.open.contains(path)
            && let Some(size) = state.partial.remove(path)
        {
            state.used = state.used.saturating_sub(size);
            drop(state);
            return remove_file(&partial_name(&full));
        }
        Err(StorageError::NotFound)
    }

    /// Committed files under `dir` ("" for all), by path.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, Entry)>, StorageError> {
        let dir = dir.trim_end_matches('/');
        if !dir.is_empty() {
            check_path(dir)?;
        }
        let state = self.lock();
        Ok(state
            .committed
            .iter()
            .filter(|(p, _)| dir.is_empty() || p.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect())
    }

    /// Bytes in use (committed and uncommitted) and the quota.
    pub fn usage(&self) -> (u64, Option<u64>) {
        let state = self.lock();
        (state.used, state.quota)
    }

    /// Uncommitted files nobody is writing: what a crash left behind, for the plugin's `recover`.
    pub fn orphans(&self) -> Vec<String> {
        let state = self.lock();
        state.partial.keys().filter(|p| !state.open.contains(*p)).cloned().collect()
    }

    /// Deletes committed files older than `max_age` and, when over the quota, the oldest until under it.
    /// Uncommitted files (segments being written) are never deleted. Returns the paths deleted.
    pub fn enforce_retention(&self, now: SystemTime) -> Vec<String> {
        let (max_age, quota) = {
            let state = self.lock();
            (state.max_age, state.quota)
        };
        let mut deleted = Vec::new();
        if let Some(max_age) = max_age {
            let expired: Vec<String> = {
                let state = self.lock();
                state
                    .committed
                    .iter()
                    .filter(|(_, e)| now.duration_since(e.modified).is_ok_and(|age| age > max_age))
                    .map(|(p, _)| p.clone())
                    .collect()
            };
            for path in expired {
                if self.remove(&path, false).is_ok() {
                    deleted.push(path);
                }
            }
        }
        if let Some(quota) = quota {
            deleted.extend(self.make_room(quota, 0));
        }
        deleted
    }

    /// Deletes the oldest committed files until `needed` more bytes fit below `target`.
    fn make_room(&self, target: u64, needed: u64) -> Vec<String> {
        let mut deleted = Vec::new();
        loop {
            let oldest = {
                let state = self.lock();
                if state.used.saturating_add(needed) <= target {
                    break;
                }
                state.committed.iter().min_by_key(|(p, e)| (e.modified, (*p).clone())).map(|(p, _)| p.clone())
            };
            let Some(path) = oldest else { break };
            match self.remove(&path, false) {
                Ok(()) => {
                    tracing::info!(dir = %self.root.display(), path, "deleted the oldest recording to stay within the storage quota");
                    deleted.push(path);
                }
                Err(e) => {
                    tracing::warn!(dir = %self.root.display(), path, error = %e, "cannot delete for the storage quota");
                    break;
                }
            }
        }
        deleted
    }

    /// Accounts for `len` more bytes, deleting the oldest committed files first when they would not fit.
    fn reserve(&self, len: u64) -> Result<(), StorageError> {
        // Checked and counted under one lock, so concurrent writers cannot overshoot the quota together.
        let try_reserve = |s: &Storage| {
            let mut state = s.lock();
            match state.quota {
                Some(quota) if state.used.saturating_add(len) > quota => Err(quota),
                _ => {
                    state.used += len;
                    Ok(())
                }
            }
        };
        if let Err(quota) = try_reserve(self) {
            self.make_room((quota as f64 * QUOTA_LOW_WATER) as u64, len);
            try_reserve(self).map_err(|_| StorageError::QuotaExceeded)?;
        }
        Ok(())
    }

    fn release(&self, len: u64) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(len);
    }
}

/// A file being written: the host side of the WIT `file` resource.
#[derive(Debug)]
pub struct OpenFile {
    storage: Arc<Storage>,
    path: String,
    temp: PathBuf,
    /// `None` once committed.
    file: Option<File>,
    size: u64,
    /// The route whose recorder writes it (for the index).
    owner: Option<String>,
}

impl OpenFile {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn file(&self) -> Result<&File, StorageError> {
        self.file.as_ref().ok_or(StorageError::Closed)
    }

    pub fn append(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.append_all(&[data])
    }

    /// Appends `pieces` in order with one vectored write (a fragment's header and its samples, wherever they are).
    pub fn append_all(&mut self, pieces: &[&[u8]]) -> Result<(), StorageError> {
        let file = self.file()?;
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        self.storage.reserve(len)?;
        if let Err(e) = write_all_vectored_at(file, pieces, self.size) {
            // A short write leaves a torn tail past `size`: the next write overwrites it, recovery cuts it.
            self.storage.release(len);
            return Err(e.into());
        }
        self.size += len;
        self.storage.lock().partial.insert(self.path.clone(), self.size);
        Ok(())
    }

    /// Writes at `offset` (at most the current size: no holes), growing the file as needed.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let file = self.file()?;
        if offset > self.size {
            return Err(StorageError::Io(format!("write at {offset} is past the end ({})", self.size)));
        }
        let end = offset.saturating_add(data.len() as u64);
        let growth = end.saturating_sub(self.size);
        self.storage.reserve(growth)?;
        if let Err(e) = file.write_all_at(data, offset) {
            self.storage.release(growth);
            return Err(e.into());
        }
        self.size = self.size.max(end);
        self.storage.lock().partial.insert(self.path.clone(), self.size);
        Ok(())
    }

    pub fn read_at(&self, offset: u64, len: u32) -> Result<Vec<u8>, StorageError> {
        let file = self.file()?;
        let len = u64::from(len.min(MAX_READ)).min(self.size.saturating_sub(offset));
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        Ok(self.file()?.sync_data()?)
    }

    pub fn truncate(&mut self, size: u64) -> Result<(), StorageError> {
        let file = self.file()?;
        if size > self.size {
            return Err(StorageError::Io(format!("cannot truncate to {size}: the file has {} bytes", self.size)));
        }
        file.set_len(size)?;
        self.storage.release(self.size - size);
        self.size = size;
        self.storage.lock().partial.insert(self.path.clone(), size);
        Ok(())
    }

    /// Renames the file to its final name (durably: the file and then its directory are synced).
    pub fn commit(&mut self) -> Result<(), StorageError> {
        let full = self.storage.resolve(&self.path)?;
        let file = self.file.take().ok_or(StorageError::Closed)?;
        let result = (|| {
            file.sync_all()?;
            if full.exists() {
                return Err(StorageError::Io(format!("{} exists already", self.path)));
            }
            Ok(std::fs::rename(&self.temp, &full)?)
        })();
        if let Err(e) = result {
            self.file = Some(file);
            return Err(e);
        }
        // Renamed: committed whatever happens next; a directory that cannot be synced only weakens durability.
        if let Some(dir) = full.parent()
            && let Err(e) = File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(path = %full.display(), error = %e, "cannot sync the directory after a commit");
        }
        let modified = std::fs::metadata(&full).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
        let mut state = self.storage.lock();
        state.partial.remove(&self.path);
        state.open.remove(&self.path);
        state.committed.insert(self.path.clone(), Entry { size: self.size, modified });
        drop(state);
        self.storage.notify(Change::Committed {
            root: self.storage.root.clone(),
            path: self.path.clone(),
            route: self.owner.clone(),
        });
        Ok(())
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        // Left uncommitted (the recorder failed): the file stays for recovery.
        if self.file.is_some() {
            self.storage.lock().open.remove(&self.path);
        }
    }
}

/// Writes every byte of `pieces` at `offset`. The file's own position is used for nothing else (every other write
/// and read is positional), so seeking it is safe.
fn write_all_vectored_at(mut file: &File, pieces: &[&[u8]], offset: u64) -> io::Result<()> {
    use std::io::{IoSlice, Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Refuses anything that is not a plain relative path inside the directory.
fn check_path(path: &str) -> Result<(), StorageError> {
    let invalid = |why: &str| Err(StorageError::InvalidPath(format!("{path:?}: {why}")));
    if path.is_empty() {
        return invalid("empty");
    }
    if path.len() > MAX_PATH {
        return invalid("too long");
    }
    if path.starts_with('/') {
        return invalid("absolute paths are not allowed");
    }
    if path.contains(['\\', '\0']) {
        return invalid("contains a backslash or NUL");
    }
    if path.ends_with(PARTIAL_SUFFIX) {
        return invalid("names ending in .partial are reserved for files being written");
    }
    for part in path.split('/') {
        match part {
            "" => return invalid("empty path component"),
            "." | ".." => return invalid("`.` and `..` are not allowed"),
            _ => {}
        }
    }
    if Path::new(path).components().any(|c| !matches!(c, Component::Normal(_))) {
        return invalid("not a plain relative path");
    }
    Ok(())
}

fn partial_name(full: &Path) -> PathBuf {
    let mut name = full.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

fn remove_file(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Records every file under `dir` (not following symbolic links).
fn scan(root: &Path, dir: &Path, state: &mut State) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            scan(root, &entry.path(), state)?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root).map(|p| p.to_string_lossy().into_owned()) else { continue };
        let meta = entry.metadata()?;
        state.used += meta.len();
        match rel.strip_suffix(PARTIAL_SUFFIX) {
            Some(path) => {
                state.partial.insert(path.to_string(), meta.len());
            }
            None => {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                state.committed.insert(rel, Entry { size: meta.len(), modified });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(quota: Option<u64>) -> (tempfile::TempDir, Arc<Storage>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storages::default().open(dir.path(), quota, None).expect("open");
        (dir, s)
    }

    #[test]
    fn paths_stay_inside_the_directory() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\\b", "x.mp4.partial"] {
            assert!(matches!(check_path(bad), Err(StorageError::InvalidPath(_))), "{bad:?} accepted");
        }
        for good in ["a.mp4", "cams/front/2026-11-21_10-00-00.mp4", "..a", "a..b"] {
            assert_eq!(check_path(good), Ok(()), "{good:?} refused");
        }
    }

    #[test]
    fn a_symlink_inside_is_refused() {
        let (dir, s) = storage(None);
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        assert!(matches!(s.create("link/x.mp4", None), Err(StorageError::InvalidPath(_))));
        assert_eq!(std::fs::read_dir(outside.path()).expect("read").count(), 0);
    }

    #[test]
    fn files_appear_only_when_committed() {
        let (dir, s) = storage(None);
        let mut f = s.create("cam/a.mp4", Some("cam".into())).expect("create");
        f.append(b"hello").expect("append");
        f.write_at(0, b"J").expect("write_at");
        assert_eq!(f.read_at(0, 100).expect("read"), b"Jello");
        assert!(s.list("").expect("list").is_empty());
        assert!(dir.path().join("cam/a.mp4.partial").exists());
        f.commit().expect("commit");
        assert_eq!(f.append(b"x"), Err(StorageError::Closed));
        let listed = s.list("cam").expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "cam/a.mp4");
        assert_eq!(std::fs::read(dir.path().join("cam/a.mp4")).expect("read"), b"Jello");
        assert!(s.create("cam/a.mp4", None).is_err(), "a committed name is taken");
        assert_eq!(s.usage(), (5, None));
    }

    #[test]
    fn the_quota_deletes_oldest_committed_files_first_and_never_partial_ones() {
        let (_dir, s) = storage(Some(100));
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let mut f = s.create(name, None).expect("create");
            f.append(&[0; 30]).expect("append");
            f.commit().expect("commit");
            // Ages by modification time: make them distinct.
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            File::options().write(true).open(s.root().join(name)).and_then(|f| f.set_modified(t)).expect("mtime");
            s.lock().committed.get_mut(*name).expect("entry").modified = t;
        }
        let mut writing = s.create("d", None).expect("create");
        writing.append(&[0; 10]).expect("fits: 100");
        writing.append(&[0; 25]).expect("room is made");
        let names: Vec<String> = s.list("").expect("list").into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, ["c"], "a and b (oldest) went to get below 90");
        assert_eq!(writing.append(&[0; 70]), Err(StorageError::QuotaExceeded), "the file being written stays");
        assert_eq!(s.usage().0, 35, "c was deleted too, but 70 more still did not fit");
        assert_eq!(s.list("").expect("list").len(), 0);
    }

    #[test]
    fn retention_by_age_spares_files_being_written() {
        let (_dir, s) = storage(None);
        s.lock().max_age = Some(Duration::from_secs(60));
        let mut old = s.create("old", None).expect("create");
        old.append(b"x").expect("append");
        old.commit().expect("commit");
        let mut writing = s.create("writing", None).expect("create");
        writing.append(b"y").expect("append");
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(s.enforce_retention(later), ["old"]);
        assert_eq!(writing.read_at(0, 1).expect("still there"), b"y");
    }

    #[test]
    fn a_restart_finds_partial_files_for_recovery() {
        let (dir, s) = storage(None);
        let mut f = s.create("cam/x.mp4", None).expect("create");
        f.append(b"data").expect("append");
        assert!(s.orphans().is_empty(), "being written");
        drop(f);
        assert_eq!(s.orphans(), ["cam/x.mp4"]);
        // A fresh process sees the same.
        let mut fresh = State::default();
        scan(s.root(), s.root(), &mut fresh).expect("scan");
        assert_eq!(fresh.partial.keys().collect::<Vec<_>>(), ["cam/x.mp4"]);
        let mut again = s.reopen("cam/x.mp4").expect("reopen");
        assert_eq!(again.size(), 4);
        again.truncate(2).expect("truncate");
        again.commit().expect("commit");
        assert_eq!(std::fs::read(dir.path().join("cam/x.mp4")).expect("read"), b"da");
        assert!(s.orphans().is_empty());
    }
}
