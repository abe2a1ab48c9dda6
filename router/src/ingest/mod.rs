//! Sources: one module per kind, each feeding a route through [`crate::route::SourceFeed`].
//!
//! [`source_for`] maps a route's `from` to what the route runs. Source kinds the configuration accepts but this
//! build cannot run yet become [`RouteSource::Unavailable`] with the reason, visible in the API and logs, instead
//! of a route that silently never goes live.

pub mod demo;
pub mod rtmp_publish;
pub mod rtmp_pull;
pub mod rtsp;
pub mod whip;

use std::sync::Arc;

use crate::config::model::{PublishProtocol, RouteConfig, Source};
use crate::route::actor::RouteSource;

pub fn source_for(route: &RouteConfig) -> RouteSource {
    match &route.from {
        Source::Demo => RouteSource::Pull(Arc::new(demo::DemoSource)),
        // Publishers attach when they connect: WHIP through `ingest::whip`, RTMP through `ingest::rtmp_publish`.
        Source::Publish { protocol: PublishProtocol::Whip | PublishProtocol::Rtmp | PublishProtocol::Any } => {
            RouteSource::Publish
        }
        Source::Publish { protocol } => RouteSource::Unavailable(format!(
            "taking {} publishers is not available in this build yet",
            protocol.as_str().to_uppercase()
        )),
        Source::Pull { url } if url.0.scheme() == "rtsp" => {
            RouteSource::Pull(Arc::new(rtsp::RtspSource::new(url.0.clone(), route.rtsp.clone().unwrap_or_default())))
        }
        Source::Pull { url } if url.0.scheme() == "rtmp" => {
            RouteSource::Pull(Arc::new(rtmp_pull::RtmpPullSource::new(url.0.clone())))
        }
        Source::Pull { url } => RouteSource::Unavailable(format!(
            "pulling {}:// sources is not available in this build yet",
            url.0.scheme()
        )),
    }
}
