//! Logging into the router's log. Under the mock host (native builds) lines go to stderr and to
//! [`crate::log::captured`], so tests can assert on them.

/// Severity of a log line, mirroring WIT `host.log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Lines logged on this thread so far (native builds only; empty inside the router).
pub fn captured() -> Vec<(Level, String)> {
    imp::captured()
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;

    /// Every world imports the same `host` interface; the one the enabled world generated is used.
    #[cfg(feature = "auth")]
    use crate::auth::bindings::sluice::plugin::host;
    #[cfg(all(not(feature = "auth"), not(feature = "sink"), feature = "signaling"))]
    use crate::signaling::bindings::sluice::plugin::host;
    #[cfg(all(not(feature = "auth"), feature = "sink"))]
    use crate::sink::bindings::sluice::plugin::host;

    #[cfg(any(feature = "auth", feature = "sink", feature = "signaling"))]
    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::LogLevel::Trace,
            Level::Debug => host::LogLevel::Debug,
            Level::Info => host::LogLevel::Info,
            Level::Warn => host::LogLevel::Warn,
            Level::Error => host::LogLevel::Error,
        };
        host::log(level, message);
    }

    #[cfg(not(any(feature = "auth", feature = "sink", feature = "signaling")))]
    pub fn log(_level: Level, _message: &str) {}

    pub fn captured() -> Vec<(Level, String)> {
        Vec::new()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;

    use super::Level;

    thread_local! {
        static LINES: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn log(level: Level, message: &str) {
        eprintln!("[plugin {level:?}] {message}");
        LINES.with(|l| l.borrow_mut().push((level, message.to_string())));
    }

    pub fn captured() -> Vec<(Level, String)> {
        LINES.with(|l| l.borrow().clone())
    }
}
