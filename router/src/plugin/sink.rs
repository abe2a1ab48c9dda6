//! The host side of the `sink` world: one store and instance per recording (a recorder keeps state between
//! calls, so instances are not pooled), calls under a deadline and a memory cap, the `storage` interface over the
//! granted directory, and crash recovery of files a recorder left uncommitted.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Resource, ResourceAny};
use wasmtime::{Store, UpdateDeadline};

use super::LoadError;
use super::engine::{PluginHost, deadline_ticks};
use super::state::HostState;
use super::stats::{CallFailure, PluginStats};
use super::world::{WorldPlugin, world_impl};
use crate::config::model::{PluginConfig, StorageGrant};
use crate::media::Payload;
use crate::plugin::storage::{OpenFile, Storage, StorageError, Storages};

mod bindings {
    wasmtime::component::bindgen!({
        world: "sink",
        path: "../sdk/wit",
        with: {
            "sluice:plugin/storage.file": crate::plugin::storage::OpenFile,
            "sluice:plugin/media.payload": super::HeldPayload,
            // Every world imports `host`: its bindings (and its one implementation) are the auth world's.
            "sluice:plugin/host": crate::plugin::auth::bindings::sluice::plugin::host,
        },
        imports: { default: trappable },
    });
}

use bindings::{Sink, SinkPre};
world_impl!(Sink, SinkPre);

pub use bindings::sluice::plugin::media::{Codec, Sample, Track};
use bindings::sluice::plugin::storage::{Chunk, Entry, StorageError as WitStorageError};

/// A batch as the router hands it to a recorder: one payload and the index of the samples in it.
#[derive(Debug, Clone)]
pub struct MediaBatch {
    pub payload: Payload,
    pub samples: Vec<Sample>,
}

/// A batch payload a plugin holds (WIT `media.payload`): the bytes stay here, the plugin gets a handle. Shared, so
/// a write can hold the payloads it names while it borrows the file from the same table.
#[derive(Debug)]
pub struct HeldPayload(Arc<Payload>);

/// The most pieces one `append-chunks` may resolve to. A range becomes a piece per frame it spans, so a plugin
/// naming whole payloads over and over could otherwise make the router allocate far more than the call's size.
const MAX_WRITE_PIECES: usize = 1 << 20;

/// The most a plugin may copy out of a payload in one `read`.
const MAX_PAYLOAD_READ: u32 = 16 << 20;

/// Beyond its own timeout, one call may spend this long in all in storage calls that go to the file system (writes,
/// fsync, renames, where a slow SD card or a busy disk makes a call wait), which must not end a recording; past it
/// the call is interrupted as usual, so the credit stays bounded.
const MAX_STORAGE_WAIT: Duration = Duration::from_secs(30);

/// What a recorder instance may touch: the storage, and whose recording it writes (for the index).
#[derive(Debug)]
pub struct StorageAccess {
    storage: Arc<Storage>,
    owner: Option<String>,
    /// Set while `recover` runs: it may remove uncommitted files.
    recovering: bool,
    /// The current call: when it started, its timeout, and how long it has spent in storage calls that go to the
    /// file system so far, which its deadline does not count (see [`time_left`]).
    call: CallClock,
}

#[derive(Debug, Clone, Copy)]
struct CallClock {
    started: Instant,
    timeout: Duration,
    in_storage: Duration,
}

impl CallClock {
    fn start(started: Instant, timeout: Duration) -> CallClock {
        CallClock { started, timeout, in_storage: Duration::ZERO }
    }
}

/// What a call has left when its epoch deadline passes: its timeout plus the time it spent in file-system storage
/// calls (at most [`MAX_STORAGE_WAIT`]), less the time elapsed. `None` when nothing is left: the call is interrupted.
fn time_left(elapsed: Duration, in_storage: Duration, timeout: Duration) -> Option<Duration> {
    timeout.saturating_add(in_storage.min(MAX_STORAGE_WAIT)).checked_sub(elapsed).filter(|left| !left.is_zero())
}

/// Starts a call's clock: its epoch deadline is its timeout, extended by the time it then spends in storage calls.
/// Returns when the call starts (one clock read serves the deadline and the plugin's time statistics).
fn arm(store: &mut Store<HostState>, timeout: Duration) -> Instant {
    let started = Instant::now();
    store.set_epoch_deadline(deadline_ticks(timeout));
    if let Some(access) = store.data_mut().storage.as_mut() {
        access.call = CallClock::start(started, timeout);
    }
    started
}

impl From<StorageError> for WitStorageError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidPath(p) => WitStorageError::InvalidPath(p),
            StorageError::QuotaExceeded => WitStorageError::QuotaExceeded,
            StorageError::NotFound => WitStorageError::NotFound,
            StorageError::Closed => WitStorageError::Closed,
            StorageError::Io(m) => WitStorageError::Io(m),
        }
    }
}

impl HostState {
    fn storage(&self) -> Result<&StorageAccess, WitStorageError> {
        // Unreachable in practice: a plugin importing storage without a grant is refused at load.
        self.storage.as_ref().ok_or_else(|| WitStorageError::Io("no storage was granted".to_string()))
    }

    /// Runs a storage call that goes to the file system, counting its time as time the plugin's call may have spent
    /// waiting on the disk (the calls that only read the router's own bookkeeping, `usage` and `list-files`, are
    /// not counted).
    fn in_storage<R>(&mut self, call: impl FnOnce(&mut Self) -> R) -> R {
        let began = Instant::now();
        let result = call(self);
        if let Some(access) = self.storage.as_mut() {
            access.call.in_storage += began.elapsed();
        }
        result
    }
}

type StorageResult<T> = wasmtime::Result<Result<T, WitStorageError>>;

impl bindings::sluice::plugin::storage::Host for HostState {
    fn create(&mut self, path: String) -> StorageResult<Resource<OpenFile>> {
        let opened = self.in_storage(|s| s.storage().and_then(|a| Ok(a.storage.create(&path, a.owner.clone())?)));
        Ok(match opened {
            Ok(file) => Ok(self.table().push(file)?),
            Err(e) => Err(e),
        })
    }

    fn reopen(&mut self, path: String) -> StorageResult<Resource<OpenFile>> {
        // Only `recover` repairs files: a live recorder must not reach into another recording's unfinished file.
        let opened = self.in_storage(|s| {
            let a = s.storage()?;
            if !a.recovering {
                return Err(WitStorageError::Io("reopen is only available during recover".to_string()));
            }
            Ok(a.storage.reopen(&path)?)
        });
        Ok(match opened {
            Ok(file) => Ok(self.table().push(file)?),
            Err(e) => Err(e),
        })
    }

    fn remove(&mut self, path: String) -> StorageResult<()> {
        Ok(self.in_storage(|s| s.storage().and_then(|a| Ok(a.storage.remove(&path, a.recovering)?))))
    }

    fn list_files(&mut self, dir: String) -> StorageResult<Vec<Entry>> {
        Ok(self.storage().and_then(|a| {
            let unix = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            Ok(a.storage
                .list(&dir)?
                .into_iter()
                .map(|(path, e)| Entry { path, size: e.size, modified: unix(e.modified) })
                .collect())
        }))
    }

    fn usage(&mut self) -> wasmtime::Result<(u64, Option<u64>)> {
        Ok(self.storage.as_ref().map_or((0, None), |a| a.storage.usage()))
    }
}

impl bindings::sluice::plugin::storage::HostFile for HostState {
    fn append(&mut self, file: Resource<OpenFile>, data: Vec<u8>) -> StorageResult<()> {
        self.in_storage(|s| Ok(s.table().get_mut(&file)?.append(&data).map_err(Into::into)))
    }

    fn append_chunks(
        &mut self,
        file: Resource<OpenFile>,
        payloads: Vec<Resource<HeldPayload>>,
        chunks: Vec<Chunk>,
    ) -> StorageResult<()> {
        // The payloads are reference-counted: holding them here frees the table to lend out the file.
        let held =
            payloads.iter().map(|p| Ok(Arc::clone(&self.table().get(p)?.0))).collect::<wasmtime::Result<Vec<_>>>()?;
        let pieces = match chunk_pieces(&held, &chunks) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        self.in_storage(|s| Ok(s.table().get_mut(&file)?.append_all(&pieces).map_err(Into::into)))
    }

    fn read_at(&mut self, file: Resource<OpenFile>, offset: u64, len: u32) -> StorageResult<Vec<u8>> {
        self.in_storage(|s| Ok(s.table().get(&file)?.read_at(offset, len).map_err(Into::into)))
    }

    fn write_at(&mut self, file: Resource<OpenFile>, offset: u64, data: Vec<u8>) -> StorageResult<()> {
        self.in_storage(|s| Ok(s.table().get_mut(&file)?.write_at(offset, &data).map_err(Into::into)))
    }

    fn sync(&mut self, file: Resource<OpenFile>) -> StorageResult<()> {
        self.in_storage(|s| Ok(s.table().get(&file)?.sync().map_err(Into::into)))
    }

    fn size(&mut self, file: Resource<OpenFile>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&file)?.size())
    }

    fn truncate(&mut self, file: Resource<OpenFile>, size: u64) -> StorageResult<()> {
        self.in_storage(|s| Ok(s.table().get_mut(&file)?.truncate(size).map_err(Into::into)))
    }

    fn commit(&mut self, file: Resource<OpenFile>) -> StorageResult<()> {
        self.in_storage(|s| Ok(s.table().get_mut(&file)?.commit().map_err(Into::into)))
    }

    fn drop(&mut self, file: Resource<OpenFile>) -> wasmtime::Result<()> {
        self.table().delete(file)?;
        Ok(())
    }
}

/// The bytes `chunks` name, in order: the plugin's own bytes, or ranges of `payloads` (by index), one piece per frame
/// a range spans. An index or range that is not there, or more than [`MAX_WRITE_PIECES`], refuses the whole write.
fn chunk_pieces<'a>(payloads: &'a [Arc<Payload>], chunks: &'a [Chunk]) -> Result<Vec<&'a [u8]>, WitStorageError> {
    let mut pieces = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(data) => pieces.push(data.as_slice()),
            Chunk::Media(range) => {
                let (offset, len) = (range.offset as usize, range.len as usize);
                let payload = payloads.get(range.payload as usize).ok_or_else(|| {
                    WitStorageError::OutOfRange(format!(
                        "payload {} of a call that names {}",
                        range.payload,
                        payloads.len()
                    ))
                })?;
                let slices = payload.slices(offset, len).ok_or_else(|| {
                    WitStorageError::OutOfRange(format!(
                        "bytes {offset}..+{len} of payload {}, which has {} bytes",
                        range.payload,
                        payload.len()
                    ))
                })?;
                pieces.extend(slices);
            }
        }
        if pieces.len() > MAX_WRITE_PIECES {
            return Err(WitStorageError::Io(format!(
                "one write resolves to more than {MAX_WRITE_PIECES} pieces (frames and byte chunks): split it"
            )));
        }
    }
    Ok(pieces)
}

impl bindings::sluice::plugin::media::Host for HostState {}

impl bindings::sluice::plugin::media::HostPayload for HostState {
    fn len(&mut self, payload: Resource<HeldPayload>) -> wasmtime::Result<u32> {
        // Batches are built below 4 GiB (sample offsets are u32).
        Ok(u32::try_from(self.table().get(&payload)?.0.len()).unwrap_or(u32::MAX))
    }

    fn read(&mut self, payload: Resource<HeldPayload>, offset: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table().get(&payload)?.0.copy_range(offset as usize, len.min(MAX_PAYLOAD_READ) as usize))
    }

    fn drop(&mut self, payload: Resource<HeldPayload>) -> wasmtime::Result<()> {
        let held = self.table().delete(payload)?;
        self.memory.release(held.0.len());
        Ok(())
    }
}

/// What an instance may do with the storage.
#[derive(Debug, Clone, Copy)]
enum StorageUse<'a> {
    /// Nothing: the check at load, which must not open (create) the directory.
    None,
    /// Write the recordings of this route.
    Record(&'a str),
    /// Repair unfinished files (`recover`): may reopen and remove them.
    Recover,
}

/// A sink plugin, loaded.
pub struct SinkPlugin {
    inner: Arc<Inner>,
}

struct Inner {
    plugin: WorldPlugin<Sink>,
    grant: Option<StorageGrant>,
    storages: Arc<Storages>,
    /// Opened on first use, not at load: `sluice check` loads plugins and must not create directories.
    storage: OnceLock<Result<Arc<Storage>, String>>,
    /// Recovery passes: one at a time per plugin, requests during one coalesced into one more (see
    /// [`SinkPlugin::recover_orphans`]).
    recovery: Recovery,
}

impl std::fmt::Debug for SinkPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkPlugin").field("name", &self.inner.plugin.name).finish_non_exhaustive()
    }
}

/// Why a recorder stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecorderError {
    /// The plugin said no (bad config, a track it cannot record, quota exceeded...).
    #[error("{0}")]
    Refused(String),
    /// The instance trapped, timed out or ran out of memory; it is gone.
    #[error("plugin {0}")]
    Failed(CallFailure),
}

impl SinkPlugin {
    /// Links and pre-instantiates the plugin and starts one instance to check that it can run.
    pub fn new(host: &PluginHost, config: &PluginConfig, component: &Component) -> Result<SinkPlugin, LoadError> {
        let inner = Inner {
            plugin: WorldPlugin::link(host, config, component)?,
            grant: config.grants.storage.clone(),
            storages: Arc::clone(host.storages()),
            storage: OnceLock::new(),
            recovery: Recovery::default(),
        };
        inner.instantiate(StorageUse::None).map_err(|e| LoadError::new(&config.name, e.to_string()))?;
        Ok(SinkPlugin { inner: Arc::new(inner) })
    }

    pub fn stats(&self) -> &PluginStats {
        &self.inner.plugin.stats
    }

    pub fn name(&self) -> &str {
        &self.inner.plugin.name
    }

    /// The granted storage, opened (and its directory created) on first use.
    pub fn storage(&self) -> Result<Option<Arc<Storage>>, String> {
        self.inner.storage()
    }

    /// Starts a recorder for `route`. Blocking: call it off the async threads.
    pub fn open(&self, route: &str, tracks: &[Track]) -> Result<RecorderSession, RecorderError> {
        let (mut store, sink) = self.inner.instantiate(StorageUse::Record(route)).map_err(RecorderError::Failed)?;
        let plugin = &self.inner.plugin;
        let started = arm(&mut store, plugin.timeout);
        let made = sink.sluice_plugin_recorder_api().recorder().call_constructor(
            &mut store,
            route,
            tracks,
            &plugin.config_json,
        );
        plugin.count_call(started);
        match made {
            Ok(recorder) => {
                Ok(RecorderSession { inner: Arc::clone(&self.inner), store, sink, recorder: Some(recorder) })
            }
            Err(e) => Err(RecorderError::Failed(plugin.failed(&e, &store))),
        }
    }

    /// Hands every uncommitted file nobody is writing (what a crash or a failed recorder left) to the plugin's
    /// `recover`, which repairs and commits or removes it. Returns how many this call handled. Blocking.
    ///
    /// One pass runs at a time: a call while one runs returns at once (0), and the running one goes over the files
    /// again when it ends, so a hundred recorders failing together cause two passes, not a hundred racing for the
    /// same files. Each pass tries each file once, those `recover` failed on before last.
    pub fn recover_orphans(&self) -> usize {
        let recovery = &self.inner.recovery;
        recovery.wanted.store(true, Ordering::SeqCst);
        let mut recovered = 0;
        loop {
            let running = match recovery.running.try_lock() {
                Ok(guard) => guard,
                // A pass that panicked leaves nothing inconsistent behind (the lock guards no data).
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return recovered,
            };
            while recovery.wanted.swap(false, Ordering::SeqCst) {
                recovered += self.recovery_pass();
            }
            drop(running);
            // A call that found the lock taken after the last check above: its request is ours to run.
            if !recovery.wanted.load(Ordering::SeqCst) {
                return recovered;
            }
        }
    }

    fn recovery_pass(&self) -> usize {
        let storage = match self.inner.storage() {
            Ok(Some(s)) => s,
            Ok(None) => return 0,
            Err(e) => {
                tracing::warn!(plugin = %self.name(), error = %e, "storage unavailable; nothing recovered");
                return 0;
            }
        };
        let mut orphans = storage.orphans();
        {
            let mut failed = self.inner.recovery.failed();
            // Files gone or committed since are forgotten: the set never outgrows what is left to recover.
            failed.retain(|path| orphans.binary_search(path).is_ok());
            orphans.sort_by_key(|path| failed.contains(path));
        }
        let mut recovered = 0;
        let mut instance = None;
        for path in &orphans {
            let (store, sink) = match instance.as_mut() {
                Some(i) => i,
                None => match self.inner.instantiate(StorageUse::Recover) {
                    Ok(i) => instance.insert(i),
                    Err(e) => {
                        tracing::warn!(plugin = %self.name(), error = %e, "cannot start the plugin to recover files");
                        return recovered;
                    }
                },
            };
            let plugin = &self.inner.plugin;
            let started = arm(store, plugin.timeout.max(Duration::from_secs(10)));
            let result = sink.sluice_plugin_recorder_api().call_recover(&mut *store, path, &plugin.config_json);
            plugin.count_call(started);
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(e) => {
                    // The instance is unusable after a trap: the next file gets a fresh one.
                    let failure = plugin.failed(&e, store).to_string();
                    instance = None;
                    Some(failure)
                }
            };
            match error {
                None => {
                    self.inner.recovery.failed().remove(path);
                    recovered += 1;
                    tracing::info!(plugin = %self.name(), path, "recovered a file left unfinished");
                }
                Some(error) => {
                    self.inner.recovery.failed().insert(path.clone());
                    tracing::warn!(plugin = %self.name(), path, error, "could not recover a file; tried again at the next pass");
                }
            }
        }
        recovered
    }
}

/// The recovery passes of one plugin.
#[derive(Debug, Default)]
struct Recovery {
    /// Held by the pass running.
    running: std::sync::Mutex<()>,
    /// A pass was asked for since the running one took its list of files.
    wanted: std::sync::atomic::AtomicBool,
    /// Files `recover` failed on (an error or a trap), tried after the others in later passes.
    failed: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Recovery {
    fn failed(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn storage(&self) -> Result<Option<Arc<Storage>>, String> {
        let Some(grant) = &self.grant else { return Ok(None) };
        self.storage.get_or_init(|| self.storages.open(&grant.dir, grant.quota_bytes, grant.max_age)).clone().map(Some)
    }

    /// A fresh instance with the storage access `access` gives.
    fn instantiate(&self, access: StorageUse<'_>) -> Result<(Store<HostState>, Sink), CallFailure> {
        let plugin = &self.plugin;
        let mut store = plugin.new_store();
        let (owner, recovering) = match access {
            StorageUse::None => (None, false),
            StorageUse::Record(route) => (Some(route.to_string()), false),
            StorageUse::Recover => (None, true),
        };
        if !matches!(access, StorageUse::None)
            && let Some(storage) = self.storage().map_err(CallFailure::Instantiate)?
        {
            store.data_mut().storage = Some(StorageAccess {
                storage,
                owner,
                recovering,
                call: CallClock::start(Instant::now(), plugin.timeout),
            });
        }
        // At the deadline, a call that spent time in storage calls gets that time back (within MAX_STORAGE_WAIT).
        store.epoch_deadline_callback(|store| {
            let left = store
                .data()
                .storage
                .as_ref()
                .and_then(|a| time_left(a.call.started.elapsed(), a.call.in_storage, a.call.timeout));
            Ok(left.map_or(UpdateDeadline::Interrupt, |left| UpdateDeadline::Continue(deadline_ticks(left))))
        });
        let sink = plugin.instantiate(&mut store)?;
        Ok((store, sink))
    }
}

/// One recording's instance and recorder resource. Dropping it without [`finish`](Self::finish) leaves what the
/// recorder was writing uncommitted, for [`SinkPlugin::recover_orphans`].
pub struct RecorderSession {
    inner: Arc<Inner>,
    store: Store<HostState>,
    sink: Sink,
    recorder: Option<ResourceAny>,
}

impl std::fmt::Debug for RecorderSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderSession").field("plugin", &self.inner.plugin.name).finish_non_exhaustive()
    }
}

impl RecorderSession {
    /// Hands the batch to the recorder; its payload stays in the router until the plugin drops it.
    pub fn write(&mut self, batch: MediaBatch) -> Result<(), RecorderError> {
        if self.recorder.is_none() {
            return Err(RecorderError::Refused("the recorder has stopped".to_string()));
        }
        let state = self.store.data_mut();
        let len = batch.payload.len();
        debug_assert_eq!(
            len,
            batch.samples.iter().map(|s| s.len as usize).sum::<usize>(),
            "a payload holds exactly its samples' bytes (WIT media.batch)"
        );
        // Payloads the plugin keeps count against its memory limit, with its linear memory.
        let held = if state.memory.hold(len) {
            state.table().push(HeldPayload(Arc::new(batch.payload))).map_err(|e| {
                state.memory.release(len);
                CallFailure::Trap(e.to_string())
            })
        } else {
            Err(CallFailure::OutOfMemory(self.inner.plugin.memory_cap))
        };
        let payload = match held {
            Ok(p) => p,
            Err(failure) => {
                // Like a failed call: this recorder is done.
                self.recorder = None;
                self.inner.plugin.count_failure(&failure);
                return Err(RecorderError::Failed(failure));
            }
        };
        let batch = bindings::sluice::plugin::media::Batch { payload, samples: batch.samples };
        self.call(|store, api, recorder| api.recorder().call_write(store, recorder, &batch))
    }

    pub fn update_tracks(&mut self, tracks: &[Track]) -> Result<(), RecorderError> {
        self.call(|store, api, recorder| api.recorder().call_update_tracks(store, recorder, tracks))
    }

    /// Flushes and commits; the session ends either way.
    pub fn finish(mut self) -> Result<(), RecorderError> {
        let result = self.call(|store, api, recorder| api.recorder().call_finish(store, recorder));
        if let Some(recorder) = self.recorder.take() {
            let _ = recorder.resource_drop(&mut self.store);
        }
        result
    }

    /// The instance's linear memory so far (bytes).
    pub fn memory(&self) -> usize {
        self.store.data().memory.peak
    }

    fn call(
        &mut self,
        f: impl FnOnce(
            &mut Store<HostState>,
            &bindings::exports::sluice::plugin::recorder_api::Guest,
            ResourceAny,
        ) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), RecorderError> {
        let Some(recorder) = self.recorder else {
            return Err(RecorderError::Refused("the recorder has stopped".to_string()));
        };
        let plugin = &self.inner.plugin;
        let started = arm(&mut self.store, plugin.timeout);
        let result = f(&mut self.store, self.sink.sluice_plugin_recorder_api(), recorder);
        plugin.count_call(started);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(RecorderError::Refused(message)),
            Err(e) => {
                // The instance is unusable after a trap: no further calls on it.
                self.recorder = None;
                Err(RecorderError::Failed(plugin.failed(&e, &self.store)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::sluice::plugin::storage::MediaRange;

    #[test]
    fn time_in_storage_extends_a_call_up_to_a_cap() {
        let ms = Duration::from_millis;
        // No storage time: the timeout alone.
        assert_eq!(time_left(ms(100), ms(0), ms(100)), None);
        assert_eq!(time_left(ms(60), ms(0), ms(100)), Some(ms(40)));
        // 300 ms in storage calls of 350 elapsed: 50 ms of the plugin's own, 50 left.
        assert_eq!(time_left(ms(350), ms(300), ms(100)), Some(ms(50)));
        assert_eq!(time_left(ms(400), ms(300), ms(100)), None);
        // Storage time counts back at most MAX_STORAGE_WAIT.
        let long = MAX_STORAGE_WAIT + ms(5_000);
        assert_eq!(time_left(long, long, ms(100)), None);
        assert_eq!(time_left(MAX_STORAGE_WAIT, long, ms(100)), Some(ms(100)));
    }

    #[test]
    fn chunks_resolve_to_bytes_and_payload_ranges_in_order() {
        // The first payload is two frames: a range across them is two pieces.
        let two_frames: Payload = [&b"01234"[..], b"56789"].into_iter().map(bytes::Bytes::from_static).collect();
        let payloads = [Arc::new(two_frames), Arc::new(Payload::from(b"abc".to_vec()))];
        let media = |payload, offset, len| Chunk::Media(MediaRange { payload, offset, len });
        let chunks = [Chunk::Bytes(b"head".to_vec()), media(0, 2, 3), media(1, 0, 3), media(0, 10, 0), media(0, 4, 2)];
        let pieces = chunk_pieces(&payloads, &chunks).expect("all there");
        assert_eq!(pieces, [&b"head"[..], b"234", b"abc", b"4", b"5"]);
        let whole = vec![media(0, 0, 10); MAX_WRITE_PIECES / 2 + 1];
        assert!(matches!(chunk_pieces(&payloads, &whole), Err(WitStorageError::Io(_))), "too many pieces");
        for bad in [media(2, 0, 1), media(0, 8, 3), media(1, u32::MAX, 2), media(0, 11, 0)] {
            let chunks = [Chunk::Bytes(b"head".to_vec()), bad];
            assert!(matches!(chunk_pieces(&payloads, &chunks), Err(WitStorageError::OutOfRange(_))), "{:?}", chunks[1]);
        }
    }
}
