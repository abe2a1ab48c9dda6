use bytes::Bytes;

use super::fake::FakeDevice;
use super::*;
use crate::source::pcm_h264::{Encoder as PcmEncoder, Picture};
use crate::source::{AccessUnit, channel};

const VIDEO: Video = Video { width: 64, height: 48, fps: 30, bitrate: 1_000_000, keyframe_every: 30 };

/// `n` access units in Annex B, one per buffer as encoders deliver them: a keyframe, then pictures that change.
fn h264_buffers(n: usize) -> Vec<Bytes> {
    let mut enc = PcmEncoder::new(64, 48, 30);
    let mut p = Picture::new(64, 48);
    (0..n)
        .map(|i| {
            p.y[i] = 200;
            let mut b = Vec::new();
            for nal in enc.encode(&p, false) {
                b.extend_from_slice(&[0, 0, 0, 1]);
                b.extend_from_slice(&nal);
            }
            Bytes::from(b)
        })
        .collect()
}

fn drain(capture: &mut crate::source::Capture) -> Vec<AccessUnit> {
    let mut units = Vec::new();
    while let Ok(u) = capture.units.try_recv() {
        units.push(u);
    }
    units
}

#[test]
fn an_h264_camera_is_set_up_in_the_order_a_driver_needs_and_streams_until_unplugged() {
    let mut cam = FakeDevice::camera(&[FourCc::H264], h264_buffers(6));
    cam.gone_when_empty = true;
    let (out, mut capture) = channel();
    assert_eq!(Camera::start(&mut cam, "/dev/video0", VIDEO).expect("start"), Camera::H264);
    let setup: Vec<&str> = cam.calls.iter().map(String::as_str).collect();
    assert_eq!(setup[..3], ["QUERYCAP", "S_FMT capture H264 64x48", "S_PARM capture 30"]);
    assert!(setup.contains(&"S_CTRL 0x9909cf=1000000"), "bitrate set: {setup:?}");
    assert!(setup.contains(&"S_CTRL 0x990a66=30"), "keyframe interval set: {setup:?}");
    let reqbufs = setup.iter().position(|c| *c == "REQBUFS capture 4").expect("REQBUFS");
    assert_eq!(
        setup[reqbufs + 1..],
        ["QBUF capture 0", "QBUF capture 1", "QBUF capture 2", "QBUF capture 3", "STREAMON capture"]
    );

    capture.request_keyframe();
    let err = stream_h264(&mut cam, "/dev/video0", &out).expect_err("unplugged");
    assert!(matches!(err, V4l2Error::Io { .. }) && err.to_string().starts_with("/dev/video0:"), "{err}");
    let units = drain(&mut capture);
    assert_eq!(units.len(), 6, "every buffer became an access unit");
    assert!(units[0].keyframe && units[0].parameter_sets().is_some(), "the first is a keyframe with SPS and PPS");
    assert!(units[1..].iter().all(|u| !u.keyframe));
    assert!(cam.calls.contains(&"S_CTRL 0x9909e5=1".to_string()), "the keyframe request reached the device");
    // Each dequeued buffer went back to the driver.
    let dq = cam.calls.iter().filter(|c| c.starts_with("DQBUF")).count();
    let q = cam.calls.iter().filter(|c| c.starts_with("QBUF")).count();
    assert_eq!((dq, q), (6, 4 + 6));
}

#[test]
fn a_raw_camera_goes_through_the_m2m_encoder() {
    let mut cam = FakeDevice::camera(&[FourCc::YU12], vec![Bytes::from(vec![16u8; 64 * 48 * 3 / 2]); 5]);
    let mut enc = FakeDevice::encoder(h264_buffers(5));
    let (out, mut capture) = channel();
    let raw = match Camera::start(&mut cam, "/dev/video0", VIDEO).expect("start") {
        Camera::Raw(f) => f,
        other => panic!("expected raw frames, got {other:?}"),
    };
    assert_eq!(cam.calls[1..3], ["S_FMT capture H264 64x48".to_string(), "S_FMT capture YU12 64x48".to_string()]);
    let encoder = Encoder::start(&mut enc, "/dev/video11", raw, VIDEO).expect("encoder");
    let setup: Vec<&str> = enc.calls.iter().map(String::as_str).collect();
    assert_eq!(setup[..3], ["QUERYCAP", "S_FMT output YU12 64x48", "S_FMT capture H264 64x48"]);
    assert!(setup.ends_with(&["STREAMON output", "STREAMON capture"]), "{setup:?}");

    // Stop once the five frames are through: the pusher goes away.
    let pusher = std::thread::spawn(move || {
        let mut units = Vec::new();
        while units.len() < 5 {
            match capture.units.blocking_recv() {
                Some(u) => units.push(u),
                None => break,
            }
        }
        units
    });
    stream_encoded(&mut cam, "/dev/video0", &mut enc, "/dev/video11", encoder, &out).expect("streams");
    let units = pusher.join().expect("pusher");
    assert_eq!(units.len(), 5);
    assert!(units[0].keyframe);
    assert!(enc.calls.iter().filter(|c| c.starts_with("QBUF output")).count() >= 5, "every raw frame was encoded");
}

#[test]
fn refusals_are_said_in_words() {
    let mut cam = FakeDevice::camera(&[], vec![]);
    let err = Camera::start(&mut cam, "/dev/video0", VIDEO).expect_err("no usable format");
    assert_eq!(err.to_string(), "/dev/video0 gives neither H.264 nor raw YUV (YU12, YUYV) (it offered MJPG)");

    // A USB camera with packed YUV only: raw frames in YUYV, which the encoder takes as they are.
    let mut usb = FakeDevice::camera(&[FourCc::YUYV], vec![]);
    assert!(matches!(Camera::start(&mut usb, "/dev/video0", VIDEO), Ok(Camera::Raw(f)) if f.fourcc == FourCc::YUYV));

    let mut not_camera = FakeDevice::encoder(vec![]);
    let err = Camera::start(&mut not_camera, "/dev/video11", VIDEO).expect_err("an encoder is no camera");
    assert!(matches!(err, V4l2Error::NotACamera(_)), "{err}");

    let mut cam = FakeDevice::camera(&[FourCc::H264], vec![]);
    cam.max_buffers = 1;
    let err = Camera::start(&mut cam, "/dev/video0", VIDEO).expect_err("too few buffers");
    assert!(matches!(err, V4l2Error::TooFewBuffers { got: 1, .. }), "{err}");

    let mut enc = FakeDevice::encoder(vec![]);
    enc.accepts.retain(|&(q, _)| q == Queue::Output);
    let raw = Format { fourcc: FourCc::YU12, width: 64, height: 48, bytes_per_line: 64, size_image: 4608 };
    let err = Encoder::start(&mut enc, "/dev/video11", raw, VIDEO).expect_err("no H.264 out");
    assert!(matches!(err, V4l2Error::FormatRefused { .. }), "{err}");
}
