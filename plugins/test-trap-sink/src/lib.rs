//! A recorder that accepts `trap_after` batches and then traps (a Rust panic is a wasm trap): the router must end
//! that recorder, count the failure, start a fresh one after a backoff, and keep the route flowing.

use sluice_sdk::sink::{Batch, Recorder, Track};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    trap_after: u32,
}

#[derive(Debug)]
pub struct TrapSink {
    left: u32,
}

impl Recorder for TrapSink {
    type Config = Config;

    fn new(_route: String, _tracks: Vec<Track>, config: Config) -> Result<Self, String> {
        Ok(TrapSink { left: config.trap_after })
    }

    fn write(&mut self, _batch: Batch) -> Result<(), String> {
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
