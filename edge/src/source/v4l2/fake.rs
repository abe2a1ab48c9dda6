//! A V4L2 device in memory that keeps the rules a real driver enforces (buffers requested before they are
//! queued, a buffer queued once, dequeue only while streaming, formats it cannot do replaced by one it can) and
//! writes down every call, so tests check the sequence the driver logic makes.

use std::collections::VecDeque;
use std::io::{Error, ErrorKind};
use std::time::Duration;

use bytes::Bytes;

use super::{Caps, Dequeued, Device, Format, FourCc, Queue};

#[derive(Debug)]
pub struct FakeDevice {
    pub caps: Caps,
    /// Formats the driver takes, per queue; any other request gets `fallback` back.
    pub accepts: Vec<(Queue, FourCc)>,
    pub fallback: FourCc,
    /// How many buffers REQBUFS grants at most.
    pub max_buffers: u32,
    /// What the capture queue delivers, one per dequeue (a camera). For an encoder, one is released per frame
    /// queued on the output queue.
    pub frames: VecDeque<Bytes>,
    pub encoder: bool,
    /// After the frames run out, DQBUF fails as an unplugged device does (ENODEV).
    pub gone_when_empty: bool,
    /// Every call, in order: "S_FMT capture H264 640x480", "QBUF capture 2", …
    pub calls: Vec<String>,
    buffers: [u32; 2],
    queued: [VecDeque<u32>; 2],
    streaming: [bool; 2],
    /// Frames the encoder has ready on its capture queue.
    encoded: VecDeque<Bytes>,
    /// Output buffers the encoder finished reading.
    consumed: VecDeque<u32>,
}

fn at(queue: Queue) -> usize {
    match queue {
        Queue::Capture => 0,
        Queue::Output => 1,
    }
}

fn name(queue: Queue) -> &'static str {
    match queue {
        Queue::Capture => "capture",
        Queue::Output => "output",
    }
}

impl FakeDevice {
    pub fn camera(accepts: &[FourCc], frames: Vec<Bytes>) -> FakeDevice {
        FakeDevice::new(false, accepts.iter().map(|&f| (Queue::Capture, f)).collect(), frames)
    }

    /// An M2M encoder taking YU12 and giving H.264; `frames` are what it "encodes" the raw frames into.
    pub fn encoder(frames: Vec<Bytes>) -> FakeDevice {
        FakeDevice::new(true, vec![(Queue::Output, FourCc::YU12), (Queue::Capture, FourCc::H264)], frames)
    }

    fn new(encoder: bool, accepts: Vec<(Queue, FourCc)>, frames: Vec<Bytes>) -> FakeDevice {
        FakeDevice {
            caps: Caps { driver: "fake".into(), card: "Fake".into(), capture: !encoder, m2m: encoder, streaming: true },
            accepts,
            fallback: FourCc(*b"MJPG"),
            max_buffers: 4,
            frames: frames.into(),
            encoder,
            gone_when_empty: false,
            calls: Vec::new(),
            buffers: [0; 2],
            queued: [VecDeque::new(), VecDeque::new()],
            streaming: [false; 2],
            encoded: VecDeque::new(),
            consumed: VecDeque::new(),
        }
    }

    fn invalid(what: &str) -> Error {
        Error::new(ErrorKind::InvalidInput, what.to_string())
    }
}

impl Device for FakeDevice {
    fn caps(&mut self) -> std::io::Result<Caps> {
        self.calls.push("QUERYCAP".into());
        Ok(self.caps.clone())
    }

    fn set_format(&mut self, queue: Queue, want: Format) -> std::io::Result<Format> {
        self.calls.push(format!("S_FMT {} {:?} {}x{}", name(queue), want.fourcc, want.width, want.height));
        if self.buffers[at(queue)] > 0 {
            return Err(Error::new(ErrorKind::ResourceBusy, "buffers are allocated (EBUSY)"));
        }
        let fourcc = if self.accepts.contains(&(queue, want.fourcc)) { want.fourcc } else { self.fallback };
        Ok(Format {
            fourcc,
            width: want.width,
            height: want.height,
            bytes_per_line: want.width,
            size_image: want.width * want.height * 3 / 2,
        })
    }

    fn set_frame_rate(&mut self, queue: Queue, fps: u32) -> std::io::Result<()> {
        self.calls.push(format!("S_PARM {} {fps}", name(queue)));
        Ok(())
    }

    fn set_control(&mut self, id: u32, value: i32) -> std::io::Result<()> {
        self.calls.push(format!("S_CTRL {id:#x}={value}"));
        Ok(())
    }

    fn request_buffers(&mut self, queue: Queue, count: u32) -> std::io::Result<u32> {
        self.calls.push(format!("REQBUFS {} {count}", name(queue)));
        if self.streaming[at(queue)] {
            return Err(Error::new(ErrorKind::ResourceBusy, "streaming (EBUSY)"));
        }
        self.buffers[at(queue)] = count.min(self.max_buffers);
        Ok(self.buffers[at(queue)])
    }

    fn queue_buffer(&mut self, queue: Queue, index: u32, data: &[u8]) -> std::io::Result<()> {
        self.calls.push(format!("QBUF {} {index}", name(queue)));
        let q = at(queue);
        if index >= self.buffers[q] {
            return Err(FakeDevice::invalid("no such buffer (EINVAL)"));
        }
        if self.queued[q].contains(&index) {
            return Err(FakeDevice::invalid("buffer already queued (EINVAL)"));
        }
        if queue == Queue::Output {
            if data.is_empty() {
                return Err(FakeDevice::invalid("an empty output buffer"));
            }
            // The encoder reads the frame at once and has its H.264 ready.
            if let Some(f) = self.frames.pop_front() {
                self.encoded.push_back(f);
            }
            self.consumed.push_back(index);
            return Ok(());
        }
        self.queued[q].push_back(index);
        Ok(())
    }

    fn dequeue_buffer(&mut self, queue: Queue, _timeout: Duration) -> std::io::Result<Option<Dequeued>> {
        let q = at(queue);
        if !self.streaming[q] {
            return Err(FakeDevice::invalid("not streaming (EINVAL)"));
        }
        if queue == Queue::Output {
            return Ok(self.consumed.pop_front().map(|index| Dequeued { index, data: Bytes::new() }));
        }
        let source = if self.encoder { &mut self.encoded } else { &mut self.frames };
        if source.is_empty() {
            if self.gone_when_empty && !self.encoder {
                return Err(Error::from_raw_os_error(19)); // ENODEV
            }
            return Ok(None);
        }
        let Some(index) = self.queued[q].pop_front() else { return Ok(None) };
        let data = source.pop_front().unwrap_or_default();
        self.calls.push(format!("DQBUF {} {index}", name(queue)));
        Ok(Some(Dequeued { index, data }))
    }

    fn stream(&mut self, queue: Queue, on: bool) -> std::io::Result<()> {
        self.calls.push(format!("{} {}", if on { "STREAMON" } else { "STREAMOFF" }, name(queue)));
        if on && self.buffers[at(queue)] == 0 {
            return Err(FakeDevice::invalid("no buffers (EINVAL)"));
        }
        self.streaming[at(queue)] = on;
        Ok(())
    }
}
