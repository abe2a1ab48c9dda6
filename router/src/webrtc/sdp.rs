//! What the router reads from SDP itself: the offer's media sections and ICE credentials (str0m reports media
//! only once connected, and trickle fragments must be checked against the offer), and, when str0m cannot parse
//! an offer, why, in words.

use str0m::Rtc;
use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid};

use super::WebRtcError;

/// The ICE username fragment and password an SDP offer or trickle fragment carries (the first of each: a bundled
/// session uses one pair for every media section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
}

impl IceCredentials {
    pub fn of(sdp: &str) -> IceCredentials {
        let value = |key: &str| sdp.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()));
        IceCredentials { ufrag: value("a=ice-ufrag:"), pwd: value("a=ice-pwd:") }
    }

    /// Whether a trickle fragment carrying `fragment` asks for an ICE restart: a ufrag or password that differs
    /// from the session's. Absent lines change nothing.
    pub fn restarts(&self, fragment: &IceCredentials) -> bool {
        let differs = |ours: &Option<String>, theirs: &Option<String>| theirs.is_some() && theirs != ours;
        differs(&self.ufrag, &fragment.ufrag) || differs(&self.pwd, &fragment.pwd)
    }
}

pub fn parse_offer(offer: &str) -> Result<SdpOffer, WebRtcError> {
    if !offer.trim_start().starts_with("v=0") {
        return Err(WebRtcError::BadOffer("it does not start with v=0".into()));
    }
    SdpOffer::from_sdp_string(offer).map_err(|_| WebRtcError::BadOffer(sdp_problem(offer)))
}

/// Says in words why an offer did not parse. str0m's parser error is a position in its own memory (e.g.
/// `Parse error at PointerOffset(0x7efe...)`), useless to a client and a leaked heap address, so it is never shown:
/// the offer is checked here for what str0m requires, line by line.
pub fn sdp_problem(offer: &str) -> String {
    const DIRECTIONS: [&str; 4] = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"];
    for (n, line) in offer.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let bytes = line.as_bytes();
        if !line.is_empty() && (bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=') {
            return format!("line {} is not an SDP line of the form `x=value`", n + 1);
        }
    }
    let session: Vec<&str> = offer.lines().map(str::trim).take_while(|l| !l.starts_with("m=")).collect();
    let sections = offer.split("\nm=").skip(1);
    for (i, section) in sections.enumerate() {
        let kind = section.split_whitespace().next().unwrap_or("?");
        let lines: Vec<&str> = section.lines().map(str::trim).collect();
        let has = |prefix: &str| lines.iter().chain(&session).any(|l| l.starts_with(prefix));
        let missing = if !lines.iter().any(|l| DIRECTIONS.iter().any(|d| l.starts_with(d))) {
            Some("a direction attribute (a=sendrecv, a=sendonly, a=recvonly or a=inactive)")
        } else if !has("a=ice-ufrag:") {
            Some("an a=ice-ufrag line")
        } else if !has("a=ice-pwd:") {
            Some("an a=ice-pwd line")
        } else if !has("a=fingerprint:") {
            Some("an a=fingerprint line")
        } else if !has("a=setup:") {
            Some("an a=setup line")
        } else {
            None
        };
        if let Some(missing) = missing {
            return format!("media section {} ({kind}) lacks {missing}", i + 1);
        }
    }
    "it could not be parsed as a WebRTC offer (check the media lines and their attributes)".into()
}

/// The `a=mid` of every audio/video media section of an offer. str0m reports media only once connected, and
/// the answer must already reflect what the route can send.
pub fn offered_media(offer: &str) -> Result<Vec<Mid>, WebRtcError> {
    let mut mids = Vec::new();
    let mut in_media = false;
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_media = m.starts_with("audio") || m.starts_with("video");
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && in_media
        {
            mids.push(Mid::from(mid.trim()));
        }
    }
    if mids.is_empty() {
        return Err(WebRtcError::BadOffer("it has no audio or video media sections with an a=mid".into()));
    }
    Ok(mids)
}

/// The media lines the answer accepted: (mid, kind, our direction).
pub fn negotiated_media(rtc: &Rtc, mids: &[Mid]) -> Vec<(Mid, MediaKind, Direction)> {
    mids.iter().filter_map(|mid| rtc.media(*mid).map(|m| (*mid, m.kind(), m.direction()))).collect()
}

/// The payload types both sides agreed on for a media line.
pub fn negotiated_params(rtc: &Rtc, mid: Mid) -> Vec<str0m::format::PayloadParams> {
    let Some(media) = rtc.media(mid) else { return Vec::new() };
    let config = rtc.codec_config().params();
    media.remote_pts().iter().filter_map(|pt| config.iter().find(|p| p.pt() == *pt).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_ice_credentials_are_a_restart() {
        let session = IceCredentials::of("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n");
        assert_eq!(session.ufrag.as_deref(), Some("abcd"));
        // RFC 8840 fragments repeat the session's credentials beside the candidates.
        let same = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";
        assert!(!session.restarts(&IceCredentials::of(same)));
        assert!(!session.restarts(&IceCredentials::of("a=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\n")));
        assert!(!session.restarts(&IceCredentials::of("a=ice-ufrag:abcd\r\n")), "ufrag alone, unchanged");
        assert!(session.restarts(&IceCredentials::of("a=ice-ufrag:efgh\r\na=ice-pwd:0123456789abcdef012345\r\n")));
        assert!(session.restarts(&IceCredentials::of("a=ice-ufrag:abcd\r\na=ice-pwd:ffffffffffffffffffffff\r\n")));
    }

    #[test]
    fn unparsable_offers_are_explained_in_words() {
        let good = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n\
            a=ice-pwd:0123456789abcdef012345\r\na=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n\
            a=rtcp-mux\r\na=rtpmap:96 H264/90000\r\na=recvonly\r\n";
        let no_direction = good.replace("a=recvonly\r\n", "");
        let Err(WebRtcError::BadOffer(why)) = parse_offer(&no_direction) else { panic!("parsed") };
        assert_eq!(
            why,
            "media section 1 (video) lacks a direction attribute (a=sendrecv, a=sendonly, a=recvonly or a=inactive)"
        );
        assert_eq!(
            sdp_problem(&good.replace("a=setup:actpass\r\n", "")),
            "media section 1 (video) lacks an a=setup line"
        );
        assert_eq!(sdp_problem("v=0\r\nhello\r\n"), "line 2 is not an SDP line of the form `x=value`");
        for garbage in ["v=0\r\nm=\r\n", "v=0\r\n\u{0}\u{1}", &good.replace("96 H264", "x"), &no_direction] {
            if let Err(e) = parse_offer(garbage) {
                assert!(!e.to_string().contains("0x"), "{e}");
            }
        }
    }

    #[test]
    fn offers_without_media_or_version_are_refused() {
        assert_eq!(
            offered_media("v=0\r\n"),
            Err(WebRtcError::BadOffer("it has no audio or video media sections with an a=mid".into()))
        );
        assert!(matches!(parse_offer("hello"), Err(WebRtcError::BadOffer(_))));
        let one_video = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        assert_eq!(offered_media(one_video).map(|m| m.len()), Ok(1), "the audio section has no a=mid");
    }
}
