//! Annex B H.264 from a byte stream (standard input, a file, `rpicam-vid`'s output): split into NAL units, grouped
//! into access units, released at the configured frame rate.
//!
//! These sources run as a task on the pusher's own thread, not a thread of their own: a pipe is read when epoll
//! says it has data and frames are released by the runtime's timer, so a frame costs no hand-over between threads
//! (what a pusher that copies a stream spends most of its time on otherwise; see BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_media::h264::{AccessUnits, AnnexBSplitter};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Output, Pacer, ParameterSets};
use crate::config::Video;

/// A NAL unit larger than this is garbage (a 4K I-frame at a high bitrate is a few MB).
const MAX_NAL: usize = 16 << 20;
/// Bytes per read: a few reads a second at camera bitrates when the input is a file or a fast pipe.
const READ_SIZE: usize = 256 * 1024;

/// Standard input: a pipe is read through epoll; anything else (a file redirected in) through tokio's file reads.
pub async fn run_stdin(video: Video, out: Output) -> anyhow::Result<()> {
    let stdin = std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?;
    let mut reader = Reader::new(video);
    let ended = match tokio::net::unix::pipe::Receiver::from_owned_fd(stdin.try_clone()?) {
        Ok(pipe) => reader.read_all(pipe, &out).await?,
        Err(_) => reader.read_all(tokio::fs::File::from_std(std::fs::File::from(stdin)), &out).await?,
    };
    if ended {
        tracing::info!(frames = reader.frames, "end of the H.264 input");
    }
    Ok(())
}

/// Plays a file again and again (a stand-in camera), until the pusher is gone.
pub async fn run_file_looped(path: PathBuf, video: Video, out: Output) -> anyhow::Result<()> {
    let mut reader = Reader::new(video);
    loop {
        let file = open(&path).await?;
        let before = reader.frames;
        if !reader.read_all(file, &out).await? {
            return Ok(());
        }
        if reader.frames == before {
            anyhow::bail!("{}: no H.264 access units in the file", path.display());
        }
    }
}

async fn open(path: &Path) -> anyhow::Result<tokio::fs::File> {
    tokio::fs::File::open(path).await.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The splitting and pacing state, kept across loops of a file so its pace and timestamps run on.
pub struct Reader {
    /// `None` for a live source, whose frames go out as they arrive, stamped with their arrival.
    pacer: Option<Pacer>,
    sets: ParameterSets,
    /// A live source that sends nothing for this long is stalled.
    stall: Option<Duration>,
    pub frames: u64,
}

impl Reader {
    /// A stream with no timing of its own (a file, a pipe of unknown origin): released at `fps`.
    pub fn new(video: Video) -> Reader {
        Reader { pacer: Some(Pacer::new(video.fps)), sets: ParameterSets::default(), stall: None, frames: 0 }
    }

    /// A camera's own output (rpicam-vid): frames go out as they come; a read that waits longer than `stall`
    /// fails, so a hung camera tool is restarted.
    pub fn live(stall: Duration) -> Reader {
        Reader { pacer: None, sets: ParameterSets::default(), stall: Some(stall), frames: 0 }
    }

    /// Reads one stream to its end: `true` at the end, `false` when the pusher is gone.
    pub async fn read_all(&mut self, mut input: impl AsyncRead + Unpin, out: &Output) -> anyhow::Result<bool> {
        let mut splitter = AnnexBSplitter::new(MAX_NAL);
        let mut grouper = AccessUnits::default();
        let mut buf = vec![0u8; READ_SIZE];
        let mut nals: Vec<Bytes> = Vec::new();
        loop {
            // The first bytes get three times as long: a camera tool takes seconds to start on a small Pi.
            let stall = self.stall.map(|s| if self.frames == 0 { s * 3 } else { s });
            let n = match stall {
                Some(limit) => tokio::time::timeout(limit, input.read(&mut buf))
                    .await
                    .map_err(|_| anyhow::anyhow!("no data for {}s", limit.as_secs()))??,
                None => input.read(&mut buf).await?,
            };
            if n == 0 {
                break;
            }
            splitter.push(&buf[..n], &mut nals);
            for nal in nals.drain(..) {
                if let Some(unit) = grouper.push(nal)
                    && !self.release(unit, out).await
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
                && !self.release(unit, out).await
            {
                return Ok(false);
            }
        }
        if let Some(unit) = grouper.finish()
            && !self.release(unit, out).await
        {
            return Ok(false);
        }
        if splitter.oversized > 0 {
            tracing::warn!(dropped = splitter.oversized, "dropped NAL units over {MAX_NAL} bytes (not H.264?)");
        }
        Ok(true)
    }

    async fn release(&mut self, nals: Vec<Bytes>, out: &Output) -> bool {
        let captured = match &mut self.pacer {
            Some(pacer) => {
                let due = pacer.next();
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        self.frames += 1;
        // A byte stream cannot be asked for a keyframe: the request is dropped, the next IDR comes on schedule.
        let _ = out.take_keyframe_request();
        out.send(self.sets.complete(nals, captured)).is_ok()
    }
}
