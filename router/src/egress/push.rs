//! `to = ["rtmp://..."]`: a route pushed to another RTMP server, reconnecting with backoff; its status for the API.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::sessions::{ClientSession, ClientSessionResult};
use rml_rtmp::time::RtmpTimestamp;
use serde::Serialize;
use tokio::task::JoinHandle;
use url::Url;

use crate::backoff::Backoff;
use crate::config::model::redact_push_url;
use crate::media::{CodecParams, TrackId};
use crate::route::{ReaderKind, RouteError, RouteHandle};
use crate::rtmp::client::{Client, ClientError, Mode, RtmpTarget, read};
use crate::rtmp::flv;

/// What the API shows about one push target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushStatus {
    pub target: String,
    /// "connecting", "live" or "retrying".
    pub state: &'static str,
    pub last_error: Option<String>,
    pub attempts: u64,
    pub frames_sent: u64,
}

/// Pushes a route to `url` until aborted (the route ended or its `to` no longer lists the URL).
pub fn spawn_push(route: RouteHandle, url: Url) -> (JoinHandle<()>, Arc<Mutex<PushStatus>>) {
    let status =
        Arc::new(Mutex::new(PushStatus { target: redact_push_url(&url), state: "connecting", ..Default::default() }));
    let task = tokio::spawn(push(route, url, Arc::clone(&status)));
    (task, status)
}

fn set(status: &Mutex<PushStatus>, f: impl FnOnce(&mut PushStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

async fn push(route: RouteHandle, url: Url, status: Arc<Mutex<PushStatus>>) {
    let name = redact_push_url(&url);
    let mut backoff = Backoff::default();
    let mut last_error: Option<String> = None;
    loop {
        set(&status, |s| {
            s.state = "connecting";
            s.attempts += 1;
        });
        let (error, healthy_for) = match push_once(&route, &url, &status).await {
            Ok(()) => {
                set(&status, |s| s.state = "stopped");
                return; // the route ended
            }
            Err(e) => e,
        };
        let wait = backoff.failed(healthy_for);
        set(&status, |s| {
            s.state = "retrying";
            s.last_error = Some(error.clone());
        });
        if last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(route = %route.name(), target = %name, %error, retry_in_ms = wait.as_millis() as u64, "RTMP push failed; retrying with backoff");
        }
        last_error = Some(error);
        tokio::time::sleep(wait).await;
    }
}

async fn push_once(
    route: &RouteHandle,
    url: &Url,
    status: &Mutex<PushStatus>,
) -> Result<(), (String, Option<Duration>)> {
    let target = RtmpTarget::parse(url).map_err(|e| (e.to_string(), None))?;
    let mut reader = match route.add_reader(ReaderKind::Push, Some(redact_push_url(url))).await {
        Ok(r) => r,
        Err(RouteError::Ended(_)) => return Ok(()),
        Err(e) => return Err((e.to_string(), None)),
    };
    let (mut client, _) = Client::connect(&target, Mode::Publish).await.map_err(|e| (e.to_string(), None))?;
    tracing::info!(route = %route.name(), target = %redact_push_url(url), "RTMP push connected");
    set(status, |s| s.state = "live");
    let started = Instant::now();
    let failed = |e: ClientError| (e.to_string(), Some(started.elapsed()));
    let mut sent_params: Vec<(TrackId, CodecParams)> = Vec::new();
    loop {
        tokio::select! {
            frame = reader.recv() => {
                let Some(frame) = frame else { return Ok(()) };
                let mut results = Vec::new();
                let sent = sent_params.iter().find(|(id, _)| *id == frame.track.id).map(|(_, p)| p);
                if sent != Some(&frame.track.params)
                    && let Some((is_video, header)) = flv::sequence_header(&frame.track.params)
                {
                    let ts = (frame.dts.max(0) * 1000 / i64::from(frame.track.clock_rate.max(1))) as u32;
                    results.push(publish(&mut client.session, is_video, header, ts, false).map_err(failed)?);
                    sent_params.retain(|(id, _)| *id != frame.track.id);
                    sent_params.push((frame.track.id, frame.track.params.clone()));
                }
                if let Some(m) = frame.flv() {
                    results.push(
                        publish(&mut client.session, m.video, m.body.clone(), m.timestamp_ms, !frame.keyframe)
                            .map_err(failed)?,
                    );
                    set(status, |s| s.frames_sent += 1);
                }
                client.apply(results).await.map_err(failed)?;
            }
            n = read(&mut client.tcp, &mut client.buf) => {
                let n = n.map_err(failed)?;
                let data = client.buf[..n].to_vec();
                client.input(&data).await.map_err(failed)?;
            }
        }
    }
}

fn publish(
    session: &mut ClientSession,
    video: bool,
    body: Bytes,
    ts: u32,
    droppable: bool,
) -> Result<ClientSessionResult, ClientError> {
    let ts = RtmpTimestamp::new(ts);
    Ok(if video {
        session.publish_video_data(body, ts, droppable)
    } else {
        session.publish_audio_data(body, ts, droppable)
    }?)
}
