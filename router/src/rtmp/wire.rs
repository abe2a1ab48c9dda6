//! RTMP's side of the shared socket writes (`connections::write`), and rml_rtmp's input guarded against its panics.

use rml_rtmp::sessions::{ServerSession, ServerSessionResult};
use tokio::net::TcpStream;

use super::RtmpError;
pub use crate::connections::write::WRITE_TIMEOUT;

/// Writes all of `bytes` within [`WRITE_TIMEOUT`].
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), RtmpError> {
    crate::connections::write::write(stream, bytes).await.map_err(timed_out)
}

/// Writes every buffer, in one `writev` when the socket takes them all.
pub async fn write_vectored(stream: &mut TcpStream, bufs: &[bytes::Bytes]) -> Result<(), RtmpError> {
    crate::connections::write::write_vectored(stream, bufs).await.map_err(timed_out)
}

fn timed_out(e: std::io::Error) -> RtmpError {
    if e.kind() == std::io::ErrorKind::TimedOut { RtmpError::Idle(WRITE_TIMEOUT) } else { RtmpError::Io(e) }
}

/// Feeds peer bytes to rml_rtmp's server session. Its chunk deserializer can panic on crafted lengths (an
/// integer underflow); a panic here ends this connection like any protocol error instead of unwinding through
/// the task.
pub fn server_input(session: &mut ServerSession, data: &[u8]) -> Result<Vec<ServerSessionResult>, RtmpError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(data))) {
        Ok(r) => Ok(r?),
        Err(_) => Err(RtmpError::Refused("malformed RTMP chunk (the decoder rejected it)".into())),
    }
}
