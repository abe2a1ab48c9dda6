//! `to = ["rtmp"]`: an RTMP player (ffplay, VLC, ffmpeg) reading its route. The RTMP port's driver
//! (`listen::rtmp`) admits the connection, then waits on [`RtmpPlayer::next_frame`] and hands each frame back to
//! [`RtmpPlayer::send`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rml_rtmp::sessions::ServerSession;
use rml_rtmp::time::RtmpTimestamp;
use tokio::net::TcpStream;

use crate::admit::Admitted;
use crate::media::{CodecParams, Frame, TrackId};
use crate::route::{ReaderKind, RouteError, RouteHandle, RouteReader};
use crate::rtmp::{RtmpError, flv, wire};

/// Frames coalesced into one write at most.
const MAX_FRAMES_PER_WRITE: usize = 32;

/// A playing connection's side of its route.
#[derive(Debug)]
pub struct RtmpPlayer {
    stream_id: u32,
    reader: RouteReader,
    route: RouteHandle,
    /// Whether `onMetaData` went out (before the first frame, once the route's tracks are known).
    sent_metadata: bool,
    /// Parameter sets last sent to the player, per track (a change sends a new sequence header).
    sent_params: Vec<(TrackId, CodecParams)>,
    /// What one wake sends, kept between wakes to reuse its allocation.
    out: Vec<Bytes>,
}

impl RtmpPlayer {
    /// Takes a reader slot of the admitted route for the player's message stream `stream_id`.
    pub async fn start(admitted: Admitted, peer: SocketAddr, stream_id: u32) -> Result<RtmpPlayer, RouteError> {
        let reader = admitted.route.add_reader(ReaderKind::Rtmp, Some(peer.to_string())).await?;
        tracing::info!(%peer, route = %admitted.config.name, "RTMP player connected");
        Ok(RtmpPlayer {
            stream_id,
            reader,
            route: admitted.route,
            sent_metadata: false,
            sent_params: Vec::new(),
            out: Vec::new(),
        })
    }

    /// The next frame; `None` when the route ended (removed by a reload) or dropped this reader.
    pub async fn next_frame(&mut self) -> Option<Arc<Frame>> {
        self.reader.recv().await
    }

    /// Sends `first` and whatever else the player's queue already holds, in one vectored write: when a server
    /// is busy, queues deepen and each wake carries more frames per system call.
    pub async fn send(
        &mut self,
        session: &mut ServerSession,
        stream: &mut TcpStream,
        first: Arc<Frame>,
    ) -> Result<(), RtmpError> {
        let mut out = std::mem::take(&mut self.out);
        if !self.sent_metadata {
            // The first frame has arrived, so the route knows its tracks.
            let tracks = self.route.snapshot().await.map(|s| s.tracks).unwrap_or_default();
            out.extend(flv::metadata_message(&tracks, self.stream_id));
            self.sent_metadata = true;
        }
        self.queue_frame(session, &first, &mut out)?;
        for _ in 0..MAX_FRAMES_PER_WRITE {
            let Some(next) = self.reader.try_recv() else { break };
            self.queue_frame(session, &next, &mut out)?;
        }
        let written = wire::write_vectored(stream, &out).await;
        out.clear();
        self.out = out;
        written
    }

    /// Appends what one frame needs on the wire (a sequence header first if the track's parameters changed).
    fn queue_frame(
        &mut self,
        session: &mut ServerSession,
        frame: &Arc<Frame>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), RtmpError> {
        let sent = self.sent_params.iter().find(|(id, _)| *id == frame.track.id).map(|(_, params)| params);
        if sent != Some(&frame.track.params)
            && let Some((is_video, header)) = flv::sequence_header(&frame.track.params)
        {
            let ts = RtmpTimestamp::new((frame.dts.max(0) * 1000 / i64::from(frame.track.clock_rate.max(1))) as u32);
            let packet = if is_video {
                session.send_video_data(self.stream_id, header, ts, false)?
            } else {
                session.send_audio_data(self.stream_id, header, ts, false)?
            };
            out.push(Bytes::from(packet.bytes));
            self.sent_params.retain(|(id, _)| *id != frame.track.id);
            self.sent_params.push((frame.track.id, frame.track.params.clone()));
        }
        // Made once per route frame, shared by every RTMP player of the route.
        if let Some(m) = frame.flv() {
            if self.stream_id == crate::media::flv::PLAYER_STREAM_ID {
                // Full-header chunks on our own chunk streams: the same bytes for every player, no copy.
                out.push(m.chunked.clone());
            } else {
                let ts = RtmpTimestamp::new(m.timestamp_ms);
                let droppable = !frame.keyframe;
                let packet = if m.video {
                    session.send_video_data(self.stream_id, m.body.clone(), ts, droppable)?
                } else {
                    session.send_audio_data(self.stream_id, m.body.clone(), ts, droppable)?
                };
                out.push(Bytes::from(packet.bytes));
            }
        }
        Ok(())
    }
}
