//! A signaling plugin that misbehaves on request, for the router's tests: `boom` traps, `spin` loops past the
//! call deadline, `count` answers (by ack) how many events this instance has seen, so a test can tell that a
//! restart gave it a fresh instance.

use sluice_sdk::signaling::{Adapter, Host};

#[derive(Debug, serde::Deserialize)]
pub struct Config {}

#[derive(Debug, Default)]
pub struct Trap {
    events: u64,
}

impl Adapter for Trap {
    type Config = Config;

    fn new(_config: Config) -> Result<Self, String> {
        Ok(Trap::default())
    }

    fn on_event(&mut self, host: &mut dyn Host, connection: u64, name: &str, _args: &str, ack: Option<u64>) {
        self.events += 1;
        match name {
            "boom" => panic!("asked to trap"),
            "spin" => {
                // Never returns by itself: the router's deadline must stop it.
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            _ => {
                if let Some(ack) = ack {
                    let _ = host.ack(connection, ack, &format!("[{}]", self.events));
                }
            }
        }
    }
}

sluice_sdk::export_signaling!(Trap);
