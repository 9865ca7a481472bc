//! The edge's listener: accepts connections under a cap and serves each
//! with hyper, with a deadline on reading a request's head and a deadline
//! on silence.
//!
//! - At most [`ServeOptions::max_connections`] connections are open at
//!   once, upgraded ones (agent channels) included: a connection's slot
//!   lives as long as its socket. When the cap is reached the listener stops accepting (the
//!   kernel's backlog holds the next ones) and says so once in the log,
//!   until a connection closes.
//! - A request's head (request line and headers) must arrive within
//!   [`ServeOptions::header_timeout`] of the connection waiting for it,
//!   which also bounds how long an idle keep-alive connection is kept
//!   (hyper's HTTP/1 header-read timeout).
//! - A connection on which no byte moves either way for
//!   [`ServeOptions::idle_timeout`] is closed, unless a request on it is
//!   being answered (a handler at work is never cut; only an authenticated
//!   request gets that far). An upgraded connection leaves hyper, and
//!   this watchdog, once upgraded: an agent's websocket channel has its own
//!   heartbeats and silence limit (see `channel`).
//!   A slow but steady upload moves bytes, so it is never idle.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// Limits of the listener.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Connections open at once, websocket channels included.
    pub max_connections: usize,
    /// How long a request's head may take to arrive, and an idle
    /// keep-alive connection may wait for its next request.
    pub header_timeout: Duration,
    /// How long a connection may move no byte while no request on it is
    /// being answered.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// What a connection's watchdog knows of it.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last byte read or written.
    last: AtomicU64,
    /// Requests being answered now.
    in_flight: AtomicUsize,
    /// Upgraded (a websocket): the watchdog leaves it alone.
    upgraded: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// A connection's place under the cap, and in the open-connections gauge,
/// for as long as its socket lives: an upgraded connection (a websocket)
/// leaves hyper but keeps its socket, and its place.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    edge: Arc<crate::Edge>,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, edge: Arc<crate::Edge>) -> Self {
        edge.metrics.connections_open.inc();
        Self {
            _permit: permit,
            edge,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.edge.metrics.connections_open.dec();
    }
}

/// A TCP stream that records when bytes last moved, holding its slot.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() != before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Counts a request out of `in_flight` however its future ends.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves once `activity`'s connection has been idle (no byte, no
/// request being answered, not upgraded) for `limit`.
async fn idle(activity: &Activity, limit: Duration) {
    loop {
        let quiet = activity.idle_for();
        if quiet >= limit
            && activity.in_flight.load(Ordering::Relaxed) == 0
            && !activity.upgraded.load(Ordering::Relaxed)
        {
            return;
        }
        if activity.upgraded.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(limit.saturating_sub(quiet).max(Duration::from_millis(100))).await;
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, asks every open connection to finish its request and close,
/// and waits for them (each is bounded by the timeouts).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: ServeOptions,
    edge: Arc<crate::Edge>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut at_cap = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        if at_cap {
            at_cap = false;
            tracing::info!(
                max_connections = options.max_connections,
                "connections below the limit again"
            );
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // Out of file handles, or a connection reset before it
                    // was accepted: wait a little rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (heartbeats, acks) go out at once.
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            peer,
            router.clone(),
            builder.clone(),
            options.idle_timeout,
            stop_rx.clone(),
            permit,
            edge.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
    edge: Arc<crate::Edge>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
        _slot: Slot::new(permit, edge),
    });
    let service_activity = activity.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            let activity = service_activity.clone();
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(activity.clone());
            async move {
                let response = router.oneshot(req.map(axum::body::Body::new)).await;
                if let Ok(r) = &response {
                    if r.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                        activity.upgraded.store(true, Ordering::Relaxed);
                    }
                }
                drop(guard);
                response
            }
        });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(err) = done {
                    tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                }
                break;
            }
            () = idle(&activity, idle_timeout) => {
                tracing::debug!(peer = %peer, idle_secs = idle_timeout.as_secs(), "closing an idle connection");
                break;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
