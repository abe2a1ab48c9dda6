//! Socket writes every RTMP connection shares: with a deadline, and vectored for players, so a wake that finds
//! many frames queued sends them in one system call.

use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::sessions::{ServerSession, ServerSessionResult};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::RtmpError;

/// A peer whose socket takes nothing for this long (its TCP window stays full) is dropped: a player that stops
/// reading must not hold its task, and its route reader, forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes all of `bytes` within [`WRITE_TIMEOUT`].
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), RtmpError> {
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes))
        .await
        .map_err(|_| RtmpError::Idle(WRITE_TIMEOUT))??;
    Ok(())
}

/// Writes every buffer, in one `writev` when the socket takes them all (the usual case: no timer is armed).
pub async fn write_vectored(stream: &mut TcpStream, bufs: &mut [Bytes]) -> Result<(), RtmpError> {
    if bufs.is_empty() {
        // Frames with no RTMP form (a codec FLV cannot carry) leave nothing to send.
        return Ok(());
    }
    let written = match try_write_vectored(stream, bufs) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e.into()),
    };
    let rest = advance(bufs, written);
    if rest.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(WRITE_TIMEOUT, write_all_vectored(stream, rest))
        .await
        .map_err(|_| RtmpError::Idle(WRITE_TIMEOUT))??;
    Ok(())
}

fn try_write_vectored(stream: &TcpStream, bufs: &[Bytes]) -> std::io::Result<usize> {
    match bufs {
        [one] => stream.try_write(one),
        _ => {
            let slices: Vec<std::io::IoSlice<'_>> = bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
            stream.try_write_vectored(&slices)
        }
    }
}

/// `write_all` for several buffers with `writev`, resuming after partial writes.
async fn write_all_vectored(stream: &mut TcpStream, mut bufs: &mut [Bytes]) -> std::io::Result<()> {
    while !bufs.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
        let n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bufs = advance(bufs, n);
    }
    Ok(())
}

/// What is left of `bufs` after `n` bytes of them were written.
fn advance(bufs: &mut [Bytes], mut n: usize) -> &mut [Bytes] {
    let mut i = 0;
    while i < bufs.len() && n >= bufs[i].len() {
        n -= bufs[i].len();
        i += 1;
    }
    let rest = &mut bufs[i..];
    if let Some(first) = rest.first_mut() {
        *first = first.slice(n..);
    }
    rest
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_skips_written_buffers_and_cuts_a_partial_one() {
        let mut bufs: Vec<Bytes> = [&b"abc"[..], b"", b"de", b"fgh"].into_iter().map(Bytes::from_static).collect();
        assert_eq!(advance(&mut bufs, 0), [&b"abc"[..], b"", b"de", b"fgh"]);
        assert_eq!(advance(&mut bufs, 4), [&b"e"[..], b"fgh"], "the empty one and a part of \"de\" are gone");
        let mut bufs: Vec<Bytes> = [&b"abc"[..], b"de"].into_iter().map(Bytes::from_static).collect();
        assert!(advance(&mut bufs, 5).is_empty());
    }
}
