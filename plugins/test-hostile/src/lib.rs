//! Misbehaves on purpose, chosen by the route name of each request, so one loaded instance exercises every way
//! a plugin can go wrong: "loop" spins forever, "oom" allocates until memory runs out, "trap" panics, "sleep"
//! blocks in a WASI wait, "log" logs and allows; anything else is allowed. The router's tests check each is
//! contained.

use sluice_sdk::auth::{Authorizer, Decision, Request};

#[derive(Debug)]
pub struct Hostile;

impl Authorizer for Hostile {
    type Config = serde::de::IgnoredAny;

    fn new(_config: Self::Config) -> Result<Self, String> {
        Ok(Hostile)
    }

    fn authorize(&self, request: &Request) -> Decision {
        match request.route.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile plugin: trap requested"),
            "sleep" => {
                // Blocks inside the host, where an epoch deadline cannot reach: the host must refuse to wait.
                std::thread::sleep(std::time::Duration::from_secs(30));
                Decision::allow("sleeper", 0)
            }
            "log" => {
                sluice_sdk::log::info("hostile plugin: hello from inside");
                Decision::allow("logger", 0)
            }
            _ => Decision::allow("anyone", 0),
        }
    }
}

sluice_sdk::export_auth!(Hostile);
