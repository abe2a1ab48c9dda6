//! A recorder that accepts `trap_after` batches and then traps (a Rust panic is a wasm trap): the router must end
//! that recorder, count the failure, start a fresh one after a backoff, and keep the route flowing. With
//! `hold_payloads`, it keeps every batch's payload handle instead, which the router must count against the
//! plugin's memory limit.

use sluice_sdk::sink::{Batch, Recorder, Track};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    trap_after: u32,
    #[serde(default)]
    hold_payloads: bool,
}

#[derive(Debug)]
pub struct TrapSink {
    left: u32,
    hold: bool,
    held: Vec<sluice_sdk::sink::Payload>,
}

impl Recorder for TrapSink {
    type Config = Config;

    fn new(_route: String, _tracks: Vec<Track>, config: Config) -> Result<Self, String> {
        Ok(TrapSink { left: config.trap_after, hold: config.hold_payloads, held: Vec::new() })
    }

    fn write(&mut self, batch: Batch) -> Result<(), String> {
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
}

sluice_sdk::export_sink!(TrapSink);
