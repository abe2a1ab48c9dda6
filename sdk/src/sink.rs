//! The `sink` world: consume a route's media, e.g. record it to files through the host's `storage`.
//!
//! Implement [`Recorder`] and call [`export_sink!`](crate::export_sink). The router creates one recorder per
//! recording and feeds it batches of samples: a [`Payload`] handle to the bytes, which stay in the router, plus an
//! index. Write ranges of payloads to files with `storage::File::append_chunks` (no copy through the plugin), copy
//! in only what must be inspected (`Payload::read`), and drop a payload once nothing refers to it.

use serde::de::DeserializeOwned;

/// Guest bindings generated from `wit/sink.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        world: "sink",
        path: "wit",
        runtime_path: "::sluice_sdk::__wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::sluice_sdk::sink::bindings",
    });
}

pub use bindings::sluice::plugin::media::{Batch, Codec, Payload, Sample, Track};
/// Files in the directory granted to the plugin (`grants.storage`).
pub use bindings::sluice::plugin::storage;

/// One recording of one route.
pub trait Recorder: Sized + 'static {
    type Config: DeserializeOwned;

    /// Starts a recording. An error ends this recording only; the router reports it.
    fn new(route: String, tracks: Vec<Track>, config: Self::Config) -> Result<Self, String>;

    fn write(&mut self, batch: Batch) -> Result<(), String>;

    /// The source's tracks changed. The default refuses, which ends the recording.
    fn update_tracks(&mut self, tracks: Vec<Track>) -> Result<(), String> {
        let _ = tracks;
        Err("this recorder cannot follow track changes".to_string())
    }

    /// Flushes and commits what was written.
    fn finish(&mut self) -> Result<(), String>;

    /// Repairs a file a crash left uncommitted. The default commits it as it is.
    fn recover(path: String, config: Self::Config) -> Result<(), String> {
        let _ = config;
        storage::reopen(&path).and_then(|f| f.commit()).map_err(|e| format!("{path}: {e:?}"))
    }
}

/// A recorder, or why it could not start: every later call reports that reason.
#[doc(hidden)]
#[derive(Debug)]
pub struct Slot<R>(Result<R, String>);

impl<R: Recorder> Slot<R> {
    pub fn open(route: String, tracks: Vec<Track>, config: &str) -> Slot<R> {
        Slot(crate::config::parse::<R::Config>(config).and_then(|c| R::new(route, tracks, c)))
    }

    pub fn with<T>(&mut self, f: impl FnOnce(&mut R) -> Result<T, String>) -> Result<T, String> {
        match &mut self.0 {
            Ok(r) => f(r),
            Err(e) => Err(e.clone()),
        }
    }
}

#[doc(hidden)]
pub fn __recover<R: Recorder>(path: String, config: &str) -> Result<(), String> {
    R::recover(path, crate::config::parse::<R::Config>(config)?)
}

/// Exports a type implementing [`Recorder`] as the plugin's `recorder-api`.
#[macro_export]
macro_rules! export_sink {
    ($recorder:ty) => {
        #[doc(hidden)]
        pub struct __SluiceSinkExport;

        #[doc(hidden)]
        pub struct __SluiceRecorder(::core::cell::RefCell<$crate::sink::Slot<$recorder>>);

        impl $crate::sink::bindings::exports::sluice::plugin::recorder_api::Guest for __SluiceSinkExport {
            type Recorder = __SluiceRecorder;

            fn recover(
                path: ::std::string::String,
                config: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::sink::__recover::<$recorder>(path, &config)
            }
        }

        impl $crate::sink::bindings::exports::sluice::plugin::recorder_api::GuestRecorder for __SluiceRecorder {
            fn new(
                route: ::std::string::String,
                tracks: ::std::vec::Vec<$crate::sink::Track>,
                config: ::std::string::String,
            ) -> Self {
                __SluiceRecorder(::core::cell::RefCell::new($crate::sink::Slot::open(route, tracks, &config)))
            }

            fn write(&self, batch: $crate::sink::Batch) -> ::std::result::Result<(), ::std::string::String> {
                self.0.borrow_mut().with(|r| r.write(batch))
            }

            fn update_tracks(
                &self,
                tracks: ::std::vec::Vec<$crate::sink::Track>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                self.0.borrow_mut().with(|r| r.update_tracks(tracks))
            }

            fn finish(&self) -> ::std::result::Result<(), ::std::string::String> {
                self.0.borrow_mut().with(|r| r.finish())
            }
        }

        // Native builds (tests against the mock host) export nothing: the symbols' names are not valid there.
        #[cfg(target_arch = "wasm32")]
        $crate::sink::bindings::export!(__SluiceSinkExport with_types_in $crate::sink::bindings);
    };
}
