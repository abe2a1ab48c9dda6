//! The router's SQLite database (`data_dir/sluice.db`) on a thread of its own.
//!
//! Every query runs on that thread, one at a time, on its one connection: async tasks await the answer instead
//! of blocking a runtime thread on the disk or on a lock, and a slow query (a rebuild of the recordings index)
//! delays other queries, never the media. The database is WAL-journalled, so a crash loses at most the last
//! transaction. Each user of the store (the recordings index now, accounts next) brings its own schema and its
//! own typed queries; nothing here is global: whoever opens the store owns it, and the thread ends when the
//! last handle is dropped.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

/// A unit of work for the store's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the database. Cheap to clone; every clone talks to the same thread and connection.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

/// What went wrong with the database, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot open {}: {source}", .path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot start the database thread: {0}")]
    Thread(std::io::Error),
    #[error("the database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The store's thread is gone (the process is ending, or a query panicked).
    #[error("the database is closed")]
    Closed,
}

impl Store {
    /// Opens (creating it and its directory if needed) the database at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { dir: dir.to_path_buf(), source })?;
        }
        let open = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open)?;
        // WAL: a crash mid-write loses at most that transaction, and readers never see half of one.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open)?;
        Store::start(conn)
    }

    /// A database held in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::start(Connection::open_in_memory()?)
    }

    fn start(mut conn: Connection) -> Result<Store, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Store { jobs })
    }

    /// Runs `query` on the store's thread and awaits its answer.
    pub async fn call<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let answer = self.send(query)?;
        answer.await.map_err(|_| StoreError::Closed)?.map_err(StoreError::from)
    }

    /// [`call`](Self::call) for code on a blocking thread (never from an async task: it blocks until answered).
    pub fn call_blocking<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let answer = self.send(query)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)?.map_err(StoreError::from)
    }

    fn send<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<oneshot::Receiver<rusqlite::Result<T>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The asker may have gone (a client that hung up): the answer is dropped.
            let _ = reply.send(query(conn));
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queries_run_in_order_on_one_connection_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/sluice.db");
        let store = Store::open(&path).expect("open");
        store.call(|c| c.execute_batch("CREATE TABLE t (n INTEGER)")).await.expect("schema");
        for n in 0..3 {
            store.call(move |c| c.execute("INSERT INTO t VALUES (?1)", [n])).await.expect("insert");
        }
        let names: Vec<String> = store
            .call(|c| c.query_row("SELECT group_concat(n) FROM t", [], |r| r.get(0)).map(|s: String| vec![s]))
            .await
            .expect("select");
        assert_eq!(names, ["0,1,2"]);
        let thread = store.call(|_| Ok(std::thread::current().name().map(str::to_string))).await.expect("name");
        assert_eq!(thread.as_deref(), Some("sluice-store"));
        drop(store);
        let again = Store::open(&path).expect("reopen");
        let count: i64 = again.call(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))).await.expect("count");
        assert_eq!(count, 3);
    }

    #[test]
    fn errors_say_what_failed() {
        let store = Store::in_memory().expect("open");
        let e = store.call_blocking(|c| c.execute_batch("SELEC nonsense")).expect_err("bad SQL");
        assert!(matches!(e, StoreError::Database(_)), "{e}");
        let file = tempfile::NamedTempFile::new().expect("file");
        let e = Store::open(&file.path().join("sluice.db")).expect_err("a file is not a directory");
        assert!(e.to_string().starts_with("cannot create"), "{e}");
    }
}
