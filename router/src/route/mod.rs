//! The route: one source, N readers, and nothing about protocols.
//!
//! A route is an actor ([`actor`]): it owns its source task and its readers, and everybody else talks to it through
//! a [`RouteHandle`] with messages carrying reply channels. Frames enter through a [`SourceFeed`], are rebased so
//! timestamps stay monotonic across source restarts ([`timeline`]), go into a GOP cache ([`gop`]) so a new reader
//! starts on the latest keyframe at once, and are offered to every reader's bounded queue ([`reader`]).
//!
//! Invariants:
//! - The actor never awaits a reader. A full reader queue drops frames until the next sync point (video keyframe)
//!   for that reader alone, and the drops are counted; the source and other readers never notice.
//! - Every reader's first frame is a sync point.
//! - `pts`/`dts` a reader sees are monotonic per track for the life of the route, even when the source restarts or
//!   is swapped by a reload.

pub mod actor;
pub mod bunch;
pub mod gop;
pub mod reader;
pub mod stats;
pub mod timeline;

pub use actor::{
    FeedError, RouteError, RouteHandle, SourceEvent, SourceFactory, SourceFeed, ViewerTicket, spawn_route,
};
pub use reader::{ReaderKind, RouteReader};
pub use stats::{RouteSnapshot, RouteState, TrackInfo};
