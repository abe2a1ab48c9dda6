//! `builtin:record-mp4`: records a route to fragmented MP4 segments that stay playable after a crash.
//!
//! ```toml
//! [plugins.rec]
//! source = "builtin:record-mp4"
//! config = { part_duration = "1s", segment_duration = "10m", path = "%route/%Y-%m-%d_%H-%M-%S" }
//! grants = { storage = { dir = "recordings", quota = "50GB" } }
//!
//! [[route]]
//! name = "cam"
//! to = ["record:rec"]
//! ```
//!
//! Config keys (all optional):
//! - `part_duration` (default "1s", at least "100ms"): media per fragment. Each fragment is appended as soon as it is
//!   complete, so a crash loses at most about this much.
//! - `segment_duration` (default "10m", at least `part_duration`): a new file starts at the first keyframe after it.
//! - `path` (default "%route/%Y-%m-%d_%H-%M-%S"): the file name inside the granted directory, ".mp4" appended;
//!   `%route`, `%Y %m %d %H %M %S` (UTC, the segment's first sample), `%%`. A taken name gets "-2", "-3", ….
//!
//! Each file is ftyp + moov (one trak per recorded track: H.264, H.265, AAC, Opus, G.711; VP8 is skipped with a
//! warning) and then per part a prft (the wall-clock time of the part's first sample) + moof + mdat. A file a crash
//! left uncommitted is cut after its last complete fragment and committed at the next start (`recover`).
//!
//! Layout: [`config`] (keys, durations, file names), [`mux`] (the boxes; the per-part ones in [`moof`]), [`segmenter`] (when segments and parts
//! start, through a [`segmenter::Files`] trait), [`recover`] (the crash repair walk); this file binds them to the
//! SDK. Everything but this file runs natively: the router's benchmark drives [`segmenter::Segmenter`] directly.

pub mod config;
pub mod recover;
pub mod segmenter;

use sluice_sdk::sink::{self, Batch, Recorder, storage};

pub use sluice_media::fmp4::{moof, mux};

use crate::config::{Config, ConfigSpec};
use crate::media::{Codec, Payload, Sample, TrackInfo};
use crate::mux::Part;

/// The media types the recorder takes: the fMP4 muxer's, shared with the router (`sluice-media`).
pub mod media {
    pub use sluice_media::Codec;
    pub use sluice_media::fmp4::{Payload, Sample, SampleData, TrackInfo};
}
use crate::recover::Verdict;
use crate::segmenter::{CreateError, Files, Segmenter};

/// The plugin's recorder: a [`Segmenter`] writing through the host's storage.
#[derive(Debug)]
pub struct RecordMp4 {
    segmenter: Segmenter<HostFiles>,
}

impl Recorder for RecordMp4 {
    type Config = ConfigSpec;

    fn new(route: String, tracks: Vec<sink::Track>, config: ConfigSpec) -> Result<Self, String> {
        let config = Config::from_spec(config)?;
        let tracks = tracks.into_iter().map(track_info).collect();
        Ok(RecordMp4 { segmenter: Segmenter::new(HostFiles, &route, tracks, config)? })
    }

    fn write(&mut self, batch: Batch) -> Result<(), String> {
        let samples = batch.samples.iter().map(|s| Sample {
            track: s.track,
            pts: s.pts,
            dts: s.dts,
            keyframe: s.keyframe,
            offset: s.offset,
            len: s.len,
            wallclock_ms: s.wallclock_ms,
        });
        // The payload is exactly the samples' bytes (WIT `media.batch`): its length without a host call.
        let len = batch.samples.iter().map(|s| u64::from(s.len)).sum::<u64>();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.segmenter.write(std::sync::Arc::new(HostPayload { handle: batch.payload, len }), samples)
    }

    fn update_tracks(&mut self, tracks: Vec<sink::Track>) -> Result<(), String> {
        self.segmenter.update_tracks(tracks.into_iter().map(track_info).collect())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.segmenter.finish()
    }

    /// The config plays no part: any file this plugin wrote is repaired the same way, whatever it is set to now.
    fn recover(path: String, _config: ConfigSpec) -> Result<(), String> {
        let file = storage::reopen(&path).map_err(|e| format!("{path}: {}", storage_error(&e)))?;
        let size = file.size();
        let verdict = recover::scan(size, |offset, len| file.read_at(offset, len).map_err(|e| storage_error(&e)))
            .map_err(|e| format!("{path}: {e}"))?;
        match verdict {
            Verdict::Keep { len, fragments } => {
                let io = |e: storage::StorageError| format!("{path}: {}", storage_error(&e));
                if len < size {
                    file.truncate(len).map_err(io)?;
                }
                file.sync().map_err(io)?;
                file.commit().map_err(io)?;
                sluice_sdk::log::info(&format!(
                    "record-mp4: recovered {path}: kept {fragments} fragments ({len} bytes), cut {} torn bytes",
                    size - len
                ));
            }
            Verdict::Remove(why) => {
                drop(file);
                storage::remove(&path).map_err(|e| format!("{path}: {}", storage_error(&e)))?;
                sluice_sdk::log::warn(&format!("record-mp4: removed {path} after a crash: {why}"));
            }
        }
        Ok(())
    }
}

sluice_sdk::export_sink!(RecordMp4);

fn track_info(t: sink::Track) -> TrackInfo {
    TrackInfo {
        id: t.id,
        codec: match t.codec {
            sink::Codec::H264 => Codec::H264,
            sink::Codec::H265 => Codec::H265,
            sink::Codec::Vp8 => Codec::Vp8,
            sink::Codec::Opus => Codec::Opus,
            sink::Codec::Aac => Codec::Aac,
            sink::Codec::Pcmu => Codec::Pcmu,
            sink::Codec::Pcma => Codec::Pcma,
        },
        clock_rate: t.clock_rate,
        width: t.width,
        height: t.height,
        channels: t.channels,
        sample_rate: t.sample_rate,
        config: t.config,
    }
}

fn storage_error(e: &storage::StorageError) -> String {
    match e {
        storage::StorageError::InvalidPath(p) => format!("invalid path: {p}"),
        storage::StorageError::OutOfRange(m) => format!("out of range: {m}"),
        storage::StorageError::QuotaExceeded => "the storage quota is exhausted".to_string(),
        storage::StorageError::NotFound => "not found".to_string(),
        storage::StorageError::Closed => "the file was committed or aborted already".to_string(),
        storage::StorageError::Io(e) => e.clone(),
    }
}

/// A batch payload: a handle to bytes the host keeps (dropping it lets the host free them).
#[derive(Debug)]
struct HostPayload {
    handle: sink::Payload,
    len: usize,
}

impl Payload for HostPayload {
    fn len(&self) -> usize {
        self.len
    }
}

/// The host's `storage` interface as [`Files`].
#[derive(Debug)]
struct HostFiles;

impl Files for HostFiles {
    type File = storage::File;
    type Payload = HostPayload;

    fn create(&mut self, path: &str) -> Result<storage::File, CreateError> {
        storage::create(path).map_err(|e| match e {
            // `create` fails with an io error when a committed file has the name; another name may work. The
            // other kinds (quota, invalid path) fail every name alike.
            storage::StorageError::Io(msg) => CreateError::Exists(msg),
            other => CreateError::Failed(storage_error(&other)),
        })
    }

    fn append(&mut self, file: &mut storage::File, data: &[u8]) -> Result<(), String> {
        file.append(data).map_err(|e| storage_error(&e))
    }

    /// The head from here, the samples straight from the host's payloads: media never passes through this memory.
    fn append_part(&mut self, file: &mut storage::File, part: Part<HostPayload>) -> Result<(), String> {
        // Each payload is named once; the ranges refer to it by index (ranges come grouped by track, so the
        // same few payloads recur).
        let mut payloads: Vec<&sink::Payload> = Vec::new();
        let mut chunks = Vec::with_capacity(part.data.len() + 1);
        chunks.push(storage::Chunk::Bytes(part.head));
        for d in &part.data {
            let handle = &d.payload.handle;
            let index = match payloads.iter().rposition(|p| std::ptr::eq(*p, handle)) {
                Some(i) => i,
                None => {
                    payloads.push(handle);
                    payloads.len() - 1
                }
            };
            chunks.push(storage::Chunk::Media(storage::MediaRange {
                payload: index as u32,
                offset: d.offset,
                len: d.len,
            }));
        }
        file.append_chunks(&payloads, &chunks).map_err(|e| storage_error(&e))
    }

    fn sync(&mut self, file: &mut storage::File) -> Result<(), String> {
        file.sync().map_err(|e| storage_error(&e))
    }

    fn commit(&mut self, file: storage::File) -> Result<(), String> {
        file.commit().map_err(|e| storage_error(&e))
    }
}

#[cfg(test)]
mod tests;
