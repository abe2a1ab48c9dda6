//! The sink and signaling layers compile into working exports: a recorder and an adapter exported through the
//! macros, driven through the same slots (sink) and mock host (signaling) plugins use.

use sluice_sdk::mock::SignalingHost;
use sluice_sdk::signaling::{Adapter, Host};
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

/// Echoes every event back, refuses clients without a name, acks what asks for it.
#[derive(Debug)]
struct Echo;

impl Adapter for Echo {
    type Config = NoConfig;

    fn new(_config: NoConfig) -> Result<Self, String> {
        Ok(Echo)
    }

    fn on_connect(&mut self, _host: &mut dyn Host, client: &sluice_sdk::signaling::Client) -> Result<(), String> {
        if client.auth.contains("name") { Ok(()) } else { Err("say your name".into()) }
    }

    fn on_event(&mut self, host: &mut dyn Host, connection: u64, name: &str, args: &str, ack: Option<u64>) {
        let echo = sluice_sdk::signaling::Outgoing::Event(sluice_sdk::signaling::Event {
            name: name.to_string(),
            args: args.to_string(),
        });
        let _ = host.send(connection, echo);
        if let Some(ack) = ack {
            let _ = host.ack(connection, ack, "[\"ok\"]");
        }
    }
}

sluice_sdk::export_signaling!(Echo);

#[test]
fn a_signaling_adapter_runs_against_the_mock_host() {
    let mut host = SignalingHost::<Echo>::new("{}").expect("config");
    assert_eq!(
        host.connect(SignalingHost::<Echo>::socketio_client(1, serde_json::json!({}))),
        Err("say your name".to_string())
    );
    host.connect(SignalingHost::<Echo>::socketio_client(2, serde_json::json!({"name": "a"}))).expect("welcome");
    host.event(2, "hi", serde_json::json!([1, {"x": 2}]), Some(9));
    assert_eq!(host.events_to(2), vec![("hi".to_string(), serde_json::json!([1, {"x": 2}]))]);
    assert_eq!(host.state.acks, vec![(2, 9, "[\"ok\"]".to_string())]);
    assert!(host.events_to(1).is_empty(), "a refused client gets nothing");
}

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
