//! What was recorded: the SQLite index of the files recorders wrote ([`index`], fed by the sink storage's
//! changes), retention over the storages, and what the playback API reads from the files ([`probe`],
//! [`stitch`]). The recorders themselves are an output, `egress::record`.

pub mod index;
pub mod probe;
pub mod stitch;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::plugin::storage::{self, Storage};
use index::Index;

/// How often retention (age and quota) runs; writes also make room at once when the quota is reached.
pub const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// Opens the index in `data_dir`, connects it to every storage's changes and starts retention.
pub fn start(data_dir: &std::path::Path) -> Result<Arc<Index>, index::IndexError> {
    let index = Index::open(sluice_store::Store::open(&data_dir.join("sluice.db"))?)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    storage::set_listener(tx);
    tokio::spawn(index::run_indexer(Arc::clone(&index), rx));
    tokio::spawn(async {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(|| {
                for storage in Storage::all() {
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
