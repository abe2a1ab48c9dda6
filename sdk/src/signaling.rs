//! The `signaling` world: speak an application's own WebRTC signaling over a WebSocket and drive the router's
//! sessions through [`host`] (`publish`, `read`, `add_candidate`, ...).
//!
//! Implement [`Connection`] and call [`export_signaling!`](crate::export_signaling).

use serde::de::DeserializeOwned;

/// Guest bindings generated from `wit/signaling.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        world: "signaling",
        path: "wit",
        runtime_path: "::sluice_sdk::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::sluice_sdk::signaling::bindings",
    });
}

/// What the router offers a signaling plugin.
pub use bindings::sluice::plugin::signaling_host as host;
pub use bindings::sluice::plugin::signaling_host::{Answer, Message};

/// One WebSocket connection, from open to close.
pub trait Connection: Sized + 'static {
    type Config: DeserializeOwned;

    /// A client connected. An error closes the WebSocket with that reason.
    fn open(id: u64, path: String, query: Vec<(String, String)>, config: Self::Config) -> Result<Self, String>;

    fn on_frame(&mut self, message: Message);

    /// The timer asked for with `host::set_timer` fired. Default: nothing.
    fn on_timer(&mut self) {}

    /// The client went away. Default: nothing (the router ends the connection's sessions itself).
    fn on_close(&mut self) {}
}

/// A connection, or why it could not open (the connection is closed with that reason).
#[doc(hidden)]
#[derive(Debug)]
pub struct Slot<C>(Option<C>);

impl<C: Connection> Slot<C> {
    pub fn open(id: u64, path: String, query: Vec<(String, String)>, config: &str) -> Slot<C> {
        match crate::config::parse::<C::Config>(config).and_then(|c| C::open(id, path, query, c)) {
            Ok(c) => Slot(Some(c)),
            Err(reason) => {
                host::close(id, &reason);
                Slot(None)
            }
        }
    }

    pub fn with(&mut self, f: impl FnOnce(&mut C)) {
        if let Some(c) = &mut self.0 {
            f(c);
        }
    }
}

/// Exports a type implementing [`Connection`] as the plugin's `connection-api`.
#[macro_export]
macro_rules! export_signaling {
    ($connection:ty) => {
        #[doc(hidden)]
        pub struct __SluiceSignalingExport;

        #[doc(hidden)]
        pub struct __SluiceConnection(::core::cell::RefCell<$crate::signaling::Slot<$connection>>);

        impl $crate::signaling::bindings::exports::sluice::plugin::connection_api::Guest for __SluiceSignalingExport {
            type Connection = __SluiceConnection;
        }

        impl $crate::signaling::bindings::exports::sluice::plugin::connection_api::GuestConnection
            for __SluiceConnection
        {
            fn new(
                id: u64,
                path: ::std::string::String,
                query: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                config: ::std::string::String,
            ) -> Self {
                __SluiceConnection(::core::cell::RefCell::new($crate::signaling::Slot::open(id, path, query, &config)))
            }

            fn on_frame(&self, message: $crate::signaling::Message) {
                self.0.borrow_mut().with(|c| c.on_frame(message))
            }

            fn on_timer(&self) {
                self.0.borrow_mut().with(|c| c.on_timer())
            }

            fn on_close(&self) {
                self.0.borrow_mut().with(|c| c.on_close())
            }
        }

        // Native builds (tests against the mock host) export nothing: the symbols' names are not valid there.
        #[cfg(target_arch = "wasm32")]
        $crate::signaling::bindings::export!(__SluiceSignalingExport with_types_in $crate::signaling::bindings);
    };
}
