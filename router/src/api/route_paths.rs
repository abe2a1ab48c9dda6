//! Route names with segments (`live/cam1`) in HTTP paths: `/live/cam1/whep` is route `live/cam1`'s WHEP endpoint.
//!
//! The HTTP router matches one segment per route name (`/{route}/whep`). Before routing, a path whose route part
//! has several segments gets them joined with `%2F` (`/live%2Fcam1/whep`), which the handlers' `Path` extractor
//! decodes back to the name. Clients may send either form. Route names never use the last segments that mark an
//! endpoint (`whip`, `whep`, `publish`: see [`RouteName::RESERVED_SEGMENTS`]; HLS's `*.m3u8` and `*.mp4`), so the
//! split is unambiguous.

use axum::extract::Request;
use axum::http::Uri;

use crate::config::model::RouteName;

/// The path with a multi-segment route name joined into one segment, or `None` when it needs no change.
pub fn join_route_segments(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let first = *segments.first()?;
    // The router's own paths, and embedded files (`/vendor/socket.io.min.js`), are never routes.
    if RouteName::RESERVED.contains(&first) || super::web::asset(path.trim_start_matches('/')).is_some() {
        return None;
    }
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let endpoint = |s: &str| s == "whip" || s == "whep";
    let route_len = match segments.as_slice() {
        // `/ROUTE.../whip|whep|publish`, `/ROUTE.../index.m3u8` and the HLS files
        [.., last] if endpoint(last) || *last == "publish" || RouteName::is_hls_file(last) => segments.len() - 1,
        // `/ROUTE.../whip|whep/SESSION`
        [.., side, _] if endpoint(side) && segments.len() > 2 => segments.len() - 2,
        // `/ROUTE...`: the viewer page
        _ => segments.len(),
    };
    if route_len < 2 {
        return None;
    }
    let mut out = format!("/{}", segments[..route_len].join("%2F"));
    for rest in &segments[route_len..] {
        out.push('/');
        out.push_str(rest);
    }
    Some(out)
}

/// [`join_route_segments`] on a request, before it is routed.
pub fn rewrite(mut request: Request) -> Request {
    let uri = request.uri();
    if let Some(path) = join_route_segments(uri.path()) {
        let path_and_query = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(new) = Uri::from_parts(parts) {
                *request.uri_mut() = new;
            }
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_part_of_several_segments_becomes_one() {
        let j = |p: &str| join_route_segments(p);
        assert_eq!(j("/live/cam1/whep").as_deref(), Some("/live%2Fcam1/whep"));
        assert_eq!(j("/a/b/c/whip").as_deref(), Some("/a%2Fb%2Fc/whip"));
        assert_eq!(j("/live/cam1/whep/s-123").as_deref(), Some("/live%2Fcam1/whep/s-123"));
        assert_eq!(j("/live/cam1/publish").as_deref(), Some("/live%2Fcam1/publish"));
        assert_eq!(j("/live/cam1").as_deref(), Some("/live%2Fcam1"));
        assert_eq!(j("/live/cam1/index.m3u8").as_deref(), Some("/live%2Fcam1/index.m3u8"));
        assert_eq!(j("/live/cam1/part12.3.mp4").as_deref(), Some("/live%2Fcam1/part12.3.mp4"));
        // One-segment names, the API, embedded files and odd paths are left alone.
        for same in [
            "/demo/whep",
            "/demo/whep/s-1",
            "/demo",
            "/",
            "/v1/routes/x",
            "/metrics",
            "/a//b",
            "/index.html",
            "/vendor/socket.io.min.js",
        ] {
            assert_eq!(j(same), None, "{same}");
        }
    }

    #[test]
    fn the_query_survives_the_rewrite() {
        let request = Request::builder().uri("/live/cam1/whep?token=t").body(axum::body::Body::empty()).expect("req");
        assert_eq!(rewrite(request).uri().to_string(), "/live%2Fcam1/whep?token=t");
    }
}
