//! What was recorded: the SQLite index of the files recorders wrote ([`index`], fed by the sink storage's
//! changes), retention over the storages, and what the playback API reads from the files ([`probe`],
//! [`stitch`]). The recorders themselves are an output, `egress::record`.

pub mod index;
pub mod probe;
pub mod stitch;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::plugin::storage::{Change, Storages};
use index::Index;

/// How often retention (age and quota) runs; writes also make room at once when the quota is reached.
pub const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// What the router keeps of recordings: the storage directories sink plugins write to, and the index of what
/// they wrote.
#[derive(Debug, Clone)]
pub struct Recordings {
    pub storages: Arc<Storages>,
    pub index: Arc<Index>,
}

/// Opens the index in `data_dir`, connects it to the changes of `storages` (made with
/// `Storages::reporting_to(changes)`) and starts retention over them. Blocking: call it off the async threads.
pub fn start(
    data_dir: &std::path::Path,
    storages: Arc<Storages>,
    changes: tokio::sync::mpsc::UnboundedReceiver<Change>,
) -> Result<Arc<Index>, index::IndexError> {
    let index = Index::open(sluice_store::Store::open(&data_dir.join("sluice.db"))?)?;
    tokio::spawn(index::run_indexer(Arc::clone(&index), changes));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tick.tick().await;
            let storages = Arc::clone(&storages);
            let _ = tokio::task::spawn_blocking(move || {
                for storage in storages.all() {
                    for path in storage.enforce_retention(SystemTime::now()) {
                        tracing::info!(dir = %storage.root().display(), path, "recording deleted by retention");
                    }
                }
            })
            .await;
        }
    });
    Ok(index)
}
