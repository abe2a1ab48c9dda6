//! A recorder that accepts `trap_after` batches and then traps (a Rust panic is a wasm trap): the router must end
//! that recorder, count the failure, start a fresh one after a backoff, and keep the route flowing. With
//! `hold_payloads`, it keeps every batch's payload handle instead, which the router must count against the
//! plugin's memory limit. With `spin_ms`, each write first computes for that long (the call deadline must stop it);
//! with `storage_ms`, it spends that long in the host's file-system storage calls, writing the batch's payload to a
//! file and cutting it back (time the deadline gives back, as it would a slow disk's). `recover` computes for
//! `spin_ms` too, then commits the file as it is, or fails on paths containing `recover_fails_on`.

use std::time::{Duration, Instant};

use sluice_sdk::sink::{Batch, Recorder, Track, storage};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    trap_after: u32,
    #[serde(default)]
    hold_payloads: bool,
    #[serde(default)]
    spin_ms: u64,
    #[serde(default)]
    storage_ms: u64,
    #[serde(default)]
    recover_fails_on: Option<String>,
}

#[derive(Debug)]
pub struct TrapSink {
    left: u32,
    hold: bool,
    held: Vec<sluice_sdk::sink::Payload>,
    spin: Duration,
    in_storage: Duration,
}

impl Recorder for TrapSink {
    type Config = Config;

    fn new(_route: String, _tracks: Vec<Track>, config: Config) -> Result<Self, String> {
        Ok(TrapSink {
            left: config.trap_after,
            hold: config.hold_payloads,
            held: Vec::new(),
            spin: Duration::from_millis(config.spin_ms),
            in_storage: Duration::from_millis(config.storage_ms),
        })
    }

    fn write(&mut self, batch: Batch) -> Result<(), String> {
        spin(self.spin);
        if !self.in_storage.is_zero() {
            rewrite_until(&batch.payload, Instant::now() + self.in_storage).map_err(|e| format!("{e:?}"))?;
        }
        if self.hold {
            self.held.push(batch.payload);
        }
        if self.left == 0 {
            panic!("test-trap-sink: trapping as configured");
        }
        self.left -= 1;
        Ok(())
    }

    fn update_tracks(&mut self, _tracks: Vec<Track>) -> Result<(), String> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn recover(path: String, config: Config) -> Result<(), String> {
        spin(Duration::from_millis(config.spin_ms));
        if config.recover_fails_on.is_some_and(|part| path.contains(&part)) {
            return Err(format!("test-trap-sink: not recovering {path}, as configured"));
        }
        storage::reopen(&path).and_then(|f| f.commit()).map_err(|e| format!("{path}: {e:?}"))
    }
}

/// Computes for `time`.
fn spin(time: Duration) {
    let began = Instant::now();
    while began.elapsed() < time {
        std::hint::black_box(());
    }
}

/// Writes the whole payload to a file and cuts it back to nothing, over and over until `until`: nearly all of the
/// time in the host's storage, little of the disk used.
fn rewrite_until(payload: &sluice_sdk::sink::Payload, until: Instant) -> Result<(), storage::StorageError> {
    let file = storage::create("rewritten.bin")?;
    let whole = storage::Chunk::Media(storage::MediaRange { payload: 0, offset: 0, len: payload.len() });
    while Instant::now() < until {
        file.append_chunks(&[payload], std::slice::from_ref(&whole))?;
        file.truncate(0)?;
    }
    file.commit()?;
    storage::remove("rewritten.bin")
}

sluice_sdk::export_sink!(TrapSink);
