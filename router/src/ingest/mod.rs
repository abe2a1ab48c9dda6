//! Sources: one module per kind, each feeding a route through [`crate::route::SourceFeed`].
//!
//! [`source_for`] maps a route's `from` to what the route runs. Source kinds the configuration accepts but this
//! build cannot run yet become [`RouteSource::Unavailable`] with the reason, visible in the API and logs, instead
//! of a route that silently never goes live.

pub mod demo;
pub mod rtmp_publish;
pub mod rtmp_pull;
pub mod rtsp_publish;
pub mod rtsp_pull;
pub mod whip;

use std::sync::Arc;

use crate::config::model::{RouteConfig, Source};
use crate::route::actor::RouteSource;

pub fn source_for(route: &RouteConfig) -> RouteSource {
    match &route.from {
        Source::Demo => RouteSource::Pull(Arc::new(demo::DemoSource)),
        // Publishers attach when they connect: WHIP through `ingest::whip`, RTMP through `ingest::rtmp_publish`,
        // RTSP through `ingest::rtsp_publish`.
        Source::Publish { .. } => RouteSource::Publish,
        Source::Pull { url } if url.0.scheme() == "rtsp" => RouteSource::Pull(Arc::new(rtsp_pull::RtspSource::new(
            url.0.clone(),
            route.rtsp.clone().unwrap_or_default(),
        ))),
        Source::Pull { url } if url.0.scheme() == "rtmp" => {
            RouteSource::Pull(Arc::new(rtmp_pull::RtmpPullSource::new(url.0.clone())))
        }
        Source::Pull { url } => RouteSource::Unavailable(format!(
            "pulling {}:// sources is not available in this build yet",
            url.0.scheme()
        )),
    }
}
