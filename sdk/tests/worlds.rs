//! The sink and signaling layers compile into working exports (no built-in uses them yet): a recorder and a
//! connection exported through the macros, driven through the same slots the generated glue uses.

use sluice_sdk::signaling::{Connection, Message};
use sluice_sdk::sink::{Batch, Recorder, Slot, Track};

#[derive(Debug)]
struct Counting {
    samples: usize,
    finished: bool,
}

#[derive(serde::Deserialize)]
struct NoConfig {}

impl Recorder for Counting {
    type Config = NoConfig;

    fn new(route: String, _tracks: Vec<Track>, _config: NoConfig) -> Result<Self, String> {
        if route.is_empty() { Err("no route".into()) } else { Ok(Counting { samples: 0, finished: false }) }
    }

    fn write(&mut self, batch: Batch) -> Result<(), String> {
        self.samples += batch.samples.len();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.finished = true;
        Ok(())
    }
}

sluice_sdk::export_sink!(Counting);

#[derive(Debug)]
struct Echo;

impl Connection for Echo {
    type Config = NoConfig;

    fn open(_id: u64, _path: String, _query: Vec<(String, String)>, _config: NoConfig) -> Result<Self, String> {
        Ok(Echo)
    }

    fn on_frame(&mut self, _message: Message) {}
}

sluice_sdk::export_signaling!(Echo);

#[test]
fn a_recorder_slot_reports_a_failed_start_on_every_call() {
    // (A batch's payload is a host resource, which a native test cannot make: these calls take none.)
    let mut failed = Slot::<Counting>::open(String::new(), Vec::new(), "{}");
    assert_eq!(failed.with(|r| r.update_tracks(Vec::new())), Err("no route".to_string()));
    assert_eq!(failed.with(|r| r.finish()), Err("no route".to_string()));
    let mut ok = Slot::<Counting>::open("cam".into(), Vec::new(), "{}");
    assert_eq!(ok.with(|r| r.update_tracks(Vec::new())), Err("this recorder cannot follow track changes".into()));
    assert_eq!(ok.with(|r| r.finish()), Ok(()));
    assert_eq!(ok.with(|r| Ok(r.finished)), Ok(true));
    let mut bad_config = Slot::<Counting>::open("cam".into(), Vec::new(), "[1]");
    assert!(bad_config.with(|r| r.finish()).expect_err("config").starts_with("invalid config"));
}
