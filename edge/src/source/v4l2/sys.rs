//! The real [`Device`]: V4L2 ioctls on `/dev/videoN` through rustix, memory-mapped buffers, single- and
//! multi-planar queues (the Pi's encoder is multi-planar, USB cameras are single-planar).
//!
//! The structs mirror `linux/videodev2.h` for the 64-bit ABI the edge is built for (x86_64, aarch64); their sizes
//! are part of each ioctl's number, so a wrong layout fails with ENOTTY instead of corrupting memory.
//!
//! This module is the only unsafe code of the edge: each `unsafe` block is an ioctl on a struct of the size its
//! opcode names, or a mapping of a buffer the driver sized.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags, open};
use rustix::io::Errno;
use rustix::ioctl::{Opcode, Setter, Updater, ioctl, opcode};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

use super::{Caps, Dequeued, Device, Format, FourCc, Queue};

#[repr(C)]
struct Capability {
    driver: [u8; 16],
    card: [u8; 32],
    bus_info: [u8; 32],
    version: u32,
    capabilities: u32,
    device_caps: u32,
    reserved: [u32; 3],
}

/// `struct v4l2_format`: the type, then a union that holds pointers (so 8-aligned on 64-bit).
#[repr(C)]
struct RawFormat {
    kind: u32,
    #[cfg(target_pointer_width = "64")]
    pad: u32,
    fmt: [u8; 200],
}

#[repr(C)]
struct StreamParm {
    kind: u32,
    parm: [u8; 200],
}

#[repr(C)]
struct Control {
    id: u32,
    value: i32,
}

#[repr(C)]
struct RequestBuffers {
    count: u32,
    kind: u32,
    memory: u32,
    capabilities: u32,
    flags: u8,
    reserved: [u8; 3],
}

#[repr(C)]
struct Buffer {
    index: u32,
    kind: u32,
    bytesused: u32,
    flags: u32,
    field: u32,
    timestamp: [isize; 2],
    timecode: [u32; 4],
    sequence: u32,
    memory: u32,
    /// union { offset; userptr; planes; fd }
    m: usize,
    length: u32,
    reserved2: u32,
    request_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Plane {
    bytesused: u32,
    length: u32,
    /// union { mem_offset; userptr; fd }
    m: usize,
    data_offset: u32,
    reserved: [u32; 11],
}

const QUERYCAP: Opcode = opcode::read::<Capability>(b'V', 0);
const S_FMT: Opcode = opcode::read_write::<RawFormat>(b'V', 5);
const REQBUFS: Opcode = opcode::read_write::<RequestBuffers>(b'V', 8);
const QUERYBUF: Opcode = opcode::read_write::<Buffer>(b'V', 9);
const QBUF: Opcode = opcode::read_write::<Buffer>(b'V', 15);
const DQBUF: Opcode = opcode::read_write::<Buffer>(b'V', 17);
const STREAMON: Opcode = opcode::write::<i32>(b'V', 18);
const STREAMOFF: Opcode = opcode::write::<i32>(b'V', 19);
const S_PARM: Opcode = opcode::read_write::<StreamParm>(b'V', 22);
const S_CTRL: Opcode = opcode::read_write::<Control>(b'V', 28);

const CAP_VIDEO_CAPTURE: u32 = 0x1;
const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x1000;
const CAP_VIDEO_OUTPUT_MPLANE: u32 = 0x2000;
const CAP_VIDEO_M2M_MPLANE: u32 = 0x4000;
const CAP_VIDEO_M2M: u32 = 0x8000;
const CAP_STREAMING: u32 = 0x0400_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
const MEMORY_MMAP: u32 = 1;
const FIELD_NONE: u32 = 1;

struct Mapping {
    ptr: *mut c_void,
    len: usize,
}

/// An open V4L2 device and its mapped buffers.
pub struct SysDevice {
    fd: OwnedFd,
    mplane: bool,
    capture: Vec<Mapping>,
    output: Vec<Mapping>,
}

impl std::fmt::Debug for SysDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysDevice").field("mplane", &self.mplane).finish()
    }
}

impl SysDevice {
    pub fn open(path: &Path) -> anyhow::Result<SysDevice> {
        let fd = open(path, OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut dev = SysDevice { fd, mplane: false, capture: Vec::new(), output: Vec::new() };
        let caps = dev.raw_caps()?;
        dev.mplane = caps & (CAP_VIDEO_CAPTURE_MPLANE | CAP_VIDEO_OUTPUT_MPLANE | CAP_VIDEO_M2M_MPLANE) != 0;
        Ok(dev)
    }

    fn raw_caps(&mut self) -> std::io::Result<u32> {
        let mut c: Capability = zeroed_capability();
        unsafe { ioctl(&self.fd, Updater::<QUERYCAP, Capability>::new(&mut c)) }?;
        Ok(if c.capabilities & CAP_DEVICE_CAPS != 0 { c.device_caps } else { c.capabilities })
    }

    fn kind(&self, queue: Queue) -> u32 {
        match (queue, self.mplane) {
            (Queue::Capture, false) => 1,
            (Queue::Output, false) => 2,
            (Queue::Capture, true) => 9,
            (Queue::Output, true) => 10,
        }
    }

    fn maps(&mut self, queue: Queue) -> &mut Vec<Mapping> {
        match queue {
            Queue::Capture => &mut self.capture,
            Queue::Output => &mut self.output,
        }
    }

    fn buffer(&self, queue: Queue, index: u32, planes: &mut [Plane; 1]) -> Buffer {
        let mut b = Buffer {
            index,
            kind: self.kind(queue),
            bytesused: 0,
            flags: 0,
            field: FIELD_NONE,
            timestamp: [0; 2],
            timecode: [0; 4],
            sequence: 0,
            memory: MEMORY_MMAP,
            m: 0,
            length: 0,
            reserved2: 0,
            request_fd: 0,
        };
        if self.mplane {
            b.m = planes.as_mut_ptr() as usize;
            b.length = 1;
        }
        b
    }

    fn unmap(&mut self, queue: Queue) {
        for m in self.maps(queue).drain(..) {
            // SAFETY: each mapping was made by `request_buffers` with this pointer and length and is unmapped once.
            let _ = unsafe { munmap(m.ptr, m.len) };
        }
    }
}

impl Drop for SysDevice {
    fn drop(&mut self) {
        self.unmap(Queue::Capture);
        self.unmap(Queue::Output);
    }
}

fn zeroed_capability() -> Capability {
    Capability {
        driver: [0; 16],
        card: [0; 32],
        bus_info: [0; 32],
        version: 0,
        capabilities: 0,
        device_caps: 0,
        reserved: [0; 3],
    }
}

fn zero_plane() -> Plane {
    Plane { bytesused: 0, length: 0, m: 0, data_offset: 0, reserved: [0; 11] }
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn get(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

impl Device for SysDevice {
    fn caps(&mut self) -> std::io::Result<Caps> {
        let mut c = zeroed_capability();
        unsafe { ioctl(&self.fd, Updater::<QUERYCAP, Capability>::new(&mut c)) }?;
        let caps = if c.capabilities & CAP_DEVICE_CAPS != 0 { c.device_caps } else { c.capabilities };
        Ok(Caps {
            driver: text(&c.driver),
            card: text(&c.card),
            capture: caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE) != 0,
            m2m: caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE) != 0,
            streaming: caps & CAP_STREAMING != 0,
        })
    }

    fn set_format(&mut self, queue: Queue, want: Format) -> std::io::Result<Format> {
        let mut f = RawFormat {
            kind: self.kind(queue),
            #[cfg(target_pointer_width = "64")]
            pad: 0,
            fmt: [0; 200],
        };
        // pix and pix_mp start alike: width, height, pixelformat, field.
        put(&mut f.fmt, 0, want.width);
        put(&mut f.fmt, 4, want.height);
        put(&mut f.fmt, 8, u32::from_le_bytes(want.fourcc.0));
        put(&mut f.fmt, 12, FIELD_NONE);
        if self.mplane {
            f.fmt[180] = 1; // num_planes
        }
        unsafe { ioctl(&self.fd, Updater::<S_FMT, RawFormat>::new(&mut f)) }?;
        let (bytes_per_line, size_image) =
            if self.mplane { (get(&f.fmt, 24), get(&f.fmt, 20)) } else { (get(&f.fmt, 16), get(&f.fmt, 20)) };
        Ok(Format {
            fourcc: FourCc(get(&f.fmt, 8).to_le_bytes()),
            width: get(&f.fmt, 0),
            height: get(&f.fmt, 4),
            bytes_per_line,
            size_image,
        })
    }

    fn set_frame_rate(&mut self, queue: Queue, fps: u32) -> std::io::Result<()> {
        let mut p = StreamParm { kind: self.kind(queue), parm: [0; 200] };
        // capture and output parms alike: capability, mode, then timeperframe {numerator, denominator}.
        put(&mut p.parm, 8, 1);
        put(&mut p.parm, 12, fps);
        unsafe { ioctl(&self.fd, Updater::<S_PARM, StreamParm>::new(&mut p)) }?;
        Ok(())
    }

    fn set_control(&mut self, id: u32, value: i32) -> std::io::Result<()> {
        let mut c = Control { id, value };
        unsafe { ioctl(&self.fd, Updater::<S_CTRL, Control>::new(&mut c)) }?;
        Ok(())
    }

    fn request_buffers(&mut self, queue: Queue, count: u32) -> std::io::Result<u32> {
        self.unmap(queue);
        let mut r = RequestBuffers {
            count,
            kind: self.kind(queue),
            memory: MEMORY_MMAP,
            capabilities: 0,
            flags: 0,
            reserved: [0; 3],
        };
        unsafe { ioctl(&self.fd, Updater::<REQBUFS, RequestBuffers>::new(&mut r)) }?;
        for index in 0..r.count {
            let mut planes = [zero_plane()];
            let mut b = self.buffer(queue, index, &mut planes);
            unsafe { ioctl(&self.fd, Updater::<QUERYBUF, Buffer>::new(&mut b)) }?;
            let (offset, len) = if self.mplane {
                (planes[0].m as u64 & 0xffff_ffff, planes[0].length)
            } else {
                (b.m as u64 & 0xffff_ffff, b.length)
            };
            // SAFETY: the driver gave this offset and length for buffer `index`; the mapping lives until unmap.
            let ptr = unsafe {
                mmap(
                    std::ptr::null_mut(),
                    len as usize,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED,
                    &self.fd,
                    offset,
                )
            }?;
            self.maps(queue).push(Mapping { ptr, len: len as usize });
        }
        Ok(r.count)
    }

    fn queue_buffer(&mut self, queue: Queue, index: u32, data: &[u8]) -> std::io::Result<()> {
        let mut used = 0;
        if queue == Queue::Output {
            let map = self.output.get(index as usize).ok_or_else(|| std::io::Error::other("no such buffer"))?;
            let n = data.len().min(map.len);
            // SAFETY: the mapping is `map.len` bytes long and the driver does not read it until queued below.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), map.ptr.cast::<u8>(), n) };
            used = n as u32;
        }
        let mut planes = [Plane { bytesused: used, ..zero_plane() }];
        let mut b = self.buffer(queue, index, &mut planes);
        if !self.mplane {
            b.bytesused = used;
        }
        unsafe { ioctl(&self.fd, Updater::<QBUF, Buffer>::new(&mut b)) }?;
        Ok(())
    }

    fn dequeue_buffer(&mut self, queue: Queue, timeout: Duration) -> std::io::Result<Option<Dequeued>> {
        let events = if queue == Queue::Capture { PollFlags::IN } else { PollFlags::OUT };
        let mut fds = [PollFd::new(&self.fd, events | PollFlags::PRI)];
        let wait = Timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
        match poll(&mut fds, Some(&wait)) {
            Ok(0) | Err(Errno::INTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[0].revents().contains(PollFlags::ERR) {
            return Err(std::io::Error::other("the device reported an error (unplugged?)"));
        }
        let mut planes = [zero_plane()];
        let mut b = self.buffer(queue, 0, &mut planes);
        match unsafe { ioctl(&self.fd, Updater::<DQBUF, Buffer>::new(&mut b)) } {
            Ok(()) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let data = if queue == Queue::Capture {
            let (start, end) = if self.mplane {
                (planes[0].data_offset as usize, planes[0].bytesused as usize)
            } else {
                (0, b.bytesused as usize)
            };
            let map = self.capture.get(b.index as usize).ok_or_else(|| std::io::Error::other("no such buffer"))?;
            let end = end.min(map.len);
            // SAFETY: the driver handed the buffer back (dequeued); it is ours to read until queued again.
            let all = unsafe { std::slice::from_raw_parts(map.ptr.cast::<u8>(), end) };
            Bytes::copy_from_slice(&all[start.min(end)..])
        } else {
            Bytes::new()
        };
        Ok(Some(Dequeued { index: b.index, data }))
    }

    fn stream(&mut self, queue: Queue, on: bool) -> std::io::Result<()> {
        let kind = self.kind(queue) as i32;
        if on {
            unsafe { ioctl(&self.fd, Setter::<STREAMON, i32>::new(kind)) }?;
        } else {
            unsafe { ioctl(&self.fd, Setter::<STREAMOFF, i32>::new(kind)) }?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ioctl numbers videodev2.h defines on 64-bit Linux: a struct of the wrong size changes them.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn ioctl_numbers_match_the_kernel_headers() {
        assert_eq!(QUERYCAP, 0x8068_5600);
        assert_eq!(S_FMT, 0xc0d0_5605);
        assert_eq!(REQBUFS, 0xc014_5608);
        assert_eq!(QUERYBUF, 0xc058_5609);
        assert_eq!(QBUF, 0xc058_560f);
        assert_eq!(DQBUF, 0xc058_5611);
        assert_eq!(STREAMON, 0x4004_5612);
        assert_eq!(S_PARM, 0xc0cc_5616);
        assert_eq!(S_CTRL, 0xc008_561c);
        assert_eq!(std::mem::size_of::<Plane>(), 64);
    }

    #[test]
    fn a_missing_device_is_an_error_that_names_it() {
        let err = SysDevice::open(Path::new("/dev/video-not-there")).expect_err("no device");
        assert!(err.to_string().contains("/dev/video-not-there"), "{err}");
    }
}
