//! Annex B H.264 from a byte stream (standard input, a file, `rpicam-vid`'s output): split into NAL units, grouped
//! into access units, released at the configured frame rate.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use sluice_media::h264::{AccessUnits, AnnexBSplitter};

use super::{AccessUnit, Output, Pacer};
use crate::config::Video;

/// A NAL unit larger than this is garbage (a 4K I-frame at a high bitrate is a few MB).
const MAX_NAL: usize = 16 << 20;

/// Reads `input` to its end. `Ok` at the end of the stream or when the pusher is gone.
pub fn run(input: impl Read, video: Video, out: Output) -> anyhow::Result<()> {
    let mut reader = Reader::new(video);
    let ended = reader.read_all(input, &out)?;
    if ended {
        tracing::info!(frames = reader.frames, "end of the H.264 input");
    }
    Ok(())
}

/// Plays a file again and again (a stand-in camera), until the pusher is gone.
pub fn run_file_looped(path: &Path, video: Video, out: Output) -> anyhow::Result<()> {
    let mut reader = Reader::new(video);
    loop {
        let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let before = reader.frames;
        if !reader.read_all(file, &out)? {
            return Ok(());
        }
        if reader.frames == before {
            anyhow::bail!("{}: no H.264 access units in the file", path.display());
        }
    }
}

/// The splitting and pacing state, kept across loops of a file so its pace and timestamps run on.
struct Reader {
    pacer: Pacer,
    frames: u64,
}

impl Reader {
    fn new(video: Video) -> Reader {
        Reader { pacer: Pacer::new(video.fps), frames: 0 }
    }

    /// Reads one stream to its end: `true` at the end, `false` when the pusher is gone.
    fn read_all(&mut self, mut input: impl Read, out: &Output) -> anyhow::Result<bool> {
        let mut splitter = AnnexBSplitter::new(MAX_NAL);
        let mut grouper = AccessUnits::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut nals: Vec<Bytes> = Vec::new();
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            splitter.push(&buf[..n], &mut nals);
            for nal in nals.drain(..) {
                if let Some(unit) = grouper.push(nal)
                    && !self.release(unit, out)
                {
                    return Ok(false);
                }
            }
            if out.is_closed() {
                return Ok(false);
            }
        }
        splitter.finish(&mut nals);
        for nal in nals.drain(..) {
            if let Some(unit) = grouper.push(nal)
                && !self.release(unit, out)
            {
                return Ok(false);
            }
        }
        if let Some(unit) = grouper.finish()
            && !self.release(unit, out)
        {
            return Ok(false);
        }
        if splitter.oversized > 0 {
            tracing::warn!(dropped = splitter.oversized, "dropped NAL units over {MAX_NAL} bytes (not H.264?)");
        }
        Ok(true)
    }

    fn release(&mut self, nals: Vec<Bytes>, out: &Output) -> bool {
        let captured = self.pacer.wait();
        self.frames += 1;
        // A byte stream cannot be asked for a keyframe: the request is dropped, the next IDR comes on schedule.
        let _ = out.take_keyframe_request();
        out.send(AccessUnit::new(nals, captured)).is_ok()
    }
}
