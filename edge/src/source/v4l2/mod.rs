//! V4L2 cameras. Two ways to H.264, tried in this order:
//! 1. the camera encodes (USB cameras with an H.264 format): its capture queue gives access units;
//! 2. the camera gives raw frames (YUV 4:2:0) and the memory-to-memory encoder (`/dev/video11`, the Pi 0-4's
//!    hardware encoder) turns them into H.264: each raw frame is copied into the encoder's output queue and the
//!    access units come out of its capture queue.
//!
//! The ioctl sequence lives here, over the [`Device`] trait; [`sys`] is the real device (the ioctls themselves),
//! and the tests drive the same sequence through a fake that answers as a real driver does, errors included.

pub mod sys;

#[cfg(test)]
mod fake;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_media::h264::{AccessUnits, AnnexBSplitter};

use sluice_client::backoff::Backoff;

use super::{Output, ParameterSets};
use crate::config::Video;

/// Which queue of a device: a camera captures; an encoder takes raw frames on `Output` and gives H.264 on
/// `Capture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Capture,
    Output,
}

/// A four-character pixel format code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const H264: FourCc = FourCc(*b"H264");
    /// Planar YUV 4:2:0 (I420).
    pub const YU12: FourCc = FourCc(*b"YU12");
    /// Packed YUV 4:2:2, what most USB cameras give uncompressed; the Pi's encoder takes it too.
    pub const YUYV: FourCc = FourCc(*b"YUYV");
}

impl std::fmt::Debug for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub fourcc: FourCc,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane (raw formats), as the driver says.
    pub bytes_per_line: u32,
    /// Bytes of one whole image, as the driver says.
    pub size_image: u32,
}

/// What a device says it can do (VIDIOC_QUERYCAP's device_caps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub driver: String,
    pub card: String,
    pub capture: bool,
    /// A memory-to-memory device (an encoder).
    pub m2m: bool,
    pub streaming: bool,
}

/// A dequeued buffer: its index (to queue it again) and, for capture queues, a copy of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dequeued {
    pub index: u32,
    pub data: Bytes,
}

/// The V4L2 calls the driver logic makes; one method per ioctl (or per ioctl and its mmap).
pub trait Device {
    fn caps(&mut self) -> std::io::Result<Caps>;
    /// VIDIOC_S_FMT: returns the format the driver chose, which may differ from the one asked for.
    fn set_format(&mut self, queue: Queue, format: Format) -> std::io::Result<Format>;
    /// VIDIOC_S_PARM (frames per second).
    fn set_frame_rate(&mut self, queue: Queue, fps: u32) -> std::io::Result<()>;
    /// VIDIOC_S_CTRL.
    fn set_control(&mut self, id: u32, value: i32) -> std::io::Result<()>;
    /// VIDIOC_REQBUFS with memory-mapped buffers, each then mapped: returns how many the driver gave.
    fn request_buffers(&mut self, queue: Queue, count: u32) -> std::io::Result<u32>;
    /// VIDIOC_QBUF. On an output queue `data` is copied into the buffer first.
    fn queue_buffer(&mut self, queue: Queue, index: u32, data: &[u8]) -> std::io::Result<()>;
    /// Waits up to `timeout` for a buffer, then VIDIOC_DQBUF. `None` when the wait ran out.
    fn dequeue_buffer(&mut self, queue: Queue, timeout: Duration) -> std::io::Result<Option<Dequeued>>;
    /// VIDIOC_STREAMON / VIDIOC_STREAMOFF.
    fn stream(&mut self, queue: Queue, on: bool) -> std::io::Result<()>;
}

/// Codec controls (videodev2.h, V4L2_CID_MPEG_VIDEO_*): set where the device has them, ignored where not.
pub mod control {
    pub const BITRATE: u32 = 0x0099_09cf;
    pub const REPEAT_SEQ_HEADER: u32 = 0x0099_09e2;
    pub const FORCE_KEY_FRAME: u32 = 0x0099_09e5;
    pub const H264_I_PERIOD: u32 = 0x0099_0a66;
    pub const H264_PROFILE: u32 = 0x0099_0a6b;
    /// V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE.
    pub const PROFILE_CONSTRAINED_BASELINE: i32 = 1;
}

/// Why a camera could not be used, in words a user acts on.
#[derive(Debug, thiserror::Error)]
pub enum V4l2Error {
    #[error("{0} is not a video capture device with streaming I/O")]
    NotACamera(String),
    #[error("{0} is not a memory-to-memory encoder")]
    NotAnEncoder(String),
    #[error("{device} gives neither H.264 nor raw YUV (YU12, YUYV) (it offered {offered:?})")]
    FormatRefused { device: String, offered: FourCc },
    #[error("{device} gave only {got} buffers; at least 2 are needed")]
    TooFewBuffers { device: String, got: u32 },
    #[error("{device}: {source}")]
    Io { device: String, source: std::io::Error },
    #[error("{0} delivered no frame for 5s")]
    Stalled(String),
    #[error(
        "{encoder} lays frames out as {wants} and the camera as {gives}; use another size (a multiple of 32 wide and 16 high)"
    )]
    LayoutMismatch { encoder: String, wants: String, gives: String },
}

const BUFFERS: u32 = 4;
const FRAME_WAIT: Duration = Duration::from_millis(200);
const STALL: Duration = Duration::from_secs(5);

/// Opens the camera (and the encoder, if the camera gives raw frames) and streams until the pusher is gone. A
/// camera that fails (unplugged, stalled, not there yet at boot) is opened again with backoff, for ever.
pub fn run_device(device: &Path, encoder: &Path, video: Video, out: &Output) -> anyhow::Result<()> {
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let result = run_once(device, encoder, video, out);
        if out.is_closed() {
            return Ok(());
        }
        // A device that cannot do what is asked will not learn to: that is for the person configuring it.
        if let Err(e) = &result
            && e.downcast_ref::<V4l2Error>().is_some_and(V4l2Error::is_configuration)
        {
            return result;
        }
        let wait = backoff.failed(Some(started.elapsed()));
        match result {
            Ok(()) => {
                tracing::warn!(device = %device.display(), "the camera stopped; opening it again in {:.1}s", wait.as_secs_f64())
            }
            Err(e) => tracing::warn!("{e:#}; opening the camera again in {:.1}s", wait.as_secs_f64()),
        }
        std::thread::sleep(wait);
    }
}

fn run_once(device: &Path, encoder: &Path, video: Video, out: &Output) -> anyhow::Result<()> {
    let name = device.display().to_string();
    let mut camera = sys::SysDevice::open(device)?;
    match Camera::start(&mut camera, &name, video)? {
        Camera::H264 => stream_h264(&mut camera, &name, out)?,
        Camera::Raw(format) => {
            let enc_name = encoder.display().to_string();
            let mut enc = sys::SysDevice::open(encoder)?;
            let encoder = Encoder::start(&mut enc, &enc_name, format, video)?;
            stream_encoded(&mut camera, &name, &mut enc, &enc_name, encoder, out)?;
        }
    }
    Ok(())
}

/// How the camera was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Camera {
    /// It encodes H.264 itself.
    H264,
    /// It gives raw frames in this format, to be encoded.
    Raw(Format),
}

impl V4l2Error {
    /// A refusal of the configuration (wrong device, format, size), as opposed to a device that went away.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            V4l2Error::NotACamera(_)
                | V4l2Error::NotAnEncoder(_)
                | V4l2Error::FormatRefused { .. }
                | V4l2Error::TooFewBuffers { .. }
                | V4l2Error::LayoutMismatch { .. }
        )
    }
}

fn io(device: &str) -> impl Fn(std::io::Error) -> V4l2Error + '_ {
    move |source| V4l2Error::Io { device: device.to_string(), source }
}

impl Camera {
    /// Checks the device, sets the format (H.264 if the camera has it, else YUV 4:2:0) and frame rate, maps the
    /// buffers, queues them all and starts streaming.
    pub fn start(dev: &mut impl Device, name: &str, video: Video) -> Result<Camera, V4l2Error> {
        let caps = dev.caps().map_err(io(name))?;
        if !caps.capture || !caps.streaming {
            return Err(V4l2Error::NotACamera(name.to_string()));
        }
        let want =
            |fourcc| Format { fourcc, width: video.width, height: video.height, bytes_per_line: 0, size_image: 0 };
        let got = dev.set_format(Queue::Capture, want(FourCc::H264)).map_err(io(name))?;
        let camera = if got.fourcc == FourCc::H264 {
            tracing::info!(
                device = name,
                card = caps.card,
                width = got.width,
                height = got.height,
                "the camera encodes H.264"
            );
            Camera::H264
        } else {
            let mut raw = dev.set_format(Queue::Capture, want(FourCc::YU12)).map_err(io(name))?;
            if raw.fourcc != FourCc::YU12 {
                raw = dev.set_format(Queue::Capture, want(FourCc::YUYV)).map_err(io(name))?;
            }
            if raw.fourcc != FourCc::YU12 && raw.fourcc != FourCc::YUYV {
                return Err(V4l2Error::FormatRefused { device: name.to_string(), offered: raw.fourcc });
            }
            tracing::info!(
                device = name,
                card = caps.card,
                width = raw.width,
                height = raw.height,
                "raw camera frames, to be encoded"
            );
            Camera::Raw(raw)
        };
        if let Err(e) = dev.set_frame_rate(Queue::Capture, video.fps) {
            tracing::warn!(device = name, "the camera keeps its own frame rate: {e}");
        }
        if camera == Camera::H264 {
            set_codec_controls(dev, name, video);
        }
        let count = dev.request_buffers(Queue::Capture, BUFFERS).map_err(io(name))?;
        if count < 2 {
            return Err(V4l2Error::TooFewBuffers { device: name.to_string(), got: count });
        }
        for i in 0..count {
            dev.queue_buffer(Queue::Capture, i, &[]).map_err(io(name))?;
        }
        dev.stream(Queue::Capture, true).map_err(io(name))?;
        Ok(camera)
    }
}

/// The encoder side of the raw-camera path.
#[derive(Debug)]
pub struct Encoder {
    /// Output-queue buffers not holding a frame the encoder still reads.
    free: Vec<u32>,
}

impl Encoder {
    /// Sets raw frames in and H.264 out, the codec controls, maps both queues' buffers and starts both.
    pub fn start(dev: &mut impl Device, name: &str, raw: Format, video: Video) -> Result<Encoder, V4l2Error> {
        let caps = dev.caps().map_err(io(name))?;
        if !caps.m2m || !caps.streaming {
            return Err(V4l2Error::NotAnEncoder(name.to_string()));
        }
        let input = dev.set_format(Queue::Output, raw).map_err(io(name))?;
        if input.fourcc != raw.fourcc {
            return Err(V4l2Error::FormatRefused { device: name.to_string(), offered: input.fourcc });
        }
        // Frames are copied as they are: the encoder must read them with the camera's line stride and size (the
        // Pi's aligns lines to 32 bytes and heights to 16), or the picture would come out sheared.
        if input.bytes_per_line != raw.bytes_per_line || input.size_image < raw.size_image {
            let layout =
                |f: &Format| format!("{}x{} stride {} size {}", f.width, f.height, f.bytes_per_line, f.size_image);
            return Err(V4l2Error::LayoutMismatch {
                encoder: name.to_string(),
                wants: layout(&input),
                gives: layout(&raw),
            });
        }
        let h264 = Format { fourcc: FourCc::H264, bytes_per_line: 0, size_image: 0, ..raw };
        let output = dev.set_format(Queue::Capture, h264).map_err(io(name))?;
        if output.fourcc != FourCc::H264 {
            return Err(V4l2Error::FormatRefused { device: name.to_string(), offered: output.fourcc });
        }
        if let Err(e) = dev.set_frame_rate(Queue::Output, video.fps) {
            tracing::debug!(device = name, "the encoder takes no frame rate: {e}");
        }
        set_codec_controls(dev, name, video);
        let inputs = dev.request_buffers(Queue::Output, BUFFERS).map_err(io(name))?;
        let outputs = dev.request_buffers(Queue::Capture, BUFFERS).map_err(io(name))?;
        if inputs < 1 || outputs < 2 {
            return Err(V4l2Error::TooFewBuffers { device: name.to_string(), got: inputs.min(outputs) });
        }
        for i in 0..outputs {
            dev.queue_buffer(Queue::Capture, i, &[]).map_err(io(name))?;
        }
        dev.stream(Queue::Output, true).map_err(io(name))?;
        dev.stream(Queue::Capture, true).map_err(io(name))?;
        Ok(Encoder { free: (0..inputs).rev().collect() })
    }
}

fn set_codec_controls(dev: &mut impl Device, name: &str, video: Video) {
    for (id, value, what) in [
        (control::BITRATE, video.bitrate as i32, "bitrate"),
        (control::H264_I_PERIOD, video.keyframe_every as i32, "keyframe interval"),
        (control::REPEAT_SEQ_HEADER, 1, "SPS/PPS before every keyframe"),
        (control::H264_PROFILE, control::PROFILE_CONSTRAINED_BASELINE, "Constrained Baseline profile"),
    ] {
        if let Err(e) = dev.set_control(id, value) {
            tracing::debug!(device = name, "cannot set the {what}: {e}");
        }
    }
}

/// Turns encoder buffers into access units. A V4L2 encoder's capture buffer holds one encoded frame (the stateful
/// encoder interface), sometimes with the SPS/PPS before it, and some give the SPS/PPS in a buffer of their own:
/// those wait for their picture.
struct Units {
    splitter: AnnexBSplitter,
    grouper: AccessUnits<Bytes>,
    nals: Vec<Bytes>,
    sets: ParameterSets,
}

impl Units {
    fn new() -> Units {
        Units {
            splitter: AnnexBSplitter::new(16 << 20),
            grouper: AccessUnits::default(),
            nals: Vec::new(),
            sets: ParameterSets::default(),
        }
    }

    /// Takes one buffer; sends every access unit completed. `false` when the pusher is gone.
    fn take(&mut self, data: &[u8], out: &Output) -> bool {
        self.splitter.push(data, &mut self.nals);
        // The buffer ends an access unit: let the last NAL unit out without waiting for the next start code.
        self.splitter.finish(&mut self.nals);
        let now = Instant::now();
        for nal in std::mem::take(&mut self.nals) {
            if let Some(nals) = self.grouper.push(nal)
                && out.send(self.sets.complete(nals, now)).is_err()
            {
                return false;
            }
        }
        match self.grouper.finish() {
            Some(nals) => out.send(self.sets.complete(nals, now)).is_ok(),
            None => true,
        }
    }
}

/// The camera encodes: dequeue, send, queue again.
pub fn stream_h264(dev: &mut impl Device, name: &str, out: &Output) -> Result<(), V4l2Error> {
    let mut units = Units::new();
    let mut last = Instant::now();
    loop {
        if out.take_keyframe_request() {
            let _ = dev.set_control(control::FORCE_KEY_FRAME, 1);
        }
        match dev.dequeue_buffer(Queue::Capture, FRAME_WAIT).map_err(io(name))? {
            Some(buf) => {
                last = Instant::now();
                let open = units.take(&buf.data, out);
                dev.queue_buffer(Queue::Capture, buf.index, &[]).map_err(io(name))?;
                if !open {
                    break;
                }
            }
            None if out.is_closed() => break,
            None if last.elapsed() > STALL => return Err(V4l2Error::Stalled(name.to_string())),
            None => {}
        }
    }
    let _ = dev.stream(Queue::Capture, false);
    Ok(())
}

/// Raw camera frames through the encoder.
pub fn stream_encoded(
    cam: &mut impl Device,
    cam_name: &str,
    enc: &mut impl Device,
    enc_name: &str,
    mut encoder: Encoder,
    out: &Output,
) -> Result<(), V4l2Error> {
    let mut units = Units::new();
    let mut last = Instant::now();
    // An encoder that takes frames and gives nothing back is stalled too.
    let mut encoded_at = Instant::now();
    'streaming: loop {
        if out.take_keyframe_request() {
            let _ = enc.set_control(control::FORCE_KEY_FRAME, 1);
        }
        // Buffers the encoder has finished reading come back first, so a frame has somewhere to go.
        while let Some(done) = enc.dequeue_buffer(Queue::Output, Duration::ZERO).map_err(io(enc_name))? {
            encoder.free.push(done.index);
        }
        if let Some(frame) = cam.dequeue_buffer(Queue::Capture, FRAME_WAIT).map_err(io(cam_name))? {
            last = Instant::now();
            match encoder.free.pop() {
                Some(slot) => enc.queue_buffer(Queue::Output, slot, &frame.data).map_err(io(enc_name))?,
                // The encoder is behind: this frame is dropped rather than queued up.
                None => tracing::debug!(device = enc_name, "encoder busy; a frame dropped"),
            }
            cam.queue_buffer(Queue::Capture, frame.index, &[]).map_err(io(cam_name))?;
        } else if out.is_closed() {
            break 'streaming;
        } else if last.elapsed() > STALL {
            return Err(V4l2Error::Stalled(cam_name.to_string()));
        }
        if encoded_at.elapsed() > STALL {
            return Err(V4l2Error::Stalled(enc_name.to_string()));
        }
        while let Some(buf) = enc.dequeue_buffer(Queue::Capture, Duration::ZERO).map_err(io(enc_name))? {
            encoded_at = Instant::now();
            let open = units.take(&buf.data, out);
            enc.queue_buffer(Queue::Capture, buf.index, &[]).map_err(io(enc_name))?;
            if !open {
                break 'streaming;
            }
        }
    }
    let _ = cam.stream(Queue::Capture, false);
    let _ = enc.stream(Queue::Output, false);
    let _ = enc.stream(Queue::Capture, false);
    Ok(())
}

#[cfg(test)]
mod tests;
