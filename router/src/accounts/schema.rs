//! The accounts' tables in the router's database, created and upgraded by numbered migrations.
//!
//! Each migration runs once, in a transaction with the version it brings the schema to (`schema_versions`, one row
//! per part of the router that keeps tables): a crash mid-upgrade leaves the previous version, which the next start
//! upgrades again. Migrations are only ever appended.

use rusqlite::Connection;

/// The accounts' migrations, in order: index + 1 is the version each one brings.
const MIGRATIONS: &[&str] = &["CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE cameras (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        stream_key TEXT NOT NULL UNIQUE,
        resolution TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX cameras_by_owner ON cameras(owner);
    CREATE TABLE camera_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        camera_id INTEGER NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
        start_time INTEGER NOT NULL,
        end_time INTEGER,
        status TEXT NOT NULL
    );
    CREATE INDEX camera_sessions_by_camera ON camera_sessions(camera_id, start_time);"];

const COMPONENT: &str = "accounts";

/// Brings the accounts' tables to the newest version; returns it.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);",
    )?;
    let current: i64 = conn
        .query_row("SELECT version FROM schema_versions WHERE component = ?1", [COMPONENT], |r| r.get(0))
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(0) } else { Err(e) })?;
    let current = usize::try_from(current).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?1, ?2)
             ON CONFLICT(component) DO UPDATE SET version = excluded.version",
            rusqlite::params![COMPONENT, (i + 1) as i64],
        )?;
        tx.commit()?;
    }
    Ok(MIGRATIONS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_a_second_start_finds_the_tables() {
        let mut conn = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut conn).expect("first"), MIGRATIONS.len());
        conn.execute("INSERT INTO users (username, email, password_hash, created_at) VALUES ('a', 'a@x', 'h', 0)", [])
            .expect("insert");
        assert_eq!(migrate(&mut conn).expect("again"), MIGRATIONS.len());
        let users: i64 = conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).expect("count");
        assert_eq!(users, 1, "nothing was recreated");
        let version: i64 = conn
            .query_row("SELECT version FROM schema_versions WHERE component = 'accounts'", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
