//! Fragmented MP4, written: the init segment (ftyp + moov) of a set of tracks and each part as prft + moof +
//! mdat. The recorder plugin (`plugins/record-mp4`) writes recordings with it; the router's probe and stitcher
//! read what it wrote with its constants, and HLS will serve its fragments.

pub mod moof;
pub mod mux;
pub mod samples;

pub use mux::{NON_SYNC, NTP_UNIX_OFFSET, SYNC};
pub use samples::{Payload, Sample, SampleData, TrackInfo};
