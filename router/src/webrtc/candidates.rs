//! The addresses we advertise as ICE host candidates for the one shared UDP port.

use std::net::{IpAddr, SocketAddr};

/// `public_ips` first (what clients behind NAT must use), then the bound address, or every interface address of
/// its family when bound to the unspecified address. IPv6 link-local addresses are skipped: they need a scope id
/// that SDP cannot carry.
pub fn candidate_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    let port = bound.port();
    let mut addrs: Vec<SocketAddr> = public_ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    if bound.ip().is_unspecified() {
        let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
        for iface in interfaces {
            let ip = iface.ip();
            let same_family = ip.is_ipv4() == bound.is_ipv4() || bound.is_ipv6();
            let link_local_v6 = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if same_family && !link_local_v6 {
                addrs.push(SocketAddr::new(ip, port));
            }
        }
    } else {
        addrs.push(bound);
    }
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ips_come_first_and_a_specific_bind_is_used_as_is() {
        let bound: SocketAddr = "127.0.0.1:8189".parse().expect("addr");
        let public: IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(candidate_addrs(bound, &[public]), vec!["203.0.113.7:8189".parse().expect("addr"), bound]);
    }

    #[test]
    fn unspecified_bind_lists_interfaces_including_loopback() {
        let addrs = candidate_addrs("0.0.0.0:9000".parse().expect("addr"), &[]);
        assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 9000), "{addrs:?}");
        assert!(addrs.iter().all(SocketAddr::is_ipv4));
    }
}
