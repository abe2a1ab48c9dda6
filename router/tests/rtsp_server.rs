//! The RTSP server against real peers: ffmpeg/ffprobe, GStreamer (`rtspsrc`, `rtspclientsink`) and VLC read and
//! publish routes over TCP and UDP; auth challenges; hostile connections leave other readers playing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::RouterProcess;

/// A password auth-users checks: ana / opensesame.
const ANA_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YW5hLXNhbHQtMTIz$9ek1O8vea3hRkGsQGnKSmH/AkzV1kgq4Ep1at13JXCI";

fn start_router(dir: &Path) -> (RouterProcess, String, String) {
    let path = dir.join("routes.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
http = "127.0.0.1:0"
rtsp = "127.0.0.1:0"
rtmp = "127.0.0.1:0"
webrtc = {{ udp = "127.0.0.1:0" }}

[defaults]
anonymous = ["read", "publish"]

[plugins.users]
source = "builtin:auth-users"
config = {{ users = [{{ name = "ana", password_hash = "{ANA_HASH}", permissions = ["read:*", "publish:*"] }}] }}

[[route]]
name = "demo"
from = "demo"
to = ["rtsp", "rtmp"]

[[route]]
name = "in"
from = "rtsp"
to = ["rtsp", "rtmp"]

[[route]]
name = "in-udp"
from = "rtsp"
to = ["rtsp"]

[[route]]
name = "keyed"
from = "rtsp"
to = ["rtsp"]
publish_key = "k1"

[[route]]
name = "hevc"
from = "rtsp"
to = ["rtsp"]

[[route]]
name = "gst"
from = "rtsp"
to = ["rtsp"]

[[route]]
name = "locked"
from = "demo"
to = ["rtsp"]
auth = "users"

[[route]]
name = "rtmp-only"
from = "demo"
to = ["rtmp"]
"#
        ),
    )
    .expect("write routes");
    let router = RouterProcess::start(&path);
    let up = router.seen.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains("is up"))).expect("up");
    let rtsp = up["rtsp"].as_str().expect("rtsp address").to_string();
    let rtmp = up["rtmp"].as_str().expect("rtmp address").to_string();
    (router, rtsp, rtmp)
}

/// ffprobe reading `seconds` of `url`: (codec, frames) per stream, or its error output.
fn probe(url: &str, transport: &str, seconds: u32) -> Result<Vec<(String, u64)>, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "10000000"])
        .args(["-rtsp_transport", transport])
        .args(["-count_frames", "-read_intervals", &format!("%+{seconds}")])
        .args(["-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", url])
        .output()
        .expect("ffprobe (installed by .ci/test)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    Ok(v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            let frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
            (s["codec_name"].as_str().unwrap_or_default().to_string(), frames)
        })
        .collect())
}

fn frames_of(streams: &[(String, u64)], codec: &str) -> u64 {
    streams.iter().find(|(c, _)| c == codec).map_or(0, |(_, n)| *n)
}

/// ffmpeg publishing a test pattern and a tone over RTSP for `seconds`.
fn ffmpeg_publish(url: &str, transport: &str, audio: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "30"])
        .args(["-c:a", audio, "-f", "rtsp", "-rtsp_transport", transport, url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg")
}

/// Kills a child process when dropped, so a failing assertion leaves nothing running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ffmpeg_gstreamer_and_vlc_play_the_demo_route_over_tcp_and_udp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_router, rtsp, _) = start_router(dir.path());
    let url = format!("rtsp://{rtsp}/demo");
    // The demo clip is 30 fps: three seconds is about 90 pictures, from a keyframe on.
    for transport in ["tcp", "udp"] {
        let streams = probe(&url, transport, 3).unwrap_or_else(|e| panic!("ffprobe over {transport}: {e}"));
        assert!(frames_of(&streams, "h264") >= 60, "{transport}: {streams:?}");
    }
    for protocols in ["tcp", "udp"] {
        let out = Command::new("timeout")
            .args(["30", "gst-launch-1.0", "rtspsrc"])
            .arg(format!("location={url}"))
            .arg(format!("protocols={protocols}"))
            .args(["!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!", "fakesink", "num-buffers=60"])
            .output()
            .expect("gst-launch-1.0");
        // EOS comes once 60 pictures were decoded. Over UDP, rtspsrc's own PAUSE on the way down then sometimes
        // fails inside GStreamer ("connection flush busy": its read loop holds the connection), making the exit
        // status 1 after the pictures were played; the EOS is what counts.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Got EOS from element \"pipeline0\""), "GStreamer rtspsrc over {protocols}: {stdout}");
    }
    // VLC records what it plays; Debian builds it without live555, so its RTSP client is libavformat's.
    let out = dir.path().join("vlc.ts");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let mut vlc = Command::new("timeout");
    vlc.arg("40");
    if is_root() {
        // VLC refuses to run as root.
        vlc.args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
    }
    let status = vlc
        .args(["env", "HOME=/tmp", "cvlc", "-q", "--intf", "dummy", "--avformat-format=rtsp", &url, "--run-time=4"])
        .arg(format!("--sout=#std{{access=file,mux=ts,dst={}}}", out.display()))
        .arg("vlc://quit")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("cvlc (installed by .ci/test)");
    assert!(status.success(), "cvlc: {status}");
    let (frames, _) = common::ffprobe_video(&out);
    assert!(frames >= 30, "VLC recorded {frames} pictures");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn ffmpeg_publishes_over_tcp_and_udp_and_readers_get_both_tracks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut router, rtsp, rtmp) = start_router(dir.path());
    let url = format!("rtsp://{rtsp}/in");
    let publisher = Killed(ffmpeg_publish(&url, "tcp", "aac", 30));
    router.wait_log(|l| l["message"] == "RTSP publisher connected" && l["route"] == "in");
    let streams = probe(&url, "tcp", 3).expect("RTSP reader");
    assert!(frames_of(&streams, "h264") >= 60 && frames_of(&streams, "aac") >= 60, "{streams:?}");
    let over_rtmp = probe(&format!("rtmp://{rtmp}/in"), "tcp", 3).expect("RTMP reader");
    assert!(frames_of(&over_rtmp, "h264") >= 60 && frames_of(&over_rtmp, "aac") >= 60, "{over_rtmp:?}");

    // A second publisher is refused while the first one publishes.
    let mut second = ffmpeg_publish(&url, "tcp", "aac", 5);
    let mut err = String::new();
    second.stderr.take().expect("stderr").read_to_string(&mut err).expect("read");
    assert!(!second.wait().expect("wait").success());
    assert!(err.contains("409"), "{err}");
    drop(publisher);

    // Over UDP, with Opus.
    let url = format!("rtsp://{rtsp}/in-udp");
    let _publisher = Killed(ffmpeg_publish(&url, "udp", "libopus", 30));
    router.wait_log(|l| l["message"] == "RTSP publisher connected" && l["route"] == "in-udp");
    let streams = probe(&url, "udp", 3).expect("RTSP reader");
    assert!(frames_of(&streams, "h264") >= 60 && frames_of(&streams, "opus") >= 60, "{streams:?}");
}

#[test]
fn a_publish_key_goes_in_the_query_and_every_stream_is_set_up_behind_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut router, rtsp, _) = start_router(dir.path());
    // ffmpeg sets up streams at ANNOUNCE-URL + "/streamid=N", after the query: rtsp://h/keyed?key=k1/streamid=0.
    let mut wrong = ffmpeg_publish(&format!("rtsp://{rtsp}/keyed?key=nope"), "tcp", "aac", 3);
    let mut err = String::new();
    wrong.stderr.take().expect("stderr").read_to_string(&mut err).expect("read");
    assert!(!wrong.wait().expect("wait").success());
    assert!(err.contains("401"), "{err}");
    let _publisher = Killed(ffmpeg_publish(&format!("rtsp://{rtsp}/keyed?key=k1"), "tcp", "aac", 30));
    router.wait_log(|l| l["message"] == "RTSP publisher connected" && l["route"] == "keyed");
    let streams = probe(&format!("rtsp://{rtsp}/keyed"), "tcp", 3).expect("RTSP reader");
    assert!(frames_of(&streams, "h264") >= 60 && frames_of(&streams, "aac") >= 60, "{streams:?}");
}

#[test]
fn h265_and_g711_pass_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut router, rtsp, _) = start_router(dir.path());
    let url = format!("rtsp://{rtsp}/hevc");
    let _publisher = Killed(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=8000", "-t", "30"])
            .args([
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-x265-params",
                "keyint=30:log-level=error",
            ])
            .args(["-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1", "-f", "rtsp", "-rtsp_transport", "tcp", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    router.wait_log(|l| l["message"] == "RTSP publisher connected" && l["route"] == "hevc");
    for transport in ["tcp", "udp"] {
        let streams = probe(&url, transport, 3).unwrap_or_else(|e| panic!("{transport}: {e}"));
        // ffmpeg sends G.711 in packets of 1024 samples (128 ms at 8 kHz): about 23 in three seconds.
        let (video, audio) = (frames_of(&streams, "hevc"), frames_of(&streams, "pcm_mulaw"));
        assert!(video >= 60 && audio >= 15, "{transport}: {streams:?}");
    }
}

#[test]
fn gstreamer_rtspclientsink_publishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut router, rtsp, _) = start_router(dir.path());
    let url = format!("rtsp://{rtsp}/gst");
    let _publisher = Killed(
        Command::new("gst-launch-1.0")
            .args(["-q", "videotestsrc", "is-live=true", "!", "video/x-raw,width=320,height=240,framerate=30/1"])
            .args(["!", "x264enc", "tune=zerolatency", "key-int-max=30", "!", "h264parse", "!", "rtspclientsink"])
            .arg(format!("location={url}"))
            .arg("protocols=tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0"),
    );
    router.wait_log(|l| l["message"] == "RTSP publisher connected" && l["route"] == "gst");
    let streams = probe(&url, "tcp", 3).expect("RTSP reader");
    assert!(frames_of(&streams, "h264") >= 60, "{streams:?}");
}

#[test]
fn auth_asks_for_credentials_and_plays_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_router, rtsp, _) = start_router(dir.path());
    let refused = probe(&format!("rtsp://{rtsp}/locked"), "tcp", 1).expect_err("no credentials");
    assert!(refused.contains("401"), "{refused}");
    let wrong = probe(&format!("rtsp://ana:guess@{rtsp}/locked"), "tcp", 1).expect_err("wrong password");
    assert!(wrong.contains("401"), "{wrong}");
    let streams = probe(&format!("rtsp://ana:opensesame@{rtsp}/locked"), "tcp", 2).expect("credentials");
    assert!(frames_of(&streams, "h264") >= 30, "{streams:?}");
    // A route that does not serve RTSP, and one that does not exist.
    let e = probe(&format!("rtsp://{rtsp}/rtmp-only"), "tcp", 1).expect_err("not served");
    assert!(e.contains("403"), "{e}");
    let e = probe(&format!("rtsp://{rtsp}/nope"), "tcp", 1).expect_err("no route");
    assert!(e.contains("404"), "{e}");
}

/// Sends `bytes` on a new connection and returns what the server answered before closing it.
fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn garbage_oversized_and_half_open_connections_leave_a_reader_playing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_router, rtsp, _) = start_router(dir.path());
    let out = dir.path().join("read.mkv");
    let reader = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i"])
        .arg(format!("rtsp://{rtsp}/demo"))
        .args(["-t", "6", "-c", "copy", "-y"])
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg reader");
    let reader = Killed(reader);
    // Half-open: connected, a request started and never finished.
    let half_open: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&rtsp).expect("connect");
            s.write_all(b"DESCRIBE rtsp://x/demo RTSP/1.0\r\nCSeq: 1\r\n").expect("write");
            s
        })
        .collect();
    // A player that asks for the stream and then never reads it: its queue drops to keyframes, nobody waits.
    let mut stalled = TcpStream::connect(&rtsp).expect("connect");
    stalled.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let describe = format!("DESCRIBE rtsp://{rtsp}/demo RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    stalled.write_all(describe.as_bytes()).expect("describe");
    let mut head = [0u8; 4096];
    let n = stalled.read(&mut head).expect("describe answer");
    assert!(head[..n].starts_with(b"RTSP/1.0 200"), "{}", String::from_utf8_lossy(&head[..n]));
    let setup = format!(
        "SETUP rtsp://{rtsp}/demo/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n\
         PLAY rtsp://{rtsp}/demo RTSP/1.0\r\nCSeq: 3\r\n\r\n"
    );
    stalled.write_all(setup.as_bytes()).expect("setup and play");
    // Binary garbage: a 400 and the connection closed.
    let answer = exchange(&rtsp, b"\x00\xff\x13\x37garbage\r\n\r\n");
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer}");
    // A request past the size limit.
    let mut big = b"OPTIONS rtsp://x/demo RTSP/1.0\r\nCSeq: 1\r\nX-Big: ".to_vec();
    big.resize(100 * 1024, b'a');
    let answer = exchange(&rtsp, &big);
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer}");
    // A request that is not RTSP, then garbage on the interleaved side after a valid request.
    let answer = exchange(&rtsp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer}");
    let answer = exchange(&rtsp, b"OPTIONS rtsp://x/demo RTSP/1.0\r\nCSeq: 2\r\n\r\n\x01\x02\x03garbage");
    assert!(answer.starts_with("RTSP/1.0 200") && answer.contains("RTSP/1.0 400"), "{answer}");
    // Requests out of order and a session that is not this connection's.
    let answer = exchange(&rtsp, b"PLAY rtsp://x/demo RTSP/1.0\r\nCSeq: 3\r\n\r\nTEARDOWN rtsp://x/demo RTSP/1.0\r\nCSeq: 4\r\nSession: 1234\r\n\r\n");
    assert!(answer.starts_with("RTSP/1.0 455") && answer.contains("RTSP/1.0 454"), "{answer}");

    let mut reader = reader;
    let status = reader.0.wait().expect("reader");
    assert!(status.success());
    let (frames, _) = common::ffprobe_video(&out);
    assert!(frames >= 150, "the reader got {frames} pictures in 6 s");
    drop(half_open);
    drop(stalled);
}

/// A raw RTSP client over TCP: requests, responses, and the RTP timestamps of interleaved packets.
struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

impl RawClient {
    fn connect(addr: &str) -> RawClient {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        RawClient { tcp, buf: Vec::new(), cseq: 0 }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.tcp.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Sends a request and returns the response's head, collecting the RTP timestamps that came before it.
    fn request(&mut self, line: &str, headers: &str, rtp: &mut Vec<u32>) -> String {
        self.cseq += 1;
        let text = format!("{line} RTSP/1.0\r\nCSeq: {}\r\n{headers}\r\n", self.cseq);
        self.tcp.write_all(text.as_bytes()).expect("write");
        loop {
            if let Some(head) = self.take(rtp) {
                return head;
            }
            self.fill();
        }
    }

    /// Takes interleaved packets and, if complete, one response off the buffer.
    fn take(&mut self, rtp: &mut Vec<u32>) -> Option<String> {
        loop {
            if self.buf.first() == Some(&b'$') {
                let len = usize::from(u16::from_be_bytes([*self.buf.get(2)?, *self.buf.get(3)?]));
                let packet = self.buf.get(4..4 + len)?;
                if self.buf[1] == 0 && packet.len() >= 12 {
                    rtp.push(u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]));
                }
                self.buf.drain(..4 + len);
                continue;
            }
            let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if self.buf.len() < end + length {
                return None;
            }
            self.buf.drain(..end + length);
            return Some(head);
        }
    }

    /// Reads until `n` more RTP packets arrived.
    fn packets(&mut self, n: usize, rtp: &mut Vec<u32>) {
        let target = rtp.len() + n;
        while rtp.len() < target {
            if self.take(rtp).is_some() {
                continue;
            }
            self.fill();
        }
    }
}

#[test]
fn pause_and_play_again_resume_at_a_keyframe_with_timestamps_moving_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_router, rtsp, _) = start_router(dir.path());
    let url = format!("rtsp://{rtsp}/demo");
    let mut c = RawClient::connect(&rtsp);
    let mut rtp = Vec::new();
    assert!(c.request(&format!("DESCRIBE {url}"), "", &mut rtp).starts_with("RTSP/1.0 200"));
    let setup =
        c.request(&format!("SETUP {url}/trackID=0"), "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n", &mut rtp);
    assert!(setup.starts_with("RTSP/1.0 200") && setup.contains("interleaved=0-1"), "{setup}");
    let session =
        setup.lines().find_map(|l| l.strip_prefix("Session: ")).expect("session").split(';').next().expect("id");
    let session = format!("Session: {session}\r\n");
    let play = c.request(&format!("PLAY {url}"), &session, &mut rtp);
    assert!(play.starts_with("RTSP/1.0 200") && play.contains("RTP-Info: url="), "{play}");
    c.packets(200, &mut rtp);
    assert!(c.request(&format!("PAUSE {url}"), &session, &mut rtp).starts_with("RTSP/1.0 200"));
    let before = *rtp.iter().max().expect("packets");
    let mut after = Vec::new();
    assert!(c.request(&format!("PLAY {url}"), &session, &mut after).starts_with("RTSP/1.0 200"));
    after.clear();
    c.packets(100, &mut after);
    // The demo's timestamps start near zero and grow: nothing sent after the resume is older than before it.
    assert!(after.iter().all(|ts| *ts > before), "resumed at {:?}, had reached {before}", after.first());
    assert!(c.request(&format!("TEARDOWN {url}"), &session, &mut after).starts_with("RTSP/1.0 200"));
}
