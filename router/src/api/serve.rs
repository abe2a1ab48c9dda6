//! The HTTP listener's driver: accepts connections through the shared [`Connections`] caps and serves each with
//! hyper, under `[server.limits]` timeouts.
//!
//! Why not `axum::serve`: it sets no timer, so hyper's header timeout never runs, and it has no connection cap:
//! connections that send nothing, or a header byte a second (slowloris), stayed open forever (issue 24).
//! Here every connection is admitted by [`Connections::admit`], hyper closes one that takes longer than
//! `header_timeout` to send a request's headers (which is also how long an idle keep-alive connection lives,
//! since hyper starts that timer whenever it waits for a request), [`limit_body_time`] ends a request whose
//! body takes longer than `body_timeout`, and a client that stops reading a response is dropped after 30 s
//! ([`StalledWrites`]). Handlers find the client's address in `ConnectInfo`: the peer's, or behind a trusted
//! reverse proxy the one its `X-Forwarded-For` names ([`forwarded`]). The HTTPS listener is the same driver with
//! a TLS handshake first ([`serve_tls`], the certificate from [`super::tls`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;

use super::tls::Tls;
use super::{AppState, forwarded};
use crate::connections::Connections;
use crate::runtime::Runtime;

/// How long to pause accepting after the process ran out of descriptors (EMFILE): accepting again at once would
/// spin, since the pending connection stays in the backlog.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` turns true; then stops accepting, asks every connection to finish
/// its request in flight and close, and returns once all have (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    runtime: Runtime,
    connections: Arc<Connections>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with(listener, app, runtime, connections, shutdown, None).await
}

/// [`serve`] over TLS: each connection's handshake must finish within the header timeout.
pub async fn serve_tls(
    listener: TcpListener,
    app: axum::Router,
    runtime: Runtime,
    connections: Arc<Connections>,
    shutdown: watch::Receiver<bool>,
    tls: Arc<Tls>,
) {
    serve_with(listener, app, runtime, connections, shutdown, Some(tls)).await
}

async fn serve_with(
    listener: TcpListener,
    app: axum::Router,
    runtime: Runtime,
    connections: Arc<Connections>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<Arc<Tls>>,
) {
    // Each connection task holds a sender; when the last is gone, every connection has ended.
    let (alive, mut all_ended) = mpsc::channel::<Infallible>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed; pausing accepts briefly");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = stop_requested(&mut shutdown) => break,
        };
        let (mut limits, proxied) = {
            let dir = runtime.directory();
            let server = &dir.table.server;
            (server.limits.clone(), server.trusted_proxies.iter().any(|net| net.contains(peer.ip())))
        };
        if proxied {
            // Every client behind a trusted proxy arrives from its address, and the client is only known from the
            // headers, after admission: the proxy gets the total cap alone.
            limits.connections_per_ip = u32::MAX;
        }
        let Ok(permit) = connections.admit(peer.ip(), &limits) else {
            // Closed at once: the client sees a reset instead of waiting in a backlog.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let runtime = runtime.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let _permit = permit;
            let _alive = alive;
            match acceptor {
                None => serve_connection(stream, peer, app, runtime, limits.header_timeout, shutdown).await,
                Some(acceptor) => {
                    // A client that opens a connection and never finishes the handshake is a slowloris too.
                    let handshake = async {
                        let ssl = openssl::ssl::Ssl::new(acceptor.context())?;
                        let mut stream = tokio_openssl::SslStream::new(ssl, stream)?;
                        std::pin::Pin::new(&mut stream).accept().await.map_err(std::io::Error::other)?;
                        Ok::<_, std::io::Error>(stream)
                    };
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, runtime, limits.header_timeout, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake took too long"),
                    }
                }
            }
        });
    }
    drop(alive);
    let _ = all_ended.recv().await;
}

/// One connection's requests, plain or over TLS, until it closes or the server stops.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    runtime: Runtime,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        // Handlers see the client: behind a trusted reverse proxy, the one its headers name.
        let trusted = &runtime.directory().table.server.trusted_proxies;
        let client =
            if trusted.is_empty() { peer } else { forwarded::client_address(peer, request.headers(), trusted) };
        request.extensions_mut().insert(ConnectInfo(client));
        app.clone().oneshot(request.map(Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(StalledWrites::new(stream)), service)
        .with_upgrades();
    tokio::pin!(connection);
    let stopping = async move { stop_requested(&mut shutdown).await };
    tokio::select! {
        result = connection.as_mut() => log_end(peer, result),
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            log_end(peer, connection.await);
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone), holding no borrow of it across awaits.
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn log_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Timeouts and resets are a client's business, not the operator's: debug level.
        tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
    }
}

/// How long a write to a client may stay blocked (its receive window full) before the connection is dropped: a
/// client that asks for a stream (a frame tap, a recording) and stops reading would otherwise hold its connection,
/// and its place under the caps, forever. The RTMP players' limit is the same.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream whose writes fail once one has made no progress for [`WRITE_STALL_TIMEOUT`].
struct StalledWrites<S> {
    stream: S,
    /// Armed when a write finds the socket full; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StalledWrites<S> {
    fn new(stream: S) -> Self {
        StalledWrites { stream, stalled: None }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let stall = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        if stall.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading (write blocked 30 s)",
            )));
        }
        Poll::Pending
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StalledWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StalledWrites<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Middleware: a request body that takes longer than `[server.limits] body_timeout` to arrive ends with an error
/// (the extractor reading it answers 400 and the connection closes).
pub async fn limit_body_time(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let timeout = state.runtime.directory().table.server.limits.body_timeout;
    next.run(request.map(|body| Body::new(DeadlineBody::new(body, timeout)))).await
}

/// A body that fails once its deadline passes before its end.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, timeout: Duration) -> Self {
        DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(timeout)), timeout }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (`server.limits.body_timeout`)")]
struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_its_deadline_fails_and_a_prompt_one_passes() {
        let prompt = DeadlineBody::new(Body::from("hello"), Duration::from_secs(1));
        assert_eq!(prompt.collect().await.expect("in time").to_bytes(), "hello");

        let (tx, rx) = mpsc::channel::<Result<axum::body::Bytes, Infallible>>(1);
        let slow = DeadlineBody::new(Body::from_stream(tokio_stream_of(rx)), Duration::from_secs(1));
        tx.send(Ok("a".into())).await.expect("send");
        let err = slow.collect().await.expect_err("too slow");
        assert!(err.to_string().contains("did not arrive within 1s"), "{err}");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_dropped_after_the_stall_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = StalledWrites::new(server);
        // Writes that the client reads go through, however long it all takes.
        for _ in 0..3 {
            server.write_all(&[1; 64]).await.expect("read promptly");
            tokio::time::sleep(WRITE_STALL_TIMEOUT * 2).await;
            let mut buf = [0; 64];
            client.read_exact(&mut buf).await.expect("read");
        }
        // A client that stops reading: the buffer fills, and the write fails once it has been stuck long enough.
        let began = tokio::time::Instant::now();
        let err = server.write_all(&[2; 1024]).await.expect_err("stuck");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(began.elapsed(), WRITE_STALL_TIMEOUT);
    }

    /// A stream over an mpsc receiver (tokio-stream is not a dependency).
    fn tokio_stream_of<T: Send + 'static>(
        rx: mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send + 'static {
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
    }
}
