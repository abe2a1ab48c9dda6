//! The client behind a reverse proxy: a request that comes from one of `[server] trusted_proxies` is taken to
//! come from the address its `Forwarded` (RFC 7239) or `X-Forwarded-For` header names, so that auth, the per-address
//! failure limit and per-address caps see the real client instead of every client sharing the proxy's address
//! (one bad client would otherwise lock everyone out). Headers from anyone else are ignored: a client cannot
//! choose its own address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::config::model::IpNet;

/// The address to treat `peer`'s request as coming from. Proxies append to these headers, so the list is read from
/// the right: the first address that is not a trusted proxy is the client. A header that cannot be read leaves
/// the peer's own address.
pub fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    // Right to left, past our proxies, to the first address they did not add themselves.
    let client = chain.iter().rev().copied().find(|ip| !is_trusted(*ip)).or_else(|| chain.first().copied());
    client.map_or(peer, |ip| SocketAddr::new(ip, peer.port()))
}

/// The addresses of `Forwarded: for=...` if present, else of `X-Forwarded-For`, in header order. `None` as soon as
/// one element is not an address (`unknown`, an obfuscated name): then the chain cannot be trusted.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let forwarded = values("forwarded");
    let items: Option<Vec<IpAddr>> = if !forwarded.is_empty() {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v.trim().trim_matches('"')))?
                })
            })
            .collect()
    } else {
        values("x-forwarded-for").iter().flat_map(|v| v.split(',')).map(|s| parse_node(s.trim())).collect()
    };
    items.unwrap_or_default()
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
        assert_eq!(client("10.0.0.1:5000", &all_ours, &["10.0.0.0/8"]), "10.0.0.3");
    }

    #[test]
    fn forwarded_is_preferred_and_its_node_forms_read() {
        let both = [("forwarded", "for=192.0.2.60;proto=https"), ("x-forwarded-for", "198.51.100.1")];
        assert_eq!(client("127.0.0.1:1", &both, &["127.0.0.1"]), "192.0.2.60");
        let v6 = [("forwarded", "for=\"[2001:db8:cafe::17]:4711\", for=127.0.0.1")];
        assert_eq!(client("127.0.0.1:1", &v6, &["127.0.0.1"]), "2001:db8:cafe::17");
        let port = [("x-forwarded-for", "192.0.2.9:1234")];
        assert_eq!(client("127.0.0.1:1", &port, &["127.0.0.1"]), "192.0.2.9");
        let unknown = [("forwarded", "for=unknown")];
        assert_eq!(client("127.0.0.1:1", &unknown, &["127.0.0.1"]), "127.0.0.1", "unreadable: the proxy itself");
    }
}
