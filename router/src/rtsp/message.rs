//! Framing of what a client sends on an RTSP connection: requests (parsed by `rtsp-types`) and interleaved
//! binary data (`$`, channel, length: RFC 2326 10.12), under size limits; and the replies we send.

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::{HeaderName, Method, Request, Response, StatusCode, Version, headers};

/// A request (headers and body) larger than this is refused: ANNOUNCE's SDP is a few KB at most.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One thing read from the connection.
#[derive(Debug)]
pub enum Incoming {
    Request(Box<Request<Vec<u8>>>),
    /// RTP or RTCP on an interleaved channel.
    Interleaved {
        channel: u8,
        data: Bytes,
    },
}

/// What a client sent that cannot be a request: answered 400 (when it looks like one) and the connection closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("a request over {} KB", MAX_REQUEST / 1024)]
    TooLarge,
    #[error("a request that does not parse")]
    Unparsable,
}

/// Takes the next complete message off the front of `buf`; `Ok(None)` when more bytes are needed. Responses
/// (a client answering a request we never send) and blank lines between requests are skipped.
///
/// `scanned` is how much of `buf` was already searched for the end of a request's head, kept by the caller
/// between calls (0 to start): a request trickled in a byte at a time is searched once, not once per byte, and
/// parsed only when all of it (head and `Content-Length` body) is there.
pub fn next(buf: &mut BytesMut, scanned: &mut usize) -> Result<Option<Incoming>, Malformed> {
    loop {
        let Some(&first) = buf.first() else {
            *scanned = 0;
            return Ok(None);
        };
        if first == b'$' {
            let Some(header) = buf.get(..4) else { return Ok(None) };
            let (channel, len) = (header[1], usize::from(u16::from_be_bytes([header[2], header[3]])));
            if buf.len() < 4 + len {
                return Ok(None);
            }
            buf.advance(4);
            *scanned = 0;
            return Ok(Some(Incoming::Interleaved { channel, data: buf.split_to(len).freeze() }));
        }
        if first == b'\r' || first == b'\n' {
            buf.advance(1);
            *scanned = scanned.saturating_sub(1);
            continue;
        }
        // Requests start with a method token: anything else (binary garbage) is not worth parsing.
        if !first.is_ascii_alphabetic() {
            return Err(Malformed::Unparsable);
        }
        let from = scanned.saturating_sub(3).min(buf.len());
        let Some(head_end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4) else {
            *scanned = buf.len();
            return if buf.len() > MAX_REQUEST { Err(Malformed::TooLarge) } else { Ok(None) };
        };
        // Found again at once on the next call, while the body arrives.
        *scanned = head_end - 4;
        let total = head_end.saturating_add(content_length(&buf[..head_end])?);
        if total > MAX_REQUEST {
            return Err(Malformed::TooLarge);
        }
        if buf.len() < total {
            return Ok(None);
        }
        let parsed = rtsp_types::Message::<Vec<u8>>::parse(&buf[..total]);
        *scanned = 0;
        match parsed {
            Ok((message, used)) => {
                buf.advance(used);
                if let rtsp_types::Message::Request(request) = message {
                    return Ok(Some(Incoming::Request(Box::new(request))));
                }
            }
            Err(_) => return Err(Malformed::Unparsable),
        }
    }
}

/// The `Content-Length` of a request's head (0 without one).
fn content_length(head: &[u8]) -> Result<usize, Malformed> {
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if line[..colon].trim_ascii().eq_ignore_ascii_case(b"content-length") {
            let value = std::str::from_utf8(line[colon + 1..].trim_ascii()).map_err(|_| Malformed::Unparsable)?;
            return value.parse().map_err(|_| Malformed::Unparsable);
        }
    }
    Ok(0)
}

/// A reply being made: status, headers, body. `CSeq` and `Server` are added when it is written.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub reason: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::status(StatusCode::Ok)
    }

    pub fn status(status: StatusCode) -> Reply {
        Reply { status, reason: None, headers: Vec::new(), body: Vec::new() }
    }

    /// A refusal with its reason in the status line (RTSP clients print it) .
    pub fn error(status: StatusCode, reason: impl Into<String>) -> Reply {
        // One line, no control characters: the reason goes into the status line as it is.
        let reason: String = reason.into().chars().filter(|c| !c.is_control()).take(200).collect();
        Reply { reason: Some(reason), ..Reply::status(status) }
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Reply {
        self.headers.push((headers::CONTENT_TYPE, content_type.into()));
        self.body = body;
        self
    }

    /// The reply's bytes, answering the request with `cseq`.
    pub fn encode(self, cseq: Option<&str>) -> Vec<u8> {
        let mut builder = Response::builder(Version::V1_0, self.status);
        if let Some(reason) = self.reason {
            builder = builder.reason_phrase(reason);
        }
        if let Some(cseq) = cseq {
            builder = builder.header(headers::CSEQ, cseq.to_string());
        }
        builder = builder.header(headers::SERVER, concat!("Sluice/", env!("CARGO_PKG_VERSION")));
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        let response = builder.build(self.body);
        let mut out = Vec::with_capacity(256 + response.body().len());
        // Writing to a Vec cannot fail.
        let _ = response.write(&mut out);
        out
    }
}

/// The request's method as a word for logs and the `Public` header.
pub fn method_name(method: &Method) -> &str {
    method.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_interleaved_data_come_apart() {
        let mut buf = BytesMut::from(
            &b"OPTIONS rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x01\x00\x03abcANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nv=0\n"[..],
        );
        let mut scanned = 0;
        let Ok(Some(Incoming::Request(r))) = next(&mut buf, &mut scanned) else { panic!("a request") };
        assert_eq!(r.method(), &Method::Options);
        let Ok(Some(Incoming::Interleaved { channel: 1, data })) = next(&mut buf, &mut scanned) else { panic!("data") };
        assert_eq!(&data[..], b"abc");
        let Ok(Some(Incoming::Request(r))) = next(&mut buf, &mut scanned) else { panic!("a request") };
        assert_eq!(r.body(), b"v=0\n");
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_messages_wait_and_limits_and_garbage_are_errors() {
        let next = |buf: &[u8]| super::next(&mut BytesMut::from(buf), &mut 0);
        assert!(matches!(next(b"DESCRIBE rtsp://h/a RTSP/1.0\r\nCSeq: 1\r\n"), Ok(None)));
        assert!(matches!(next(b"$\x00\x10\x00ab"), Ok(None)), "a cut data frame waits");
        assert_eq!(next(b"\x00\xff\x13garbage").err(), Some(Malformed::Unparsable));
        let mut big = b"DESCRIBE rtsp://h/a RTSP/1.0\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 10, b'a');
        assert_eq!(next(&big).err(), Some(Malformed::TooLarge));
        assert_eq!(next(b"HELLO WORLD\r\n\r\n").err(), Some(Malformed::Unparsable));
        let huge_body = b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(next(huge_body).err(), Some(Malformed::TooLarge), "refused before the body arrives");
        assert_eq!(
            next(b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nContent-Length: x\r\n\r\n").err(),
            Some(Malformed::Unparsable)
        );
    }

    #[test]
    fn a_request_trickled_a_byte_at_a_time_and_blank_lines_before_it() {
        let request = b"\r\n\r\nANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 4\r\nContent-Length: 4\r\n\r\nv=0\nOPTIONS";
        let mut buf = BytesMut::new();
        let mut scanned = 0;
        let mut got = None;
        for byte in request {
            buf.extend_from_slice(&[*byte]);
            if let Some(incoming) = next(&mut buf, &mut scanned).expect("valid") {
                got = Some(incoming);
                break;
            }
        }
        let Some(Incoming::Request(r)) = got else { panic!("a request") };
        assert_eq!(r.body(), b"v=0\n");
        assert!(buf.is_empty(), "the request ended with its body");
    }

    #[test]
    fn a_reply_carries_cseq_and_a_one_line_reason() {
        let reply = Reply::error(StatusCode::NotFound, "no route\r\nX-Injected: 1").encode(Some("7"));
        let text = String::from_utf8(reply).expect("text");
        assert!(text.starts_with("RTSP/1.0 404 no routeX-Injected: 1\r\n"), "{text}");
        assert!(text.contains("CSeq: 7\r\n"), "{text}");
    }
}
