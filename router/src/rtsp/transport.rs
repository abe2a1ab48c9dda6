//! The `Transport` header of SETUP (RFC 2326 12.39): which of the client's offers we take, and what we answer.
//! Parsed here rather than with `rtsp-types`' typed header, which follows RTSP 2.0's grammar and refuses some
//! RTSP 1.0 clients' spellings (`mode=record` unquoted, `RTP/AVP/UDP`).

use std::fmt;

/// Where a stream's RTP and RTCP go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower {
    /// Interleaved on the RTSP connection, on these channels.
    Tcp { rtp: u8, rtcp: u8 },
    /// UDP to (or from) the client's ports.
    Udp { rtp: u16, rtcp: u16 },
}

/// The transport a client asked for that we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub lower: Lower,
    /// `mode=record`: the client will publish.
    pub record: bool,
}

/// Why no offer was taken: answered 461 Unsupported Transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// The first offer of `header` we can serve: unicast RTP/AVP over TCP or UDP. `next_channel` is the first free
/// interleaved channel, for TCP offers that name none.
pub fn choose(header: &str, next_channel: u8) -> Result<Requested, Unsupported> {
    let mut why = None;
    for offer in header.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match parse_offer(offer, next_channel) {
            Ok(requested) => return Ok(requested),
            Err(e) => why = why.or(Some(e)),
        }
    }
    Err(why.unwrap_or_else(|| Unsupported("the Transport header is empty".into())))
}

fn parse_offer(offer: &str, next_channel: u8) -> Result<Requested, Unsupported> {
    let mut params = offer.split(';').map(str::trim);
    let spec = params.next().unwrap_or_default().to_ascii_uppercase();
    let tcp = match spec.as_str() {
        "RTP/AVP" | "RTP/AVP/UDP" => false,
        "RTP/AVP/TCP" => true,
        other => return Err(Unsupported(format!("transport {other} is not served (RTP/AVP over TCP or UDP is)"))),
    };
    let mut record = false;
    let mut interleaved = None;
    let mut client_port = None;
    for param in params {
        let (key, value) = param.split_once('=').map_or((param, ""), |(k, v)| (k.trim(), v.trim()));
        match key.to_ascii_lowercase().as_str() {
            "multicast" => return Err(Unsupported("multicast is not served; use unicast UDP or TCP".into())),
            "mode" => record = value.trim_matches('"').eq_ignore_ascii_case("record"),
            "interleaved" => interleaved = Some(pair(value).ok_or_else(|| bad("interleaved", value))?),
            "client_port" => client_port = Some(pair(value).ok_or_else(|| bad("client_port", value))?),
            _ => {}
        }
    }
    let lower = if tcp {
        let (rtp, rtcp) = interleaved.unwrap_or((u32::from(next_channel), u32::from(next_channel) + 1));
        let channel = |v: u32| u8::try_from(v).map_err(|_| bad("interleaved", &v.to_string()));
        Lower::Tcp { rtp: channel(rtp)?, rtcp: channel(rtcp)? }
    } else {
        let Some((rtp, rtcp)) = client_port else {
            return Err(Unsupported("UDP without client_port".into()));
        };
        let port = |v: u32| u16::try_from(v).ok().filter(|p| *p != 0).ok_or_else(|| bad("client_port", &v.to_string()));
        Lower::Udp { rtp: port(rtp)?, rtcp: port(rtcp)? }
    };
    Ok(Requested { lower, record })
}

fn bad(key: &str, value: &str) -> Unsupported {
    Unsupported(format!("`{key}={value}` is not a number pair"))
}

/// `a-b` or `a` (then `b` is `a + 1`).
fn pair(value: &str) -> Option<(u32, u32)> {
    match value.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a: u32 = value.trim().parse().ok()?;
            Some((a, a.checked_add(1)?))
        }
    }
}

/// The `Transport` header we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub requested: Requested,
    /// Our RTP and RTCP ports, for UDP.
    pub server_ports: Option<(u16, u16)>,
    pub ssrc: Option<u32>,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.requested.lower {
            Lower::Tcp { rtp, rtcp } => write!(f, "RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}")?,
            Lower::Udp { rtp, rtcp } => {
                write!(f, "RTP/AVP;unicast;client_port={rtp}-{rtcp}")?;
                if let Some((s_rtp, s_rtcp)) = self.server_ports {
                    write!(f, ";server_port={s_rtp}-{s_rtcp}")?;
                }
            }
        }
        if let Some(ssrc) = self.ssrc {
            write!(f, ";ssrc={ssrc:08X}")?;
        }
        if self.requested.record {
            f.write_str(";mode=record")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_offers_as_they_send_them() {
        // ffmpeg (TCP, UDP, publishing), GStreamer's list of alternatives, VLC.
        assert_eq!(
            choose("RTP/AVP/TCP;unicast;interleaved=0-1", 0),
            Ok(Requested { lower: Lower::Tcp { rtp: 0, rtcp: 1 }, record: false })
        );
        assert_eq!(
            choose("RTP/AVP/UDP;unicast;client_port=5000-5001", 0),
            Ok(Requested { lower: Lower::Udp { rtp: 5000, rtcp: 5001 }, record: false })
        );
        assert_eq!(
            choose("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record", 0),
            Ok(Requested { lower: Lower::Tcp { rtp: 2, rtcp: 3 }, record: true })
        );
        assert_eq!(
            choose("RTP/AVP;multicast;port=5000-5001,RTP/AVP;unicast;client_port=6000-6001;mode=\"RECORD\"", 0),
            Ok(Requested { lower: Lower::Udp { rtp: 6000, rtcp: 6001 }, record: true })
        );
        assert_eq!(choose("RTP/AVP/TCP;unicast", 4).map(|r| r.lower), Ok(Lower::Tcp { rtp: 4, rtcp: 5 }));
    }

    #[test]
    fn what_we_cannot_serve_is_refused_with_the_reason() {
        assert!(choose("RTP/AVP;multicast", 0).is_err_and(|e| e.0.contains("multicast")));
        assert!(choose("RTP/SAVP;unicast;client_port=1-2", 0).is_err_and(|e| e.0.contains("RTP/SAVP")));
        assert!(choose("RTP/AVP;unicast", 0).is_err_and(|e| e.0.contains("client_port")));
        assert!(choose("RTP/AVP/TCP;interleaved=300-301", 0).is_err());
        assert!(choose("RTP/AVP;client_port=0-1", 0).is_err());
        assert!(choose("", 0).is_err());
    }

    #[test]
    fn answers() {
        let udp = Requested { lower: Lower::Udp { rtp: 5000, rtcp: 5001 }, record: false };
        let answer = Answer { requested: udp, server_ports: Some((40000, 40001)), ssrc: Some(0xab) };
        assert_eq!(answer.to_string(), "RTP/AVP;unicast;client_port=5000-5001;server_port=40000-40001;ssrc=000000AB");
        let tcp = Requested { lower: Lower::Tcp { rtp: 0, rtcp: 1 }, record: true };
        let answer = Answer { requested: tcp, server_ports: None, ssrc: None };
        assert_eq!(answer.to_string(), "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record");
    }
}
