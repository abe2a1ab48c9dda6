//! Tries to open a network connection, so it imports `wasi:sockets`: plugins get no network, and the router
//! must refuse to load this one with a message naming the import.

use sluice_sdk::auth::{Authorizer, Decision, Request};

#[derive(Debug)]
pub struct PhoneHome;

impl Authorizer for PhoneHome {
    type Config = serde::de::IgnoredAny;

    fn new(_config: Self::Config) -> Result<Self, String> {
        Ok(PhoneHome)
    }

    fn authorize(&self, request: &Request) -> Decision {
        match std::net::TcpStream::connect(("192.0.2.1", 80)) {
            Ok(_) => Decision::allow(request.remote_ip.clone(), 0),
            Err(e) => Decision::deny(e.to_string()),
        }
    }
}

sluice_sdk::export_auth!(PhoneHome);
