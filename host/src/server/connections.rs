//! Serving connections: HTTP/1.1 over hyper with a header read timeout (which also closes a
//! connection that sends nothing between requests), each request tagged with its client's
//! address (`ConnectInfo<SocketAddr>`), and a graceful close of every connection on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How long to wait after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` and serves `app` on each until `close` is canceled; then
/// stops accepting and asks every connection to close once its in-flight request is answered.
/// Returns the open connections, to wait for.
pub async fn accept(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    close: CancellationToken,
) -> TaskTracker {
    let connections = TaskTracker::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = close.cancelled() => break,
        };
        connections.spawn(serve_connection(
            stream,
            client,
            app.clone(),
            header_read_timeout,
            close.clone(),
        ));
    }
    connections.close();
    connections
}

/// Serves one connection until the client closes it, it times out, or `close` is canceled (then
/// gracefully: the request in flight is answered first).
async fn serve_connection(
    stream: TcpStream,
    client: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    close: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(client));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = close.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%client, %error, "connection ended with an error");
    }
}
