//! The HTTP server of the node and of the portal: hyper's HTTP/1 connection builder with a
//! header-read timeout, a deadline for each request's body, behind an accept loop bounded by
//! a semaphore, and the security headers every response carries.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never runs and a client can
//! hold a connection for ever without sending a request (500 such connections were all kept
//! for 60 s in the audit of issue 14). Here hyper's timer starts whenever the server waits
//! for a request: on a new connection and after each response on a kept-alive one, so the
//! same limit closes a connection that never finishes its headers and one that sits idle.
//! An upgraded connection (the signalling WebSocket) leaves hyper and its timers behind and
//! lives as long as the meeting; it keeps its place in the connection limit until it closes.
//!
//! hyper has no timer for a request's body: a client that sends its headers and then trickles
//! the body a byte at a time held its connection (and a handler) for as long as it liked.
//! Each body must therefore be complete within `body_timeout` of its headers; past that the
//! handler's read fails, the request is refused and hyper closes the connection, since the
//! rest of the body was never read. The size limit stays the extractors' (axum's 2 MB).

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower::ServiceExt as _;

/// How long connections may take and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must be complete this long after the server starts waiting for
    /// them (a new connection, or the previous response on a kept-alive one): the
    /// header-read and the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Open connections, WebSockets included; the next waits in the kernel's backlog
    /// until one closes.
    pub max_connections: usize,
    /// A request's body must be complete this long after its headers.
    pub body_timeout: Duration,
}

/// The most a request's line and headers may take. Browsers send a few KiB (a full cookie
/// jar of one site stays under 16 KiB); hyper's default of ~400 KB let one request put 20,000
/// cookies into the access log. Larger requests get 431 and are not served.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

impl HttpLimits {
    /// Browsers reopen a closed keep-alive connection without the user noticing; ten
    /// seconds is plenty for headers even on a school's congested uplink.
    pub const DEFAULT_HEADER_SECONDS: u64 = 10;
    /// A full node (500 participants, one WebSocket each) and their portal requests, well
    /// under the file-descriptor limit the fleet's unit sets.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    /// The largest body the API takes (2 MB, a list of teachers) arrives in 16 s at 1 Mbit/s,
    /// a congested school uplink; everything else is a few KiB.
    pub const DEFAULT_BODY_SECONDS: u64 = 30;
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(Self::DEFAULT_HEADER_SECONDS),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            body_timeout: Duration::from_secs(Self::DEFAULT_BODY_SECONDS),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets
/// the requests in flight finish. Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection's task holds a sender; when all are gone the server is done.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let body_timeout = limits.body_timeout;
        let service = router.clone().map_request(move |req: Request<Incoming>| {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            Request::from_parts(parts, TimedBody::within(body, body_timeout))
        });
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
        });
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let conn = builder
                .serve_connection(io, TowerToHyperService::new(service))
                .with_upgrades();
            let mut conn = pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(open);
        });
    }
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// A request body that fails once its deadline passes before its end has arrived.
struct TimedBody {
    inner: Incoming,
    /// `None` for a body that is complete already (most requests have none).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn within(inner: Incoming, limit: Duration) -> axum::body::Body {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(limit)));
        axum::body::Body::new(TimedBody { inner, deadline })
    }
}

/// The body did not arrive within its deadline.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream that holds its place in the connection limit until it is dropped, also
/// after an upgrade hands it from hyper to the WebSocket.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A listen address from configuration: `off` (or empty) for none.
pub fn parse_listen(value: &str) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
    match value.trim() {
        "" | "off" => Ok(None),
        v => v.parse().map(Some),
    }
}

/// The policy of responses that are not pages (signalling, metrics, health): nothing may
/// load from them or frame them.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the headers every response carries, with `csp` as its Content-Security-Policy.
/// Applied outermost, so routes merged in and the fallback get them too.
pub fn security_headers(router: Router, csp: String) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let csp = csp.clone();
        async move {
            let mut res = next.run(req).await;
            let h = res.headers_mut();
            set(h, header::CONTENT_SECURITY_POLICY, &csp);
            set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
            set(h, header::REFERRER_POLICY, "no-referrer");
            set(h, header::X_FRAME_OPTIONS, "DENY");
            set(
                h,
                HeaderName::from_static("permissions-policy"),
                "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
            );
            set(
                h,
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            );
            res
        }
    }))
}

fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}
