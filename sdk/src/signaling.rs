//! The `signaling` world: speak an application's own signaling (Socket.IO events or JSON over a WebSocket) and
//! drive the router's WebRTC sessions.
//!
//! Implement [`Adapter`] and call [`export_signaling!`](crate::export_signaling). One value of your type serves
//! every client of the mount, one call at a time, so rooms and counters are plain fields. Every hook gets the
//! [`Host`]: under the router it is the real one; in tests, [`crate::mock::SignalingHost`] records what the plugin
//! did. Hooks have no-op defaults: implement the ones your protocol needs.

use std::any::Any;
use std::cell::RefCell;

use serde::Serialize;
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
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::exports::sluice::plugin::signaling_adapter::{Client, HttpRequest, HttpResponse, Transport};
pub use bindings::sluice::plugin::signaling_host::{Event, Outgoing, RouteState};

/// What the router does for a signaling plugin. See `wit/signaling.wit` for every call's meaning.
pub trait Host {
    fn send(&mut self, connection: u64, message: Outgoing) -> Result<(), String>;
    fn broadcast(&mut self, room: &str, message: Outgoing, except: Option<u64>) -> u32;
    fn ack(&mut self, connection: u64, ack: u64, args: &str) -> Result<(), String>;
    fn join(&mut self, connection: u64, room: &str);
    fn leave(&mut self, connection: u64, room: &str);
    fn members(&mut self, room: &str) -> Vec<u64>;
    fn publish(&mut self, connection: u64, route: &str, offer: &str) -> Result<String, String>;
    fn read(&mut self, connection: u64, route: &str, offer: &str) -> Result<String, String>;
    fn add_candidate(&mut self, session: &str, candidate: &str) -> Result<(), String>;
    fn end_session(&mut self, session: &str);
    fn watch_route(&mut self, route: &str, watch: bool);
    fn set_timer(&mut self, token: u64, ms: u32);
    fn disconnect(&mut self, connection: u64, reason: &str);
}

/// A signaling plugin. Each hook runs under the plugin's `call_timeout`; a trap restarts the plugin and drops its
/// clients.
pub trait Adapter: Sized + 'static {
    /// The plugin's `config` table from routes.toml, read with serde.
    type Config: DeserializeOwned;

    /// Builds the plugin from its config. An error refuses the plugin at load, shown to the admin.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// A client connects. An error refuses it with that message. Default: everyone is welcome.
    fn on_connect(&mut self, _host: &mut dyn Host, _client: &Client) -> Result<(), String> {
        Ok(())
    }

    /// A Socket.IO event with its arguments (a JSON array) and an ack id if the client wants an answer.
    /// Default: ignored.
    fn on_event(&mut self, _host: &mut dyn Host, _connection: u64, _name: &str, _args: &str, _ack: Option<u64>) {}

    /// A plain WebSocket text message. Default: ignored.
    fn on_message(&mut self, _host: &mut dyn Host, _connection: u64, _text: &str) {}

    /// A client left; its rooms and sessions are gone already. Default: nothing.
    fn on_disconnect(&mut self, _host: &mut dyn Host, _connection: u64, _reason: &str) {}

    /// A session's SDP answer, or why it failed. Default: nothing (implement it when you publish or read).
    fn on_session(&mut self, _host: &mut dyn Host, _connection: u64, _session: &str, _answer: Result<&str, &str>) {}

    /// A watched route went live or offline. Default: nothing.
    fn on_route_state(&mut self, _host: &mut dyn Host, _route: &str, _state: RouteState) {}

    /// A timer fired. Default: nothing.
    fn on_timer(&mut self, _host: &mut dyn Host, _token: u64) {}

    /// A request to the plugin's HTTP endpoints (`http` in routes.toml). Default: 404.
    fn on_http(&mut self, _host: &mut dyn Host, _request: &HttpRequest) -> HttpResponse {
        json_response(404, &serde_json::json!({ "error": "not_found", "message": "no such endpoint" }))
    }
}

/// An HTTP answer with `body` as JSON.
pub fn json_response<T: Serialize + ?Sized>(status: u16, body: &T) -> HttpResponse {
    HttpResponse { status, body: serde_json::to_string(body).unwrap_or_else(|_| "null".to_string()) }
}

/// A Socket.IO event with one argument.
pub fn event<T: Serialize + ?Sized>(name: &str, arg: &T) -> Outgoing {
    let args = serde_json::to_string(&[arg]).unwrap_or_else(|_| "[]".to_string());
    Outgoing::Event(Event { name: name.to_string(), args })
}

/// A plain WebSocket text message holding `value` as JSON.
pub fn text<T: Serialize + ?Sized>(value: &T) -> Outgoing {
    Outgoing::Text(serde_json::to_string(value).unwrap_or_else(|_| "null".to_string()))
}

/// The first argument of an event, read as `T`; `None` when there is none or it has another shape. One pass over
/// the text: the other arguments are skipped, not parsed into values.
pub fn first_arg<'a, T: serde::Deserialize<'a>>(args: &'a str) -> Option<T> {
    serde_json::from_str::<FirstArg<T>>(args).ok()?.0
}

/// The first element of a JSON array, the rest skipped.
struct FirstArg<T>(Option<T>);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for FirstArg<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = FirstArg<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON array of arguments")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FirstArg(first))
            }
        }
        deserializer.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

/// The router, through the world's imports.
#[derive(Debug, Default)]
pub struct WasmHost;

impl Host for WasmHost {
    fn send(&mut self, connection: u64, message: Outgoing) -> Result<(), String> {
        bindings::sluice::plugin::signaling_host::send(connection, &message)
    }
    fn broadcast(&mut self, room: &str, message: Outgoing, except: Option<u64>) -> u32 {
        bindings::sluice::plugin::signaling_host::broadcast(room, &message, except)
    }
    fn ack(&mut self, connection: u64, ack: u64, args: &str) -> Result<(), String> {
        bindings::sluice::plugin::signaling_host::ack(connection, ack, args)
    }
    fn join(&mut self, connection: u64, room: &str) {
        bindings::sluice::plugin::signaling_host::join(connection, room)
    }
    fn leave(&mut self, connection: u64, room: &str) {
        bindings::sluice::plugin::signaling_host::leave(connection, room)
    }
    fn members(&mut self, room: &str) -> Vec<u64> {
        bindings::sluice::plugin::signaling_host::members(room)
    }
    fn publish(&mut self, connection: u64, route: &str, offer: &str) -> Result<String, String> {
        bindings::sluice::plugin::signaling_host::publish(connection, route, offer)
    }
    fn read(&mut self, connection: u64, route: &str, offer: &str) -> Result<String, String> {
        bindings::sluice::plugin::signaling_host::read(connection, route, offer)
    }
    fn add_candidate(&mut self, session: &str, candidate: &str) -> Result<(), String> {
        bindings::sluice::plugin::signaling_host::add_candidate(session, candidate)
    }
    fn end_session(&mut self, session: &str) {
        bindings::sluice::plugin::signaling_host::end_session(session)
    }
    fn watch_route(&mut self, route: &str, watch: bool) {
        bindings::sluice::plugin::signaling_host::watch_route(route, watch)
    }
    fn set_timer(&mut self, token: u64, ms: u32) {
        bindings::sluice::plugin::signaling_host::set_timer(token, ms)
    }
    fn disconnect(&mut self, connection: u64, reason: &str) {
        bindings::sluice::plugin::signaling_host::disconnect(connection, reason)
    }
}

thread_local! {
    /// The plugin value of this instance (a wasm instance is single-threaded).
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn __init<P: Adapter>(config: &str) -> Result<(), String> {
    let plugin = P::new(crate::config::parse::<P::Config>(config)?)?;
    PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

/// Runs `f` on the plugin value with the real host; `fallback` if `init` has not run.
#[doc(hidden)]
pub fn __with<P: Adapter, R>(fallback: R, f: impl FnOnce(&mut P, &mut dyn Host) -> R) -> R {
    PLUGIN.with(|slot| match slot.borrow_mut().as_mut().and_then(|p| p.downcast_mut::<P>()) {
        Some(plugin) => f(plugin, &mut WasmHost),
        None => fallback,
    })
}

/// Exports a type implementing [`Adapter`] as the plugin's `signaling-adapter` interface.
#[macro_export]
macro_rules! export_signaling {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SluiceSignalingExport;

        impl $crate::signaling::bindings::exports::sluice::plugin::signaling_adapter::Guest
            for __SluiceSignalingExport
        {
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::signaling::__init::<$plugin>(&config)
            }

            fn on_connect(client: $crate::signaling::Client) -> ::std::result::Result<(), ::std::string::String> {
                $crate::signaling::__with::<$plugin, _>(Err("plugin used before init".into()), |p, h| {
                    $crate::signaling::Adapter::on_connect(p, h, &client)
                })
            }

            fn on_event(
                connection: u64,
                name: ::std::string::String,
                args: ::std::string::String,
                ack: ::std::option::Option<u64>,
            ) {
                $crate::signaling::__with::<$plugin, _>((), |p, h| {
                    $crate::signaling::Adapter::on_event(p, h, connection, &name, &args, ack)
                })
            }

            fn on_message(connection: u64, text: ::std::string::String) {
                $crate::signaling::__with::<$plugin, _>((), |p, h| {
                    $crate::signaling::Adapter::on_message(p, h, connection, &text)
                })
            }

            fn on_disconnect(connection: u64, reason: ::std::string::String) {
                $crate::signaling::__with::<$plugin, _>((), |p, h| {
                    $crate::signaling::Adapter::on_disconnect(p, h, connection, &reason)
                })
            }

            fn on_session(
                connection: u64,
                session: ::std::string::String,
                answer: ::std::result::Result<::std::string::String, ::std::string::String>,
            ) {
                $crate::signaling::__with::<$plugin, _>((), |p, h| {
                    let answer = answer.as_deref().map_err(::std::string::String::as_str);
                    $crate::signaling::Adapter::on_session(p, h, connection, &session, answer)
                })
            }

            fn on_route_state(route: ::std::string::String, state: $crate::signaling::RouteState) {
                $crate::signaling::__with::<$plugin, _>((), |p, h| {
                    $crate::signaling::Adapter::on_route_state(p, h, &route, state)
                })
            }

            fn on_http(
                request: $crate::signaling::HttpRequest,
            ) -> $crate::signaling::HttpResponse {
                let fallback = $crate::signaling::json_response(503, "plugin used before init");
                $crate::signaling::__with::<$plugin, _>(fallback, |p, h| {
                    $crate::signaling::Adapter::on_http(p, h, &request)
                })
            }

            fn on_timer(token: u64) {
                $crate::signaling::__with::<$plugin, _>((), |p, h| $crate::signaling::Adapter::on_timer(p, h, token))
            }
        }

        // Native builds (tests against the mock host) export nothing: the symbols' names are not valid there.
        #[cfg(target_arch = "wasm32")]
        $crate::signaling::bindings::export!(__SluiceSignalingExport with_types_in $crate::signaling::bindings);
    };
}
