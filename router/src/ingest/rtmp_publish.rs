//! `from = "rtmp"`: an RTMP publisher (OBS, ffmpeg, an encoder) feeding its route. The RTMP port's driver
//! (`listen::rtmp`) admits the connection and hands each audio/video message here.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::admit::Admitted;
use crate::route::{RouteError, SourceEvent, SourceFeed};
use crate::rtmp::RtmpError;
use crate::rtmp::tracks::FlvTracks;

/// A publishing connection's side of its route.
#[derive(Debug)]
pub struct RtmpPublisher {
    pub route: String,
    feed: SourceFeed,
    tracks: FlvTracks,
}

impl RtmpPublisher {
    /// Takes the route's publisher slot (replacing the current publisher when the route allows it).
    pub async fn start(admitted: Admitted, peer: SocketAddr) -> Result<RtmpPublisher, RouteError> {
        let feed = admitted.route.attach_publisher(Some(peer.to_string()), admitted.config.override_publisher).await?;
        Ok(RtmpPublisher { route: admitted.config.name.to_string(), feed, tracks: FlvTracks::default() })
    }

    /// One video message (`timestamp_ms` from the RTMP header).
    pub async fn video(&mut self, data: &Bytes, timestamp_ms: u32) -> Result<(), RtmpError> {
        let events = match self.tracks.video(data, timestamp_ms) {
            Ok(events) => events,
            Err(e) => {
                // Tell whoever looks at the route why its publisher was dropped (Enhanced RTMP, another codec).
                let _ = self.feed.send(SourceEvent::Problem { error: format!("publisher refused: {e}") }).await;
                return Err(e.into());
            }
        };
        self.deliver(events).await
    }

    /// One audio message.
    pub async fn audio(&mut self, data: &Bytes, timestamp_ms: u32) -> Result<(), RtmpError> {
        let events = self.tracks.audio(data, timestamp_ms)?;
        self.deliver(events).await
    }

    /// The connection ended without the publisher ending its stream: tells the route why (its `last_error`).
    pub async fn lost(self, why: &str) {
        let error = format!("the publisher went without ending its stream ({why})");
        let _ = self.feed.send(SourceEvent::Problem { error }).await;
    }

    /// Hands events to the route, waiting when it is behind: TCP backpressure slows the publisher rather than
    /// the route losing frames mid-GOP.
    async fn deliver(&self, events: Vec<SourceEvent>) -> Result<(), RtmpError> {
        for event in events {
            if !self.feed.send(event).await {
                return Err(RtmpError::Refused("another publisher replaced this one, or the route ended".into()));
            }
        }
        Ok(())
    }
}
