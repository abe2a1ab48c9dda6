//! `from = "rtmp://host/app/stream"`: a route's source pulled from another RTMP server, reconnecting with backoff.

use std::time::{Duration, Instant};

use rml_rtmp::sessions::ClientSessionEvent;
use tokio::task::JoinHandle;
use url::Url;

use crate::backoff::Backoff;
use crate::config::model::redact_url;
use crate::route::actor::{SourceEvent, SourceFactory, SourceFeed};
use crate::rtmp::client::{Client, Mode, RtmpTarget, read};
use crate::rtmp::tracks::FlvTracks;

/// A pulled stream that sends nothing for this long is considered stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Plays a stream from another server into the route.
#[derive(Debug, Clone)]
pub struct RtmpPullSource {
    url: Url,
}

impl RtmpPullSource {
    pub fn new(url: Url) -> Self {
        RtmpPullSource { url }
    }
}

impl SourceFactory for RtmpPullSource {
    fn start(&self, feed: SourceFeed) -> JoinHandle<()> {
        tokio::spawn(pull(self.url.clone(), feed))
    }
}

async fn pull(url: Url, feed: SourceFeed) {
    let name = redact_url(&url);
    let mut backoff = Backoff::default();
    let mut last_error: Option<String> = None;
    loop {
        let (error, healthy_for) = match pull_once(&url, &feed).await {
            Ok(()) => return, // the route stopped this source
            Err(e) => e,
        };
        let wait = backoff.failed(healthy_for);
        if last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(source = %name, %error, retry_in_ms = wait.as_millis() as u64, "RTMP pull failed; retrying with backoff");
        }
        last_error = Some(error.clone());
        if !feed.send(SourceEvent::Reconnecting { error }).await {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Ok when the route stopped us; Err((why, how long it delivered)) otherwise.
async fn pull_once(url: &Url, feed: &SourceFeed) -> Result<(), (String, Option<Duration>)> {
    let target = RtmpTarget::parse(url).map_err(|e| (e.to_string(), None))?;
    let (mut client, mut pending) = Client::connect(&target, Mode::Play).await.map_err(|e| (e.to_string(), None))?;
    if !feed.send(SourceEvent::Connected).await {
        return Ok(());
    }
    let started = Instant::now();
    let mut tracks = FlvTracks::default();
    loop {
        for event in pending.drain(..) {
            let events = match event {
                ClientSessionEvent::VideoDataReceived { data, timestamp } => tracks.video(&data, timestamp.value),
                ClientSessionEvent::AudioDataReceived { data, timestamp } => tracks.audio(&data, timestamp.value),
                _ => continue,
            };
            for e in events.map_err(|e| (e.to_string(), Some(started.elapsed())))? {
                if !feed.send(e).await {
                    return Ok(());
                }
            }
        }
        let n = tokio::time::timeout(STALL_TIMEOUT, read(&mut client.tcp, &mut client.buf))
            .await
            .map_err(|_| (format!("no data for {}s", STALL_TIMEOUT.as_secs()), Some(started.elapsed())))?
            .map_err(|e| (e.to_string(), Some(started.elapsed())))?;
        let data = client.buf[..n].to_vec();
        pending = client.input(&data).await.map_err(|e| (e.to_string(), Some(started.elapsed())))?;
    }
}
