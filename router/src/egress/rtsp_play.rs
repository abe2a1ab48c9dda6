//! `to = ["rtsp"]`: an RTSP player (ffmpeg, VLC, GStreamer, an NVR) reading its route. The RTSP port's driver
//! (`listen::rtsp`) admits the connection at DESCRIBE and hands the player its SETUPs, PLAY and PAUSE; it then
//! waits on [`RtspPlayer::next_frame`] and hands each frame back to [`RtspPlayer::send`].
//!
//! The RTP payloads are the route's, made once per frame for every RTP reader ([`Frame::rtp`]); per player only
//! the 12-byte RTP header (its SSRC and sequence numbers) is written, and over TCP the payloads go out by
//! reference in one `writev` per wake. Sender reports every few seconds map each stream's RTP clock to
//! wall-clock time, so players line audio up with video.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpStream, UdpSocket};

use crate::admit::Admitted;
use crate::connections::write;
use crate::media::{Frame, MediaKind, Track, TrackId};
use crate::route::{ReaderKind, RouteError, RouteHandle, RouteReader};
use crate::rtsp::packet::{rtp_header, sender_report};
use crate::rtsp::sdp::{self, Offered};

/// Frames sent in one wake at most (one `writev` over TCP).
const MAX_FRAMES_PER_WRITE: usize = 32;
/// How often each stream's sender report goes out.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Why a player could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("route {0} has no stream yet (nothing is publishing, or its source is not up)")]
    NoStream(String),
}

/// Where one stream's packets go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Interleaved on the RTSP connection.
    Tcp { rtp: u8, rtcp: u8 },
    /// UDP from our sockets to the client's ports.
    Udp { rtp: Arc<UdpSocket>, rtcp: Arc<UdpSocket>, to_rtp: SocketAddr, to_rtcp: SocketAddr },
}

/// One SETUP stream of a player.
#[derive(Debug)]
struct Stream {
    track: TrackId,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    packets: u32,
    octets: u32,
    sink: Sink,
    /// When the last sender report went out.
    reported: Option<Instant>,
    clock_rate: u32,
    /// The last frame's presentation time sent, in seconds of the route's timeline (shift included).
    last_sent: Option<f64>,
}

/// One bytes piece of a TCP write: 16 bytes of our own (an interleaved RTP header, half a sender report), or a
/// shared payload. 24 bytes: a wake's list stays small.
#[derive(Debug)]
enum Piece {
    Own([u8; 16]),
    Payload(Arc<[u8]>),
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Own(h) => h,
            Piece::Payload(p) => p,
        }
    }
}

/// Pieces kept allocated between wakes: a burst (a new player's GOP) needs more once, not for the player's life.
const KEPT_PIECES: usize = 256;

/// A playing connection's side of its route.
#[derive(Debug)]
pub struct RtspPlayer {
    pub route: String,
    handle: RouteHandle,
    peer: SocketAddr,
    /// `None` while paused: the route does not queue frames for a player that is not reading.
    reader: Option<RouteReader>,
    /// Frames taken off the reader at DESCRIBE, while learning the tracks: they go out first.
    held: VecDeque<Arc<Frame>>,
    offered: Vec<Offered>,
    streams: Vec<Stream>,
    /// The wall-clock time of the route's time zero, from the first frame sent: every stream's sender reports
    /// are on this one clock, so they agree with each other.
    origin: Option<SystemTime>,
    /// Seconds added to every stream's timestamps. After a PAUSE the route replays its GOP from a keyframe
    /// already sent; RTP timestamps must only move forward, so the replay is moved past what was sent (all
    /// streams by the same time, which keeps them in sync) instead of the player waiting for the next keyframe.
    shift: f64,
    /// A PLAY after PAUSE: the shift is decided at the first frame that follows.
    resumed: bool,
    out: Vec<Piece>,
    datagram: Vec<u8>,
}

impl RtspPlayer {
    /// Takes a reader slot of the admitted route and learns its tracks: from the GOP the route replays at once,
    /// or, when it is not live yet (an on-demand camera starting), from its first frame within `wait`.
    /// Returns the player and the SDP DESCRIBE answers with.
    pub async fn prepare(
        admitted: Admitted,
        peer: SocketAddr,
        server: std::net::IpAddr,
        wait: Duration,
    ) -> Result<(RtspPlayer, String), PrepareError> {
        let route = admitted.config.name.to_string();
        let mut reader = admitted.route.add_reader(ReaderKind::Rtsp, Some(peer.to_string())).await?;
        let mut held: VecDeque<Arc<Frame>> = std::iter::from_fn(|| reader.try_recv()).collect();
        let mut tracks: Vec<Arc<Track>> = admitted.route.tracks().await?;
        if tracks.is_empty() {
            // Not live yet: its first frame says what it carries.
            match tokio::time::timeout(wait, reader.recv()).await {
                Ok(Some(frame)) => held.push_back(frame),
                Ok(None) => return Err(RouteError::Ended(admitted.config.name.clone()).into()),
                Err(_) => return Err(PrepareError::NoStream(route)),
            }
            tracks = admitted.route.tracks().await?;
        }
        tracks.sort_by_key(|t| (t.kind() != MediaKind::Video, t.id));
        if tracks.is_empty() {
            return Err(PrepareError::NoStream(route));
        }
        let (sdp, offered) = sdp::describe(&route, &tracks, server);
        let player = RtspPlayer {
            route,
            handle: admitted.route,
            peer,
            reader: Some(reader),
            held,
            offered,
            streams: Vec::new(),
            origin: None,
            shift: 0.0,
            resumed: false,
            out: Vec::new(),
            datagram: Vec::new(),
        };
        Ok((player, sdp))
    }

    /// The offered stream a SETUP's control names (`trackID=N`), by index.
    pub fn find(&self, control: &str) -> Option<usize> {
        self.offered.iter().position(|o| o.control == control)
    }

    /// How many streams DESCRIBE offered.
    pub fn offered(&self) -> usize {
        self.offered.len()
    }

    /// Sets up offered stream `index` to go to `sink` (again, for a repeated SETUP); returns its SSRC.
    pub fn setup(&mut self, index: usize, sink: Sink) -> Option<u32> {
        let offered = self.offered.get(index)?;
        if let Some(existing) = self.streams.iter_mut().find(|s| s.track == offered.track) {
            existing.sink = sink;
            return Some(existing.ssrc);
        }
        let ssrc = random_u32();
        self.streams.push(Stream {
            track: offered.track,
            payload_type: offered.payload_type,
            ssrc,
            seq: random_u32() as u16,
            packets: 0,
            octets: 0,
            sink,
            reported: None,
            clock_rate: offered.clock_rate.max(1),
            last_sent: None,
        });
        Some(ssrc)
    }

    /// Paused (or never played): PLAY takes a reader of the route again.
    pub fn is_paused(&self) -> bool {
        self.reader.is_none()
    }

    /// Whether any stream was set up (PLAY needs one).
    pub fn is_set_up(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Starts (or resumes) sending. Returns the `RTP-Info` entries: (control, first sequence number).
    pub async fn play(&mut self) -> Result<Vec<(String, u16)>, RouteError> {
        if self.reader.is_none() {
            // Resuming after PAUSE: from the route's GOP again, so the player restarts on a keyframe.
            self.reader = Some(self.handle.add_reader(ReaderKind::Rtsp, Some(self.peer.to_string())).await?);
            self.resumed = true;
        }
        let info = self
            .streams
            .iter()
            .filter_map(|s| {
                let offered = self.offered.iter().find(|o| o.track == s.track)?;
                Some((offered.control.clone(), s.seq))
            })
            .collect();
        Ok(info)
    }

    /// Stops sending until the next PLAY, leaving the route's readers.
    pub fn pause(&mut self) {
        self.reader = None;
        self.held.clear();
    }

    /// The next frame; `None` when the route ended or dropped this reader. Pending while paused.
    pub async fn next_frame(&mut self) -> Option<Arc<Frame>> {
        if let Some(frame) = self.held.pop_front() {
            return Some(frame);
        }
        match &mut self.reader {
            Some(reader) => reader.recv().await,
            None => std::future::pending().await,
        }
    }

    fn try_next(&mut self) -> Option<Arc<Frame>> {
        self.held.pop_front().or_else(|| self.reader.as_mut()?.try_recv())
    }

    /// Sends `first` and whatever else is queued: over TCP in one vectored write, over UDP a datagram a packet.
    pub async fn send(&mut self, stream: &mut TcpStream, first: Arc<Frame>) -> std::io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        self.queue(&first, &mut out);
        for _ in 0..MAX_FRAMES_PER_WRITE {
            let Some(next) = self.try_next() else { break };
            self.queue(&next, &mut out);
        }
        let written = write::write_vectored(stream, &out).await;
        out.clear();
        out.shrink_to(KEPT_PIECES);
        self.out = out;
        written
    }

    /// Packs one frame for every stream of its track.
    fn queue(&mut self, frame: &Arc<Frame>, out: &mut Vec<Piece>) {
        let Some(i) = self.streams.iter().position(|s| s.track == frame.track.id) else { return };
        let seconds = |pts: i64, clock: u32| pts as f64 / f64::from(clock.max(1));
        if std::mem::take(&mut self.resumed) {
            // The replay's first frame (its keyframe) goes out one frame time after the latest frame sent.
            let latest = self.streams.iter().filter_map(|s| s.last_sent).fold(f64::NEG_INFINITY, f64::max);
            let gap = latest + 1.0 / 30.0 - (seconds(frame.pts, frame.track.clock_rate) + self.shift);
            if gap > 0.0 {
                self.shift += gap;
            }
        }
        let at = seconds(frame.pts, frame.track.clock_rate) + self.shift;
        let shift = self.shift;
        let Some(rtp) = frame.rtp() else { return };
        let wallclock = self.wallclock(frame);
        let stream = &mut self.streams[i];
        stream.last_sent = Some(at);
        let timestamp = rtp.timestamp.wrapping_add((shift * f64::from(stream.clock_rate)).round() as i64 as u32);
        for payload in &rtp.payloads {
            let header = rtp_header(payload.marker, stream.payload_type, stream.seq, timestamp, stream.ssrc);
            stream.seq = stream.seq.wrapping_add(1);
            stream.packets = stream.packets.wrapping_add(1);
            stream.octets = stream.octets.wrapping_add(payload.data.len() as u32);
            match &stream.sink {
                Sink::Tcp { rtp: channel, .. } => {
                    out.push(Piece::Own(interleaved(*channel, 12 + payload.data.len(), &header)));
                    out.push(Piece::Payload(Arc::clone(&payload.data)));
                }
                Sink::Udp { rtp: socket, to_rtp, .. } => {
                    self.datagram.clear();
                    self.datagram.extend_from_slice(&header);
                    self.datagram.extend_from_slice(&payload.data);
                    // UDP is lossy by nature: a full socket buffer drops the packet rather than stalling the player.
                    let _ = socket.try_send_to(&self.datagram, *to_rtp);
                }
            }
        }
        if stream.reported.is_none_or(|t| t.elapsed() >= REPORT_INTERVAL) {
            stream.reported = Some(Instant::now());
            let report = sender_report(stream.ssrc, wallclock, timestamp, stream.packets, stream.octets);
            match &stream.sink {
                Sink::Tcp { rtcp, .. } => {
                    let first = interleaved(*rtcp, report.len(), &report[..12]);
                    let mut second = [0u8; 16];
                    second.copy_from_slice(&report[12..]);
                    out.push(Piece::Own(first));
                    out.push(Piece::Own(second));
                }
                Sink::Udp { rtcp, to_rtcp, .. } => {
                    let _ = rtcp.try_send_to(&report, *to_rtcp);
                }
            }
        }
    }

    /// The wall-clock time of `frame`: the source's own where it says (a camera's sender reports), otherwise the
    /// route's time zero (fixed at the first frame sent) plus the frame's presentation time.
    fn wallclock(&mut self, frame: &Frame) -> SystemTime {
        let shift = Duration::from_secs_f64(self.shift);
        if let Some(at) = frame.wallclock {
            return at + shift;
        }
        let since_zero = Duration::from_secs_f64(frame.pts.max(0) as f64 / f64::from(frame.track.clock_rate.max(1)));
        let origin = *self.origin.get_or_insert_with(|| {
            let received = SystemTime::now() - frame.received.elapsed();
            received.checked_sub(since_zero).unwrap_or(received)
        });
        origin + since_zero + shift
    }
}

/// The 4-byte interleaved frame header (`$`, channel, length) followed by the frame's first 12 bytes.
fn interleaved(channel: u8, len: usize, first: &[u8]) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = b'$';
    h[1] = channel;
    h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    h[4..].copy_from_slice(first);
    h
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // Without randomness SSRCs only need to differ per stream; a fixed value still works for one player.
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b)
}
