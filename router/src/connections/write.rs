//! Socket writes every TCP listener's connections share (RTMP, RTSP): with a deadline, and vectored, so a player's
//! wake that finds many frames queued sends them in one system call.

use std::io::IoSlice;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A peer whose socket takes nothing for this long (its TCP window stays full) is dropped: a player that stops
/// reading must not hold its task, and its route reader, forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The error a write that missed [`WRITE_TIMEOUT`] ends with.
pub fn stalled() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the peer took nothing for {} s", WRITE_TIMEOUT.as_secs()),
    )
}

/// Writes all of `bytes` within [`WRITE_TIMEOUT`].
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await.map_err(|_| stalled())?
}

/// Writes every buffer, in one `writev` when the socket takes them all (the usual case: no timer is armed), the
/// rest within [`WRITE_TIMEOUT`].
pub async fn write_vectored<B: AsRef<[u8]>>(stream: &mut TcpStream, bufs: &[B]) -> std::io::Result<()> {
    if bufs.is_empty() {
        return Ok(());
    }
    let written = match try_write_vectored(stream, bufs) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let mut at = Position::default().advance(bufs, written);
    if at.done(bufs) {
        return Ok(());
    }
    let rest = async {
        while !at.done(bufs) {
            let n = stream.write_vectored(&at.slices(bufs)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            at = at.advance(bufs, n);
        }
        Ok(())
    };
    tokio::time::timeout(WRITE_TIMEOUT, rest).await.map_err(|_| stalled())?
}

fn try_write_vectored<B: AsRef<[u8]>>(stream: &TcpStream, bufs: &[B]) -> std::io::Result<usize> {
    match bufs {
        [one] => stream.try_write(one.as_ref()),
        _ => stream.try_write_vectored(&Position::default().slices(bufs)),
    }
}

/// How far into a list of buffers a write got: the buffer, and the offset in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Position {
    buf: usize,
    offset: usize,
}

impl Position {
    fn done<B: AsRef<[u8]>>(self, bufs: &[B]) -> bool {
        self.buf >= bufs.len()
    }

    /// Where the write is after `n` more bytes went out.
    fn advance<B: AsRef<[u8]>>(mut self, bufs: &[B], mut n: usize) -> Position {
        while let Some(buf) = bufs.get(self.buf) {
            let left = buf.as_ref().len() - self.offset;
            if n < left {
                self.offset += n;
                break;
            }
            n -= left;
            self.buf += 1;
            self.offset = 0;
        }
        self
    }

    /// What is left to write (at most `IOV_MAX`'s usual 1024 slices: the kernel refuses more in one call).
    fn slices<'a, B: AsRef<[u8]>>(self, bufs: &'a [B]) -> Vec<IoSlice<'a>> {
        let rest = bufs.get(self.buf..).unwrap_or_default();
        rest.iter()
            .enumerate()
            .map(|(i, b)| IoSlice::new(if i == 0 { &b.as_ref()[self.offset..] } else { b.as_ref() }))
            .filter(|s| !s.is_empty())
            .take(1024)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_skips_written_buffers_and_cuts_a_partial_one() {
        let bufs: [&[u8]; 4] = [b"abc", b"", b"de", b"fgh"];
        let left = |p: Position| p.slices(&bufs).iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        let start = Position::default();
        assert_eq!(left(start), [b"abc".to_vec(), b"de".to_vec(), b"fgh".to_vec()]);
        let p = start.advance(&bufs, 4);
        assert_eq!(left(p), [b"e".to_vec(), b"fgh".to_vec()], "the empty one and a part of \"de\" are gone");
        assert!(!p.done(&bufs));
        assert!(p.advance(&bufs, 4).done(&bufs));
        assert!(start.advance(&bufs, 8).done(&bufs));
    }
}
