//! A shard's UDP socket: batched receive (recvmmsg + GRO), batched send (UDP GSO), and the local address of
//! every datagram, through quinn-udp. Several shards share the port as a SO_REUSEPORT group ([`bind_group`]).
//!
//! Knowing the local address matters on a socket bound to 0.0.0.0: ICE expects the answer to a STUN check from
//! the address the check was sent to, and a multi-homed server that lets the kernel pick the source breaks it.

use std::io::IoSliceMut;
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read per receive call (recvmmsg).
pub const RECV_SLOTS: usize = 32;
/// Per-slot buffer; with GRO one slot can hold several datagrams of one flow.
const SLOT_BYTES: usize = 64 * 1024;
/// Socket buffers sized for bursts (a GOP sent to a newly connected viewer): the kernel clamps to its maximum.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// One received datagram's addresses; its bytes are in the receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// Which receive buffer, and where in it.
    pub slot: usize,
    pub offset: usize,
    pub len: usize,
}

/// `n` sockets on one address: a SO_REUSEPORT group when `n > 1` (the kernel spreads flows over them by a hash of
/// their addresses), one plain socket otherwise, which keeps the port exclusive. With port 0 the first socket
/// picks the port and the others join it.
pub fn bind_group(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    if n <= 1 {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        return Ok(vec![socket]);
    }
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let mut sockets: Vec<std::net::UdpSocket> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let fd =
            rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK, None)?;
        rustix::net::sockopt::set_socket_reuseport(&fd, true)?;
        rustix::net::bind(&fd, &addr)?;
        let socket = std::net::UdpSocket::from(fd);
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Receive buffers, kept apart from [`UdpIo`] so datagrams can be handled while sending.
pub fn recv_buffers() -> Vec<Vec<u8>> {
    vec![vec![0u8; SLOT_BYTES]; RECV_SLOTS]
}

#[derive(Debug)]
pub struct UdpIo {
    pub socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    batch: SendBatch,
    pub datagrams_sent: u64,
    pub send_calls: u64,
    pub send_errors: u64,
}

/// Consecutive datagrams to one destination from one source, of one size (the last may be shorter): one GSO
/// send. FU-A fragments of a video frame fit this exactly.
#[derive(Debug, Default)]
struct SendBatch {
    buf: Vec<u8>,
    destination: Option<SocketAddr>,
    source: Option<std::net::IpAddr>,
    segment: usize,
    count: usize,
    closed: bool,
}

impl UdpIo {
    pub fn new(socket: UdpSocket) -> std::io::Result<UdpIo> {
        let state = UdpSocketState::new((&socket).into())?;
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
        let local = socket.local_addr()?;
        Ok(UdpIo {
            socket,
            state,
            local,
            batch: SendBatch::default(),
            datagrams_sent: 0,
            send_calls: 0,
            send_errors: 0,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Reads what is waiting into `bufs` without blocking, appending one [`Received`] per datagram to `out`.
    pub fn try_recv(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> std::io::Result<usize> {
        let mut meta = [RecvMeta::default(); RECV_SLOTS];
        let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let state = &self.state;
        let socket = &self.socket;
        let n = socket.try_io(Interest::READABLE, || state.recv(socket.into(), &mut slices, &mut meta))?;
        let before = out.len();
        for (slot, m) in meta.iter().enumerate().take(n) {
            let destination = SocketAddr::new(m.dst_ip.unwrap_or(self.local.ip()), self.local.port());
            let stride = if m.stride == 0 { m.len } else { m.stride };
            let mut offset = 0;
            while offset < m.len {
                let len = stride.min(m.len - offset);
                out.push(Received { source: m.addr, destination, slot, offset, len });
                offset += len;
            }
        }
        Ok(out.len() - before)
    }

    pub async fn readable(&self) -> std::io::Result<()> {
        self.socket.readable().await
    }

    /// Queues a datagram; it leaves with the batch it joins, at the latest on [`UdpIo::flush`].
    pub fn send(&mut self, destination: SocketAddr, source: SocketAddr, contents: &[u8]) {
        let src = (!source.ip().is_unspecified()).then(|| source.ip());
        let max_segments = self.state.max_gso_segments().min(64);
        let b = &self.batch;
        let joins = b.destination == Some(destination)
            && b.source == src
            && !b.closed
            && b.count < max_segments
            && contents.len() <= b.segment
            && b.buf.len() + contents.len() <= 60_000;
        if !joins {
            self.flush();
            self.batch.destination = Some(destination);
            self.batch.source = src;
            self.batch.segment = contents.len();
        }
        let b = &mut self.batch;
        // A shorter datagram can only end a GSO batch.
        b.closed = contents.len() < b.segment;
        b.buf.extend_from_slice(contents);
        b.count += 1;
    }

    /// Sends the pending batch.
    pub fn flush(&mut self) {
        let b = &mut self.batch;
        let Some(destination) = b.destination.take() else { return };
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &b.buf,
            segment_size: (b.count > 1).then_some(b.segment),
            src_ip: b.source,
        };
        // UDP is lossy by contract: a full socket buffer drops this batch like a congested link would, counted.
        match self.state.try_send((&self.socket).into(), &transmit) {
            Ok(()) => self.datagrams_sent += b.count as u64,
            Err(_) => self.send_errors += b.count as u64,
        }
        self.send_calls += 1;
        b.buf.clear();
        b.count = 0;
        b.closed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_one_socket_keeps_it() {
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        let port = group[0].local_addr().expect("addr").port();
        assert!(group.iter().all(|s| s.local_addr().expect("addr").port() == port));
        // Every member set SO_REUSEPORT; a socket that did not cannot join.
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
        // Every datagram to the port lands on one of the group's sockets (loopback delivers during the send).
        for i in 0..20u8 {
            let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
            client.send_to(&[i], ("127.0.0.1", port)).expect("send");
        }
        let mut got = 0;
        for s in &group {
            let mut b = [0u8; 4];
            while s.recv_from(&mut b).is_ok() {
                got += 1;
            }
        }
        assert_eq!(got, 20);

        let single = bind_group("127.0.0.1:0".parse().expect("addr"), 1).expect("bind");
        let port = single[0].local_addr().expect("addr").port();
        assert!(bind_group(SocketAddr::from(([127, 0, 0, 1], port)), 2).is_err(), "one shard keeps its port");
    }
}
