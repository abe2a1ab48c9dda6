//! Admission of TCP connections, shared by every listener (HTTP, RTMP, RTSP): a cap on all
//! connections together and one per client address, so that neither one client nor a crowd can take the file
//! descriptors that recordings, plugins and media need (issue 24: 19,980 idle connections took all 20,000
//! descriptors, the API stopped answering and a recording lost 15 s).
//!
//! Invariant: every admitted connection holds a [`Permit`] for its whole life; dropping it is the only way the
//! counts go down.
//!
//! [`write`]: the writes with a deadline every TCP connection's player shares.

pub mod write;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::model::ServerLimits;

/// Descriptors kept back from the connection cap for files, recordings, plugins and UDP: a quarter of the limit,
/// at most this many.
const RESERVED_FDS_MAX: u64 = 4096;

/// Raises the process's soft limit on open files to its hard limit (the default soft limit, often 1,024, is far
/// below what a media server needs) and returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if limit.current.is_some() && limit.current != limit.maximum {
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => return limit.current.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(soft, error = %e, "cannot raise the open-file limit"),
        }
    }
    soft
}

/// The connection cap when `[server.limits] connections` is not set: what the descriptor limit leaves after the
/// reserve.
pub fn default_connection_cap(fd_limit: u64) -> u64 {
    fd_limit - (fd_limit / 4).min(RESERVED_FDS_MAX)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// All listeners together hold `connections`.
    Total,
    /// This client address holds `connections_per_ip`.
    PerAddress,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerAddress => "per_address",
        }
    }
}

/// The counts behind the caps; one per process, handed to every listener.
#[derive(Debug)]
pub struct Connections {
    default_cap: u64,
    open: AtomicU64,
    per_address: Arc<AddressCounts>,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// Held by an admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub struct Permit {
    connections: Arc<Connections>,
    _slot: AddressSlot,
}

impl Connections {
    /// `fd_limit` is the process's descriptor limit, which sets the cap when the config does not.
    pub fn new(fd_limit: u64) -> Arc<Connections> {
        Arc::new(Connections {
            default_cap: default_connection_cap(fd_limit),
            open: AtomicU64::new(0),
            per_address: Arc::default(),
            refused_total: AtomicU64::new(0),
            refused_per_address: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    /// Admits a connection from `ip` under `limits` (read at each accept, so a reload changes them for new
    /// connections), or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ServerLimits) -> Result<Permit, Refused> {
        let cap = self.cap(limits);
        let result = match self.per_address.take(ip, limits.connections_per_ip) {
            None => Err(Refused::PerAddress),
            Some(slot) => {
                match self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1)) {
                    Ok(_) => Ok(Permit { connections: Arc::clone(self), _slot: slot }),
                    Err(_) => Err(Refused::Total),
                }
            }
        };
        if let Err(why) = result {
            let counter = match why {
                Refused::Total => &self.refused_total,
                Refused::PerAddress => &self.refused_per_address,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            // One warning per 10 s: a flood must not become a flood of log lines.
            let now = Instant::now();
            let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                *last = Some(now);
                tracing::warn!(client = %ip, limit = why.as_str(), open = self.open(), cap,
                    per_ip = limits.connections_per_ip, "connection refused: at the connection limit (`server.limits`)");
            }
        }
        result
    }

    /// Connections open now, on every listener.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused so far: (over the total cap, over a client's cap).
    pub fn refused(&self) -> (u64, u64) {
        (self.refused_total.load(Ordering::Relaxed), self.refused_per_address.load(Ordering::Relaxed))
    }

    /// The cap in force for `limits`.
    pub fn cap(&self, limits: &ServerLimits) -> u64 {
        limits.connections.unwrap_or(self.default_cap)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many of something (connections, WebRTC sessions) each client address holds, under a cap per address.
#[derive(Debug, Default)]
pub struct AddressCounts {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One place taken in an [`AddressCounts`]; given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    counts: Arc<AddressCounts>,
    key: IpAddr,
}

impl AddressCounts {
    /// Takes a place for `ip` if it holds fewer than `cap`.
    pub fn take(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = counts.get(&key).copied().unwrap_or(0);
        if held >= cap {
            return None;
        }
        counts.insert(key, held + 1);
        Some(AddressSlot { counts: Arc::clone(self), key })
    }

    /// Addresses holding at least one place.
    pub fn addresses(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The address a client is counted under: IPv4 addresses one by one; IPv6 by /64, since one host is commonly
/// given a whole /64 and could otherwise take a fresh address per connection. IPv4-mapped IPv6 counts as IPv4.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: Option<u64>, per_ip: u32) -> ServerLimits {
        ServerLimits { connections: total, connections_per_ip: per_ip, ..ServerLimits::default() }
    }

    #[test]
    fn a_client_is_capped_and_others_still_get_in() {
        let c = Connections::new(1_000_000);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let l = limits(Some(5), 3);
        let held: Vec<Permit> = (0..3).map(|_| c.admit(a, &l).expect("under the cap")).collect();
        assert_eq!(c.admit(a, &l).map(drop), Err(Refused::PerAddress));
        let other: Vec<Permit> = (0..2).map(|_| c.admit(b, &l).expect("another client")).collect();
        assert_eq!(c.admit(b, &l).map(drop), Err(Refused::Total));
        assert_eq!(c.open(), 5);
        assert_eq!(c.refused(), (1, 1));
        drop(held);
        assert_eq!(c.open(), 2);
        assert!(c.admit(a, &l).is_ok(), "places come back when connections end");
        drop(other);
        assert_eq!(c.open(), 0);
        assert_eq!(c.per_address.addresses(), 0, "no entry left per address");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let c = Connections::new(1_000_000);
        let l = limits(None, 2);
        let _p1 = c.admit("2001:db8::1".parse().expect("ip"), &l).expect("first");
        let _p2 = c.admit("2001:db8::ffff:2".parse().expect("ip"), &l).expect("second");
        assert_eq!(c.admit("2001:db8::3".parse().expect("ip"), &l).map(drop), Err(Refused::PerAddress));
        assert!(c.admit("2001:db8:0:1::1".parse().expect("ip"), &l).is_ok(), "another /64");
        assert_eq!(address_key("::ffff:10.0.0.1".parse().expect("ip")), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn the_default_cap_keeps_descriptors_back() {
        assert_eq!(default_connection_cap(1024), 768);
        assert_eq!(default_connection_cap(20_000), 20_000 - 4096);
        assert_eq!(default_connection_cap(1 << 20), (1 << 20) - 4096);
    }
}
