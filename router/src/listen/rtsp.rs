//! The RTSP port (`[server] rtsp`, 8554 by default): accepts connections, reads requests and interleaved data,
//! and answers them. DESCRIBE admits a player (`egress::rtsp_play`), ANNOUNCE a publisher
//! (`ingest::rtsp_publish`), each through the one admission path; SETUP, PLAY, PAUSE, RECORD and TEARDOWN move
//! the connection's session along. This file is the IO driver; messages, transports, SDP and packets are `rtsp`'s.
//!
//! URLs: `rtsp://host:8554/{route}` (streams `.../{route}/trackID=N`), credentials as Basic
//! (`rtsp://user:pass@host/...`) or `?token=`; a route's `publish_key` as `?key=`. One session per connection:
//! it ends with the connection or its TEARDOWN. UDP streams get a pair of ports each, bound for the session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtsp_types::{Method, Request, StatusCode, headers};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Activity;
use crate::admit::{Admission, Admitted, Ask, Refusal, Wants};
use crate::auth::{Credentials, Outcome, Protocol};
use crate::config::model::{Output, PublishProtocol};
use crate::connections::Connections;
use crate::connections::write;
use crate::egress::rtsp_play::{PrepareError, RtspPlayer, Sink};
use crate::ingest::rtsp_publish::RtspPublisher;
use crate::route::RouteError;
use crate::rtsp::RtspError;
use crate::rtsp::message::{self, Incoming, Reply};
use crate::rtsp::sdp::{self, Announced};
use crate::rtsp::transport::{self, Answer, Lower};

/// Binds the RTSP listener and serves connections until the process ends, under the caps every listener shares.
pub async fn serve(
    addr: SocketAddr,
    admission: Admission,
    connections: Arc<Connections>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(rtsp = %local, "RTSP listening");
    super::accept(listener, "RTSP", admission, connections, run);
    Ok(local)
}

/// A session's timeout, announced in its `Session` header: a session with no traffic from the client for this
/// long (requests, RTCP receiver reports, media) is closed. Players over TCP are caught by their writes instead.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_CHECK: Duration = Duration::from_secs(5);
const IDLE_CHECKS: u32 = (SESSION_TIMEOUT.as_secs() / IDLE_CHECK.as_secs()) as u32;
/// A connection must be playing or recording this long after it opened, or it is closed.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long DESCRIBE waits for a route that is not live yet (an on-demand camera connecting).
const DESCRIBE_WAIT: Duration = Duration::from_secs(10);
/// SETUPs one connection may send: more than any real session needs.
const MAX_SETUPS: u8 = 32;
/// Streams one connection may have over UDP at once (each holds two ports): an RTSP session has one or two.
const MAX_UDP_STREAMS: usize = 4;
/// Readers one connection may take of routes over its life (DESCRIBEs, PLAYs after PAUSE): each replays a GOP.
const MAX_ATTACHMENTS: u32 = 16;
const PUBLIC: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER, ANNOUNCE, RECORD";

async fn run(stream: TcpStream, peer: SocketAddr, admission: Admission) {
    let Ok(local) = stream.local_addr() else { return };
    let (udp_tx, udp_rx) = mpsc::channel(256);
    let mut conn = Connection {
        stream,
        peer,
        local,
        admission,
        // Small: most connections are players, which send a few requests. A publisher's grows (see `serve`).
        buf: BytesMut::with_capacity(2048),
        session: None,
        mode: Mode::Idle,
        channels: Vec::new(),
        udp_tx,
        udp_rx,
        udp: Vec::new(),
        scanned: 0,
        attachments: 0,
        rearm: false,
        setups: 0,
        playing: false,
        playing_udp: false,
    };
    let result = conn.serve().await;
    if let Mode::Record(publisher) = std::mem::replace(&mut conn.mode, Mode::Idle) {
        // Gone without TEARDOWN (killed, network lost): the route records why.
        tracing::info!(%peer, route = %publisher.route, lost_packets = publisher.lost(), "RTSP publisher gone");
        let why = match &result {
            Ok(()) => "the connection closed".to_string(),
            Err(e) => e.to_string(),
        };
        publisher.gone(&why).await;
    }
    match result {
        Ok(()) => tracing::debug!(%peer, "RTSP connection closed"),
        Err(RtspError::Io(e)) => tracing::debug!(%peer, error = %e, "RTSP connection ended"),
        Err(e) => tracing::info!(%peer, error = %e, "RTSP connection closed"),
    }
}

/// What the connection's session does.
#[derive(Debug)]
enum Mode {
    Idle,
    /// Described (and maybe set up, playing or paused).
    Play(Box<RtspPlayer>),
    /// Announced: streams being set up, not recording yet.
    Announced {
        admitted: Admitted,
        streams: Vec<Announced>,
        set_up: Vec<bool>,
    },
    Record(Box<RtspPublisher>),
}

/// A UDP datagram from the client, for one of the session's streams.
#[derive(Debug)]
struct Datagram {
    stream: usize,
    rtcp: bool,
    data: Bytes,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    admission: Admission,
    buf: BytesMut,
    /// The session's id, from the first SETUP.
    session: Option<String>,
    mode: Mode,
    /// Interleaved channels of a publisher's streams: (channel, stream, is RTCP).
    channels: Vec<(u8, usize, bool)>,
    udp_tx: mpsc::Sender<Datagram>,
    udp_rx: mpsc::Receiver<Datagram>,
    /// The UDP readers of each stream set up over UDP: replaced by a new SETUP of the stream, ended with the
    /// session (dropping them aborts their tasks, which closes the sockets).
    udp: Vec<(usize, Vec<AbortOnDrop>)>,
    /// How far into the read buffer a request's end was looked for (see `message::next`).
    scanned: usize,
    /// Route readers taken so far (see [`MAX_ATTACHMENTS`]).
    attachments: u32,
    /// A reader was taken that is not playing yet: the start deadline runs again from now.
    rearm: bool,
    /// SETUPs so far: a TCP offer naming no channels gets the next pair.
    setups: u8,
    playing: bool,
    /// A stream plays over UDP: sending proves nothing about the client, so only its own traffic keeps the
    /// session alive.
    playing_udp: bool,
}

impl Connection {
    async fn serve(&mut self) -> Result<(), RtspError> {
        let start_deadline = tokio::time::sleep(START_DEADLINE);
        tokio::pin!(start_deadline);
        let idle_check = tokio::time::sleep(IDLE_CHECK);
        tokio::pin!(idle_check);
        let mut activity = Activity::default();
        // Once playing or recording, the deadline is met for good: a PAUSE later does not bring it back.
        let mut started = false;
        loop {
            if std::mem::take(&mut self.rearm) {
                // A new reader (another DESCRIBE) must start playing in time like the first one.
                started = false;
                start_deadline.as_mut().reset(tokio::time::Instant::now() + START_DEADLINE);
            }
            started |= self.playing || matches!(self.mode, Mode::Record(_));
            if self.buf.capacity() - self.buf.len() < 1024 {
                let publishing = matches!(self.mode, Mode::Announced { .. } | Mode::Record(_));
                self.buf.reserve(if publishing { 64 * 1024 } else { 2048 });
            }
            tokio::select! {
                () = &mut start_deadline, if !started => {
                    return Err(RtspError::Protocol(format!("neither playing nor recording after {} s", START_DEADLINE.as_secs())));
                }
                () = &mut idle_check => {
                    if activity.idle_since_last_check() >= IDLE_CHECKS {
                        return Err(RtspError::Idle(SESSION_TIMEOUT));
                    }
                    idle_check.as_mut().reset(tokio::time::Instant::now() + IDLE_CHECK);
                }
                read = self.stream.read_buf(&mut self.buf) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    activity.note();
                    self.take_messages().await?;
                }
                frame = next_frame(&mut self.mode, self.playing) => match frame {
                    Some(frame) => {
                        if !self.playing_udp {
                            activity.note();
                        }
                        if let Mode::Play(player) = &mut self.mode {
                            player.send(&mut self.stream, frame).await?;
                        }
                    }
                    None => return Err(RtspError::Ended("the route stopped serving this player".into())),
                },
                Some(datagram) = self.udp_rx.recv() => {
                    activity.note();
                    self.datagram(datagram).await?;
                }
            }
        }
    }

    /// Handles every complete message in the buffer.
    async fn take_messages(&mut self) -> Result<(), RtspError> {
        loop {
            match message::next(&mut self.buf, &mut self.scanned) {
                Ok(None) => return Ok(()),
                Ok(Some(Incoming::Request(request))) => self.request(*request).await?,
                Ok(Some(Incoming::Interleaved { channel, data })) => self.interleaved(channel, data).await?,
                Err(malformed) => {
                    let reply = Reply::error(StatusCode::BadRequest, malformed.to_string());
                    let _ = write::write(&mut self.stream, &reply.encode(None)).await;
                    return Err(RtspError::Protocol(format!("closed after {malformed}")));
                }
            }
        }
    }

    async fn request(&mut self, request: Request<Vec<u8>>) -> Result<(), RtspError> {
        let cseq = request.header(&headers::CSEQ).map(|v| v.as_str().to_string());
        let method = message::method_name(request.method()).to_string();
        let reply = match self.check_session(&request) {
            Err(reply) => reply,
            Ok(()) => self.answer(&request).await,
        };
        if !reply.status.is_success() {
            tracing::debug!(peer = %self.peer, %method, status = u16::from(reply.status), reason = reply.reason.as_deref().unwrap_or_default(), "RTSP request refused");
        }
        let mut reply = reply;
        if let Some(id) = &self.session
            && !reply.headers.iter().any(|(name, _)| *name == headers::SESSION)
        {
            reply = reply.header(headers::SESSION, format!("{id};timeout={}", SESSION_TIMEOUT.as_secs()));
        }
        write::write(&mut self.stream, &reply.encode(cseq.as_deref())).await?;
        Ok(())
    }

    /// A request naming a session must name this connection's.
    fn check_session(&self, request: &Request<Vec<u8>>) -> Result<(), Reply> {
        let Some(named) = request.header(&headers::SESSION) else { return Ok(()) };
        let named = named.as_str().split(';').next().unwrap_or_default().trim();
        match &self.session {
            Some(id) if id == named => Ok(()),
            _ => Err(Reply::error(StatusCode::SessionNotFound, "Session Not Found")),
        }
    }

    async fn answer(&mut self, request: &Request<Vec<u8>>) -> Reply {
        let reply = match request.method() {
            Method::Options => Ok(Reply::ok().header(headers::PUBLIC, PUBLIC)),
            Method::Describe => self.describe(request).await,
            Method::Announce => self.announce(request).await,
            Method::Setup => self.setup(request).await,
            Method::Play => self.play(request).await,
            Method::Pause => Ok(self.pause()),
            Method::Record => self.record().await,
            Method::Teardown => Ok(self.teardown()),
            Method::GetParameter | Method::SetParameter => Ok(Reply::ok()),
            _ => Ok(Reply::error(StatusCode::NotImplemented, "Not Implemented").header(headers::PUBLIC, PUBLIC)),
        };
        reply.unwrap_or_else(|refused| refused)
    }

    async fn describe(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        if matches!(self.mode, Mode::Announced { .. } | Mode::Record(_)) {
            return Err(invalid_state("this connection is publishing"));
        }
        let url = request_url(request)?;
        let route = self.whole_route(url.path())?;
        let player = self.prepare_player(request, &route).await?;
        let (player, sdp) = player;
        self.mode = Mode::Play(Box::new(player));
        self.playing = false;
        self.playing_udp = false;
        self.udp.clear();
        self.channels.clear();
        let base = base_url(&url, &route);
        Ok(Reply::ok().header(headers::CONTENT_BASE, format!("{base}/")).body("application/sdp", sdp.into_bytes()))
    }

    /// Admits a reader of `route` and takes its reader slot.
    async fn prepare_player(&mut self, request: &Request<Vec<u8>>, route: &str) -> Result<(RtspPlayer, String), Reply> {
        self.attach()?;
        self.rearm = true;
        let admitted = self.admit(request, route, Wants::Read(Output::Rtsp)).await?;
        match RtspPlayer::prepare(admitted, self.peer, self.local.ip(), DESCRIBE_WAIT).await {
            Ok((player, sdp)) => {
                tracing::info!(peer = %self.peer, route, "RTSP player connected");
                Ok((player, sdp))
            }
            Err(PrepareError::NoStream(route)) => {
                Err(Reply::error(StatusCode::NotFound, format!("route {route} has no stream yet")))
            }
            Err(PrepareError::Route(e)) => Err(route_refusal(&e)),
        }
    }

    async fn announce(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        if !matches!(self.mode, Mode::Idle) {
            return Err(invalid_state("this connection already described or announced a stream"));
        }
        let url = request_url(request)?;
        let route = self.whole_route(url.path())?;
        let admitted = self.admit(request, &route, Wants::Publish(PublishProtocol::Rtsp)).await?;
        let (streams, skipped) = sdp::parse_announce(request.body())
            .map_err(|e| Reply::error(StatusCode::BadRequest, format!("ANNOUNCE: {e}")))?;
        for why in &skipped {
            tracing::warn!(peer = %self.peer, route, "RTSP publisher's {why}; the route goes on without it");
        }
        let set_up = vec![false; streams.len()];
        self.mode = Mode::Announced { admitted, streams, set_up };
        Ok(Reply::ok())
    }

    async fn setup(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        let url = setup_url(request_url(request)?);
        if self.setups >= MAX_SETUPS {
            return Err(Reply::error(StatusCode::BadRequest, format!("more than {MAX_SETUPS} SETUPs in one session")));
        }
        let header = request.header(&headers::TRANSPORT).map(|v| v.as_str()).unwrap_or_default();
        let next_channel = self.setups.saturating_mul(2);
        let requested =
            transport::choose(header, next_channel).map_err(|e| Reply::error(StatusCode::UnsupportedTransport, e.0))?;
        if matches!(self.mode, Mode::Idle) {
            // A player that skipped DESCRIBE (it knew the SDP): admitted here instead.
            if requested.record {
                return Err(invalid_state("ANNOUNCE comes before a SETUP to record"));
            }
            let (route, _) = self.route_of(url.path())?;
            let (player, _) = self.prepare_player(request, &route).await?;
            self.mode = Mode::Play(Box::new(player));
        }
        if self.playing || matches!(self.mode, Mode::Record(_)) {
            return Err(invalid_state("SETUP after PLAY or RECORD is not supported"));
        }
        let path = url.path().trim_matches('/').to_string();
        let index = match &self.mode {
            Mode::Play(player) => {
                let control = path.strip_prefix(player.route.as_str()).unwrap_or(&path).trim_start_matches('/');
                player.find(control).or((control.is_empty() && player.offered() == 1).then_some(0))
            }
            Mode::Announced { admitted, streams, .. } => {
                let route = admitted.config.name.as_str();
                let control = path.strip_prefix(route).unwrap_or(&path).trim_start_matches('/');
                streams.iter().position(|s| {
                    let theirs = url::Url::parse(&s.control).map(|u| u.path().trim_matches('/').to_string());
                    s.control == control
                        || theirs.is_ok_and(|p| p == path)
                        || (control.is_empty() && streams.len() == 1)
                })
            }
            _ => None,
        };
        let Some(index) = index else {
            return Err(Reply::error(StatusCode::NotFound, format!("no stream \"{path}\" in this session")));
        };
        let udp_elsewhere = self.udp.iter().filter(|(stream, _)| *stream != index).count();
        if matches!(requested.lower, Lower::Udp { .. }) && udp_elsewhere >= MAX_UDP_STREAMS {
            return Err(Reply::error(
                StatusCode::UnsupportedTransport,
                format!("more than {MAX_UDP_STREAMS} streams over UDP"),
            ));
        }
        let udp = match requested.lower {
            Lower::Tcp { .. } => None,
            Lower::Udp { .. } => Some(bind_pair(self.local.ip()).await.map_err(|e| {
                Reply::error(StatusCode::InternalServerError, format!("no UDP ports for the stream: {e}"))
            })?),
        };
        let server_ports =
            udp.as_ref().and_then(|(rtp, rtcp)| Some((rtp.local_addr().ok()?.port(), rtcp.local_addr().ok()?.port())));
        // The stream's previous transport, if it was set up before, gives way to this one.
        self.channels.retain(|(_, stream, _)| *stream != index);
        self.udp.retain(|(stream, _)| *stream != index);
        let peer = self.peer.ip();
        let mut ssrc = None;
        match &mut self.mode {
            Mode::Play(player) => {
                let sink = match (requested.lower, udp) {
                    (Lower::Udp { rtp, rtcp }, Some((s_rtp, s_rtcp))) => {
                        let (s_rtp, s_rtcp) = (Arc::new(s_rtp), Arc::new(s_rtcp));
                        // Receiver reports keep the session alive; RTP to us is not expected.
                        let reports = spawn_udp_reader(Arc::clone(&s_rtcp), index, true, peer, self.udp_tx.clone());
                        self.udp.push((index, vec![reports]));
                        Sink::Udp {
                            rtp: s_rtp,
                            rtcp: s_rtcp,
                            to_rtp: SocketAddr::new(peer, rtp),
                            to_rtcp: SocketAddr::new(peer, rtcp),
                        }
                    }
                    (Lower::Tcp { rtp, rtcp }, _) => Sink::Tcp { rtp, rtcp },
                    (Lower::Udp { .. }, None) => {
                        return Err(Reply::error(StatusCode::InternalServerError, "no UDP ports for the stream"));
                    }
                };
                ssrc = player.setup(index, sink);
                self.playing_udp = !self.udp.is_empty();
            }
            Mode::Announced { set_up, .. } => {
                match (requested.lower, udp) {
                    (Lower::Tcp { rtp, rtcp }, _) => {
                        self.channels.push((rtp, index, false));
                        self.channels.push((rtcp, index, true));
                    }
                    (Lower::Udp { .. }, Some((s_rtp, s_rtcp))) => {
                        let readers = vec![
                            spawn_udp_reader(Arc::new(s_rtp), index, false, peer, self.udp_tx.clone()),
                            spawn_udp_reader(Arc::new(s_rtcp), index, true, peer, self.udp_tx.clone()),
                        ];
                        self.udp.push((index, readers));
                    }
                    (Lower::Udp { .. }, None) => {}
                }
                if let Some(done) = set_up.get_mut(index) {
                    *done = true;
                }
            }
            _ => {}
        }
        self.setups = self.setups.saturating_add(1);
        let id = self.session.get_or_insert_with(session_id).clone();
        let answer = Answer { requested, server_ports, ssrc };
        Ok(Reply::ok()
            .header(headers::TRANSPORT, answer.to_string())
            .header(headers::SESSION, format!("{id};timeout={}", SESSION_TIMEOUT.as_secs())))
    }

    async fn play(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        if matches!(&self.mode, Mode::Play(player) if player.is_paused()) {
            self.attach()?;
        }
        let Mode::Play(player) = &mut self.mode else {
            return Err(invalid_state("PLAY before DESCRIBE and SETUP"));
        };
        if !player.is_set_up() {
            return Err(invalid_state("PLAY before SETUP"));
        }
        let info = player.play().await.map_err(|e| route_refusal(&e))?;
        self.playing = true;
        let url = request_url(request)?;
        let base = base_url(&url, &player.route);
        let rtp_info: Vec<String> =
            info.iter().map(|(control, seq)| format!("url={base}/{control};seq={seq}")).collect();
        Ok(Reply::ok().header(headers::RANGE, "npt=0.000-").header(headers::RTP_INFO, rtp_info.join(",")))
    }

    /// Ends the session; the connection stays open for another (RFC 2326 10.7: clients may send more requests).
    fn teardown(&mut self) -> Reply {
        if let Mode::Record(publisher) = &self.mode {
            tracing::info!(peer = %self.peer, route = %publisher.route, lost_packets = publisher.lost(), "RTSP publisher finished");
        }
        // Dropping the publisher's feed ends its publish normally; dropping a player leaves the route.
        self.mode = Mode::Idle;
        self.playing = false;
        self.playing_udp = false;
        self.udp.clear();
        self.channels.clear();
        self.session = None;
        Reply::ok()
    }

    fn pause(&mut self) -> Reply {
        if let Mode::Play(player) = &mut self.mode {
            player.pause();
            self.playing = false;
        }
        Reply::ok()
    }

    async fn record(&mut self) -> Result<Reply, Reply> {
        let Mode::Announced { set_up, .. } = &self.mode else {
            return Err(invalid_state("RECORD before ANNOUNCE and SETUP"));
        };
        if !set_up.iter().any(|s| *s) {
            return Err(invalid_state("RECORD before SETUP"));
        }
        let Mode::Announced { admitted, streams, .. } = std::mem::replace(&mut self.mode, Mode::Idle) else {
            unreachable!("matched above");
        };
        let route = admitted.config.name.to_string();
        match RtspPublisher::start(admitted.clone(), self.peer, &streams).await {
            Ok(publisher) => {
                tracing::info!(peer = %self.peer, route, "RTSP publisher connected");
                self.mode = Mode::Record(Box::new(publisher));
                Ok(Reply::ok())
            }
            Err(e) => {
                let set_up = vec![true; streams.len()];
                self.mode = Mode::Announced { admitted, streams, set_up };
                Err(route_refusal(&e))
            }
        }
    }

    /// Interleaved data: a publisher's RTP and RTCP; a player's receiver reports (only liveness).
    async fn interleaved(&mut self, channel: u8, data: Bytes) -> Result<(), RtspError> {
        let Mode::Record(publisher) = &mut self.mode else { return Ok(()) };
        let Some(&(_, stream, rtcp)) = self.channels.iter().find(|(c, _, _)| *c == channel) else { return Ok(()) };
        let delivered = if rtcp { publisher.rtcp(stream, &data).await } else { publisher.rtp(stream, data).await };
        delivered.map_err(|e| RtspError::Ended(e.to_string()))
    }

    async fn datagram(&mut self, d: Datagram) -> Result<(), RtspError> {
        let Mode::Record(publisher) = &mut self.mode else { return Ok(()) };
        let delivered =
            if d.rtcp { publisher.rtcp(d.stream, &d.data).await } else { publisher.rtp(d.stream, d.data).await };
        delivered.map_err(|e| RtspError::Ended(e.to_string()))
    }

    /// Counts one more route reader taken by this connection, refusing past [`MAX_ATTACHMENTS`].
    fn attach(&mut self) -> Result<(), Reply> {
        self.attachments += 1;
        if self.attachments > MAX_ATTACHMENTS {
            return Err(Reply::error(
                StatusCode::NotEnoughBandwidth,
                format!("more than {MAX_ATTACHMENTS} readers taken on one connection"),
            ));
        }
        Ok(())
    }

    /// The route a URL path names as a whole (DESCRIBE, ANNOUNCE): a path with more after a route is no route.
    fn whole_route(&self, path: &str) -> Result<String, Reply> {
        match self.route_of(path)? {
            (route, rest) if rest.is_empty() => Ok(route),
            _ => Err(Reply::error(StatusCode::NotFound, format!("there is no route \"{}\"", path.trim_matches('/')))),
        }
    }

    /// The route a URL path names, and what follows it.
    fn route_of(&self, path: &str) -> Result<(String, String), Reply> {
        let dir = self.admission.routes();
        match super::route_prefix(&dir, path) {
            Some((route, rest)) => Ok((route.to_string(), rest.to_string())),
            None => Err(Reply::error(
                StatusCode::NotFound,
                format!("there is no route \"{}\" (use rtsp://host:port/ROUTE)", path.trim_matches('/')),
            )),
        }
    }

    /// Admission of `wants` on `route`, with the request's credentials; a refusal as the reply to send.
    async fn admit(&self, request: &Request<Vec<u8>>, route: &str, wants: Wants) -> Result<Admitted, Reply> {
        let url = request_url(request)?;
        let mut query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let mut credentials = request
            .header(&headers::AUTHORIZATION)
            .map(|v| crate::auth::http::from_authorization(v.as_str()))
            .unwrap_or(Credentials::None);
        if let Some(i) = query.iter().position(|(k, _)| k == "token") {
            let (_, token) = query.remove(i);
            if credentials == Credentials::None {
                credentials = Credentials::Bearer(token);
            }
        }
        let stream_key = query.iter().position(|(k, _)| k == "key").map(|i| query.remove(i).1);
        let ask = Ask {
            route: route.to_string(),
            wants,
            protocol: Protocol::Rtsp,
            target: format!("/{route}"),
            remote: Some(self.peer.ip()),
            query,
            credentials,
            stream_key,
        };
        self.admission.admit(ask).await.map_err(|refusal| refused(&refusal))
    }
}

async fn next_frame(mode: &mut Mode, playing: bool) -> Option<Arc<crate::media::Frame>> {
    match mode {
        Mode::Play(player) if playing => player.next_frame().await,
        _ => std::future::pending().await,
    }
}

/// The request's URL (RTSP requests always carry an absolute one).
fn request_url(request: &Request<Vec<u8>>) -> Result<url::Url, Reply> {
    request.request_uri().cloned().ok_or_else(|| Reply::error(StatusCode::BadRequest, "the request has no URL"))
}

/// A SETUP's URL with a control the client appended after the query (ffmpeg's `rtsp://host/cam?key=K/streamid=0`,
/// the ANNOUNCE URL plus `/streamid=0`) moved back into the path: `rtsp://host/cam/streamid=0?key=K`. Only for
/// SETUP, whose URL names a stream: elsewhere a `/` in the query is part of a token.
fn setup_url(mut url: url::Url) -> url::Url {
    let moved = url.query().and_then(|q| q.rsplit_once('/')).map(|(q, c)| (q.to_string(), c.to_string()));
    if let Some((query, control)) = moved {
        let path = format!("{}/{control}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query((!query.is_empty()).then_some(query.as_str()));
    }
    url
}

/// `rtsp://host:port/route`: the URL streams' controls are relative to (no credentials, no query).
fn base_url(url: &url::Url, route: &str) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(port) => format!("rtsp://{host}:{port}/{route}"),
        None => format!("rtsp://{host}/{route}"),
    }
}

fn invalid_state(why: &str) -> Reply {
    Reply::error(StatusCode::MethodNotValidInThisState, why)
}

/// An admission refusal as RTSP answers it.
fn refused(refusal: &Refusal) -> Reply {
    let text = refusal.to_string();
    match refusal {
        Refusal::NoRoute(_) => Reply::error(StatusCode::NotFound, text),
        Refusal::NotPublishable { .. } | Refusal::OutputNotAllowed { .. } => Reply::error(StatusCode::Forbidden, text),
        Refusal::Refused { outcome, .. } => match outcome {
            Outcome::Challenge { realm } => Reply::error(StatusCode::Unauthorized, "Unauthorized")
                .header(headers::WWW_AUTHENTICATE, format!("Basic realm=\"{}\"", realm.replace('"', ""))),
            Outcome::Denied { .. } => {
                Reply::error(StatusCode::Unauthorized, text).header(headers::WWW_AUTHENTICATE, "Basic realm=\"sluice\"")
            }
            Outcome::TooManyFailures { retry_after } => Reply::error(StatusCode::ServiceUnavailable, text)
                .header(headers::RETRY_AFTER, retry_after.as_secs().max(1).to_string()),
            Outcome::Unavailable { .. } | Outcome::Allowed { .. } => Reply::error(StatusCode::ServiceUnavailable, text),
        },
    }
}

/// A route's refusal of a reader or publisher slot.
fn route_refusal(e: &RouteError) -> Reply {
    let status = match e {
        RouteError::TooManyReaders { .. } => StatusCode::NotEnoughBandwidth,
        // 409: RTSP has no code of its own for "someone else is publishing" (MediaMTX answers 400).
        RouteError::PublisherBusy(_) => StatusCode::Extension(409),
        RouteError::OutputNotAllowed { .. } | RouteError::NotPublishable { .. } => StatusCode::Forbidden,
        RouteError::Ended(_) => StatusCode::NotFound,
    };
    Reply::error(status, e.to_string())
}

fn session_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Two UDP sockets on adjacent ports, RTP on the even one (what RTSP 1.0 players expect), on `ip`.
async fn bind_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..64 {
        let rtp = UdpSocket::bind((ip, 0)).await?;
        let port = rtp.local_addr()?.port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, port + 1)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free pair of adjacent UDP ports"))
}

/// A task that is aborted when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads datagrams from the client's address only (anything else on the port is dropped) into the connection.
fn spawn_udp_reader(
    socket: Arc<UdpSocket>,
    stream: usize,
    rtcp: bool,
    client: IpAddr,
    tx: mpsc::Sender<Datagram>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        // RTCP packets are small; RTP over UDP fits an Ethernet frame (a jumbo one at most). Per stream and
        // connection, so kept small.
        let mut buf = vec![0u8; if rtcp { 2048 } else { 9216 }];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            if from.ip() != client {
                continue;
            }
            let datagram = Datagram { stream, rtcp, data: Bytes::copy_from_slice(&buf[..n]) };
            if tx.send(datagram).await.is_err() {
                return;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_drops_credentials_and_query() {
        let url = url::Url::parse("rtsp://u:p@cam.local:8554/live/cam1?token=x").expect("url");
        assert_eq!(base_url(&url, "live/cam1"), "rtsp://cam.local:8554/live/cam1");
        let url = url::Url::parse("rtsp://[::1]/a").expect("url");
        assert_eq!(base_url(&url, "a"), "rtsp://[::1]/a");
    }

    #[test]
    fn refusals_map_to_rtsp_statuses() {
        let challenge =
            refused(&Refusal::Refused { route: "cam".into(), outcome: Outcome::Challenge { realm: "cams".into() } });
        assert_eq!(challenge.status, StatusCode::Unauthorized);
        assert!(challenge.headers.iter().any(|(n, v)| *n == headers::WWW_AUTHENTICATE && v == "Basic realm=\"cams\""));
        assert_eq!(refused(&Refusal::NoRoute("x".into())).status, StatusCode::NotFound);
        let busy =
            route_refusal(&RouteError::PublisherBusy(crate::config::model::RouteName::parse("a").expect("name")));
        assert_eq!(u16::from(busy.status), 409);
    }
}
