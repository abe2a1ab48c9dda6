//! Listeners for protocols where one port takes both publishers and players: the accept loop and the
//! per-connection driver, which admits a connection once it says what it wants and hands it to `ingest` (a
//! publisher) or `egress` (a player). HTTP's listener is `api`.

pub mod rtmp;
pub mod rtsp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::admit::{Admission, Routes};
use crate::config::model::RouteName;
use crate::connections::Connections;

/// Accepts connections on `listener` until the process ends, each admitted through the caps every listener
/// shares (`[server.limits]`; one over them is closed at once) and served by `run` on its own task.
fn accept<F, Fut>(
    listener: TcpListener,
    protocol: &'static str,
    admission: Admission,
    connections: Arc<Connections>,
    run: F,
) where
    F: Fn(TcpStream, SocketAddr, Admission) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let limits = admission.routes().table.server.limits.clone();
                    let Ok(permit) = connections.admit(peer.ip(), &limits) else { continue };
                    let _ = stream.set_nodelay(true);
                    let served = run(stream, peer, admission.clone());
                    tokio::spawn(async move {
                        served.await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, protocol, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// Whether a connection has been idle: traffic either way is noted (a flag, not a clock read per frame), and each
/// check counts the periods in a row that saw none.
#[derive(Debug, Default)]
pub struct Activity {
    noted: bool,
    idle_checks: u32,
}

impl Activity {
    pub fn note(&mut self) {
        self.noted = true;
    }

    /// Check periods in a row, this one included, with nothing noted.
    pub fn idle_since_last_check(&mut self) -> u32 {
        if std::mem::take(&mut self.noted) {
            self.idle_checks = 0;
        } else {
            self.idle_checks += 1;
        }
        self.idle_checks
    }
}

/// The longest start of `path` (whole segments) that names a route, an exact one or one a template makes, and
/// the rest after it: `cam1/trackID=0` is route `cam1` and `trackID=0`; `live/cam1/KEY` is `live/cam1` and `KEY`.
pub fn route_prefix<'p>(dir: &Routes, path: &'p str) -> Option<(&'p str, &'p str)> {
    let path = path.trim_matches('/');
    // A name has at most RouteName::MAX_LEN characters: longer starts are never tried (nor split further).
    let ends = path.char_indices().filter(|(_, c)| *c == '/').map(|(i, _)| i).chain([path.len()]);
    let ends: Vec<usize> = ends.filter(|i| *i <= RouteName::MAX_LEN).collect();
    ends.iter().rev().find_map(|&end| {
        let name = &path[..end];
        let rest = path.get(end + 1..).unwrap_or_default();
        // The catch-all `*` names a route by the whole path: with it, `live/KEY` (OBS's server `live`, key KEY)
        // would otherwise become route `live` for every key, where MediaMTX's all_others had path `live/KEY`.
        let made =
            dir.table.template_for(name).is_some_and(|t| t.name.as_str() != RouteName::CATCH_ALL || rest.is_empty());
        (dir.route(name).is_some() || made).then_some((name, rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_when_check_periods_in_a_row_passed_without_traffic() {
        let mut activity = Activity::default();
        assert_eq!(activity.idle_since_last_check(), 1, "nothing since it opened");
        assert_eq!(activity.idle_since_last_check(), 2);
        activity.note();
        activity.note();
        assert_eq!(activity.idle_since_last_check(), 0, "traffic starts the count again");
        assert_eq!(activity.idle_since_last_check(), 1, "what was noted counts for one period only");
    }
}
