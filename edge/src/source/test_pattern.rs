//! The test source: colour bars, a box sliding across them and the wall-clock time with a frame counter, so a
//! viewer sees at a glance that pictures move and how late they arrive. Encoded by [`super::pcm_h264`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::pcm_h264::{Encoder, Picture};
use super::{AccessUnit, Output, Pacer};
use crate::config::Video;

/// Draws and sends pictures at the configured rate until the pusher is gone.
pub fn run(video: Video, out: &Output) -> anyhow::Result<()> {
    let mut encoder = Encoder::new(video.width, video.height, video.fps);
    let mut pacer = Pacer::new(video.fps);
    let mut picture = Picture::new(video.width, video.height);
    let mut n: u64 = 0;
    let mut since_keyframe = u32::MAX;
    loop {
        let captured = pacer.wait();
        let wallclock = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        draw(&mut picture, n, wallclock);
        let keyframe = out.take_keyframe_request() || since_keyframe >= video.keyframe_every.saturating_sub(1);
        since_keyframe = if keyframe { 0 } else { since_keyframe + 1 };
        let nals = encoder.encode(&picture, keyframe);
        if out.send(AccessUnit::new(nals, captured)).is_err() {
            return Ok(());
        }
        n += 1;
    }
}

/// BT.601 limited-range YUV of white, yellow, cyan, green, magenta, red, blue and black.
const BARS: [(u8, u8, u8); 8] = [
    (235, 128, 128),
    (210, 16, 146),
    (170, 166, 16),
    (145, 54, 34),
    (106, 202, 222),
    (81, 90, 240),
    (41, 240, 110),
    (16, 128, 128),
];

/// Draws picture `n`: bars, the sliding box, and the text strip.
pub fn draw(p: &mut Picture, n: u64, wallclock: Duration) {
    let (w, h) = (p.width as usize, p.height as usize);
    let bar_bottom = h * 3 / 4;
    for y in 0..h {
        for x in 0..w {
            let (yy, u, v) = if y < bar_bottom { BARS[x * 8 / w] } else { (40, 128, 128) };
            set(p, x, y, yy, u, v);
        }
    }
    // A box a sixth of the height tall crossing the bars, 4 pixels a frame, back and forth.
    let size = (h / 6).max(4) & !1;
    let travel = w.saturating_sub(size).max(1);
    let step = (n as usize * 4) % (2 * travel);
    let left = if step < travel { step } else { 2 * travel - step };
    let top = (bar_bottom.saturating_sub(size) / 2) & !1;
    for y in top..(top + size).min(h) {
        for x in left..(left + size).min(w) {
            let white = ((x - left) * 4 / size + (y - top) * 4 / size) % 2 == 0;
            set(p, x, y, if white { 235 } else { 16 }, 128, 128);
        }
    }
    // "HH:MM:SS.mmm #n" (UTC) in the bottom strip.
    let secs = wallclock.as_secs();
    let text = format!(
        "{:02}:{:02}:{:02}.{:03} #{}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        wallclock.subsec_millis(),
        n
    );
    let scale = ((h - bar_bottom) / 10).max(1);
    let x0 = scale * 2;
    let y0 = bar_bottom + ((h - bar_bottom).saturating_sub(7 * scale)) / 2;
    for (i, c) in text.chars().enumerate() {
        let glyph = glyph(c);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = x0 + i * 6 * scale + col * scale + dx;
                        let y = y0 + row * scale + dy;
                        if x < w && y < h {
                            set(p, x, y, 235, 128, 128);
                        }
                    }
                }
            }
        }
    }
}

fn set(p: &mut Picture, x: usize, y: usize, yy: u8, u: u8, v: u8) {
    let w = p.width as usize;
    p.y[y * w + x] = yy;
    if x.is_multiple_of(2) && y.is_multiple_of(2) {
        p.u[(y / 2) * (w / 2) + x / 2] = u;
        p.v[(y / 2) * (w / 2) + x / 2] = v;
    }
}

/// 5x7 glyphs (one byte a row, bit 4 leftmost) of the characters the clock uses.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        '#' => [0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_move_and_the_clock_changes_only_a_strip() {
        let mut a = Picture::new(320, 240);
        let mut b = Picture::new(320, 240);
        draw(&mut a, 0, Duration::from_millis(1_000));
        draw(&mut b, 1, Duration::from_millis(1_033));
        assert_ne!(a.y, b.y, "the box and the clock moved");
        let changed = a.y.iter().zip(&b.y).filter(|(x, y)| x != y).count();
        assert!(changed < a.y.len() / 8, "most of the picture stays still: {changed} samples changed");
    }
}

/// Decoded by a real decoder: ffmpeg gives back exactly the pictures drawn (the encoding is lossless), keyframes
/// and skipped macroblocks alike.
#[cfg(test)]
mod decoded_by_ffmpeg {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn ffmpeg_decodes_the_exact_pictures() {
        let (w, h) = (100u32, 60u32); // not a multiple of 16: the SPS crops
        let mut encoder = Encoder::new(w, h, 30);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut p = Picture::new(w, h);
        for n in 0..12u64 {
            draw(&mut p, n, Duration::from_millis(1_000 + n * 33));
            for nal in encoder.encode(&p, n == 6) {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(&nal);
            }
            for plane in [&p.y, &p.u, &p.v] {
                expected.extend(plane.iter().map(|&s| s.max(1)));
            }
        }
        let mut ffmpeg = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "h264", "-i", "-", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg (the test command installs it)");
        let mut stdin = ffmpeg.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&stream));
        let out = ffmpeg.wait_with_output().expect("ffmpeg ran");
        writer.join().expect("writer").expect("written");
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout.len(), expected.len(), "12 pictures of {w}x{h}");
        assert!(out.stdout == expected, "the decoded pictures differ from the drawn ones");
    }
}
