//! The client behind a reverse proxy: a request that comes from one of `[server] trusted_proxies` is taken to
//! come from the address its `X-Forwarded-For` header names, so that auth, the per-address failure limit and the
//! WebRTC sessions cap see the real client instead of every client sharing the proxy's address (one bad client
//! would otherwise lock everyone out). Headers from anyone else are ignored: a client cannot choose its address.
//!
//! Only `X-Forwarded-For` is read. It is what nginx, HAProxy, Caddy, Traefik and Envoy append to; most of them pass
//! a client's own `Forwarded` header through untouched, so believing that one would let a client name itself.
//! The connection caps are applied before any header is read, so they still see the proxy (see `api::serve`).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::config::model::IpNet;

/// The address to treat `peer`'s request as coming from. Proxies append the address they received the request
/// from, so the list is read from the right: past our own proxies, the first address is the client. Entries left
/// of it were written by the client and are never read. A header without a usable entry leaves the peer's own
/// address.
pub fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let values: Vec<String> =
        headers.get_all("x-forwarded-for").iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    let mut entries = values.iter().flat_map(|v| v.split(',')).rev().map(str::trim).filter(|e| !e.is_empty());
    // Our proxies' entries (a chain of them), then the client, which our nearest untrusted-facing proxy wrote
    // itself. Entries that are not addresses are skipped rather than voiding the header: voiding it would count
    // the client as the proxy, and a client could then lock out everyone behind it on purpose.
    let client = entries.find_map(|e| parse_node(e).filter(|ip| !is_trusted(*ip)));
    client.map_or(peer, |ip| SocketAddr::new(ip, peer.port()))
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711` or a bare IPv6 address.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    s.strip_prefix('[').and_then(|r| r.split_once(']')).and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        h
    }

    fn client(peer: &str, pairs: &[(&str, &str)], trusted: &[&str]) -> String {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| IpNet::parse(t).expect("net")).collect();
        client_address(peer.parse().expect("peer"), &headers(pairs), &trusted).ip().to_string()
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let xff = [("x-forwarded-for", "203.0.113.7")];
        assert_eq!(client("127.0.0.1:5000", &xff, &["127.0.0.1"]), "203.0.113.7");
        assert_eq!(client("198.51.100.2:5000", &xff, &["127.0.0.1"]), "198.51.100.2", "a client names itself: ignored");
        assert_eq!(client("127.0.0.1:5000", &xff, &[]), "127.0.0.1", "no trusted proxies: headers ignored");
        assert_eq!(client("127.0.0.1:5000", &[], &["127.0.0.1"]), "127.0.0.1", "no header: the proxy itself");
    }

    #[test]
    fn the_chain_is_read_from_the_right_past_our_proxies() {
        // The client sent a made-up address first; our two proxies appended the real one and themselves.
        let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")];
        assert_eq!(client("10.0.0.1:5000", &xff, &["10.0.0.0/8"]), "203.0.113.7");
        let split = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.7")];
        assert_eq!(client("10.0.0.1:5000", &split, &["10.0.0.0/8"]), "203.0.113.7", "repeated headers join");
        let all_ours = [("x-forwarded-for", "10.0.0.3, 10.0.0.2")];
        assert_eq!(client("10.0.0.1:5000", &all_ours, &["10.0.0.0/8"]), "10.0.0.1", "no client named: the peer");
        let port = [("x-forwarded-for", "192.0.2.9:1234")];
        assert_eq!(client("127.0.0.1:1", &port, &["127.0.0.1"]), "192.0.2.9");
        let v6 = [("x-forwarded-for", "[2001:db8:cafe::17]:4711")];
        assert_eq!(client("127.0.0.1:1", &v6, &["127.0.0.1"]), "2001:db8:cafe::17");
    }

    #[test]
    fn what_the_client_writes_cannot_move_the_blame() {
        // Garbage or an empty element on the client's side does not discard the chain (which would count the
        // client's failures against the proxy, locking out everyone behind it).
        for sent in ["unknown", "_hidden", "", " , ", "not an address"] {
            let xff = [("x-forwarded-for", format!("{sent}, 203.0.113.7"))];
            let pairs: Vec<(&str, &str)> = xff.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(client("127.0.0.1:1", &pairs, &["127.0.0.1"]), "203.0.113.7", "{sent:?}");
        }
        // A client's own Forwarded header is passed through by most proxies: never believed.
        let forwarded = [("forwarded", "for=1.2.3.4"), ("x-forwarded-for", "203.0.113.7")];
        assert_eq!(client("127.0.0.1:1", &forwarded, &["127.0.0.1"]), "203.0.113.7");
        let only_forwarded = [("forwarded", "for=1.2.3.4")];
        assert_eq!(client("127.0.0.1:1", &only_forwarded, &["127.0.0.1"]), "127.0.0.1");
    }
}
