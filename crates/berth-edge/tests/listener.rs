//! The listener's limits on real sockets: a slow but steady upload is not
//! idle, a silent connection is closed, and a handler that works longer
//! than the idle timeout is not cut.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use berth_control::{Config, ControlPlane, SystemClock};
use berth_edge::{Authenticator, Credentials, Edge, RootCredentials, ServeOptions};
use berth_store::MemoryStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn edge() -> Arc<Edge> {
    let root = RootCredentials {
        access_key_id: "AKIDEXAMPLE000000000".into(),
        secret_access_key: "secret".into(),
    };
    Arc::new(Edge {
        control: ControlPlane::new(
            Arc::new(MemoryStore::new()),
            Config::default(),
            Arc::new(SystemClock),
        ),
        auth: Authenticator::new(Credentials::with_root(&root, "000000000000"), "us-east-1"),
        metrics: Default::default(),
        account_id: "000000000000".into(),
        channel: Default::default(),
    })
}

/// Serves a router whose `/up` answers the length of its body, and whose
/// `/work` takes `ms` milliseconds before answering, with one-second
/// timeouts.
async fn serve() -> std::net::SocketAddr {
    let router = Router::new()
        .route(
            "/up",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/work",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                "done"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServeOptions {
        max_connections: 16,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
    };
    tokio::spawn(berth_edge::listener::serve(
        listener,
        router,
        options,
        edge(),
        std::future::pending(),
    ));
    addr
}

async fn response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.ends_with(b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_slow_but_steady_upload_outlives_the_idle_timeout() {
    let addr = serve().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n")
        .await
        .unwrap();
    // 12 bytes over three seconds: never a second without one.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(b"x").await.unwrap();
    }
    let text = response(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("12"), "{text}");
}

#[tokio::test]
async fn a_handler_at_work_is_not_cut_but_a_silent_connection_is() {
    let addr = serve().await;
    let mut working = TcpStream::connect(addr).await.unwrap();
    working
        .write_all(b"POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let text = response(&mut working).await;
    assert!(text.ends_with("done"), "{text}");
    // The silent one was closed by the server (EOF), long before the 20 s
    // this waits at most.
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut byte))
        .await
        .expect("the silent connection was never closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
