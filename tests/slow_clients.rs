//! Slow and hostile clients over real sockets (raw HTTP written with tokio's `TcpStream`): uploads
//! trickling one byte a second, a request whose headers never finish, and an oversized upload
//! announced with `Expect: 100-continue`. A real server, the first-party styles, real models.
//!
//! Timeouts are configured small so that the tests run in seconds; every bound asserted on time
//! only catches a hang (or checks that a deadline did not fire early, which no load can cause).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{TestServer, client, photo_form, send, serve_config};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Long enough to mean "hung", on any machine.
const HANG: Duration = Duration::from_secs(60);

fn socket_addr(server: &TestServer) -> SocketAddr {
    server.url.strip_prefix("http://").unwrap().parse().unwrap()
}

/// A connection to `server` from the loopback address `local` (any of 127.0.0.0/8), so that a
/// test can play several clients.
async fn connect_from(server: SocketAddr, local: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads what the server sends until it closes the connection (or resets it).
async fn read_until_closed(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `head` from `local`, then one byte of body a second until the server answers and closes
/// the connection; returns the answer and how long after the head it came.
async fn trickle(server: SocketAddr, local: &str, head: String) -> (String, Duration) {
    let stream = connect_from(server, local).await;
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let writing = async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let answer = tokio::time::timeout(HANG, async {
        tokio::select! {
            answer = read_until_closed(&mut reader) => answer,
            _ = writing => unreachable!(),
        }
    })
    .await
    .expect("the server closes a trickling upload");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        sent.elapsed(),
    )
}

async fn wait_for_metric(server: &TestServer, series: &str, value: f64) {
    let deadline = Instant::now() + HANG;
    loop {
        let now = server.metric(series).await;
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {now}, not {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickling_uploads_are_closed_with_408_and_do_not_stop_a_normal_generation() {
    let mut config = serve_config(common::first_party_styles());
    config.http.body_grace_secs = 2;
    config.http.body_min_bytes_per_sec = 4096;
    config.admission.uploads_per_client = 8;
    let server = TestServer::start(config).await;
    let addr = socket_addr(&server);
    // 24 KiB at 4 KiB/s after a 2 s grace: each upload must be complete 8 s after its head (less
    // than the 10 s for which the server discards the body of a request it has answered early).
    let (length, deadline) = (24 * 1024, Duration::from_secs(8));
    let head = format!(
        "POST /v1/styles/anime/generations HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n"
    );
    // 100 slow clients, all from 127.0.0.2.
    let tricklers: Vec<_> = (0..100)
        .map(|_| tokio::spawn(trickle(addr, "127.0.0.2", head.clone())))
        .collect();
    // Eight hold upload places (the per-client bound); the other 92 were shed at once (and their
    // bodies are discarded as they trickle in). None of them holds a queue place.
    wait_for_metric(&server, "likeness_uploads_in_progress", 8.0).await;
    wait_for_metric(
        &server,
        r#"likeness_shed_total{reason="client_uploads_full"}"#,
        92.0,
    )
    .await;
    assert_eq!(server.metric("likeness_queue_depth").await, 0.0);

    // A normal client (from 127.0.0.1) is served meanwhile.
    let normal = send(
        client()
            .post(server.at("/v1/styles/anime/generations"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(normal.status(), StatusCode::OK);

    for trickler in tricklers {
        let (answer, after) = trickler.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        // Closed at its deadline, not before it (and not hung: `trickle` bounds the wait).
        assert!(
            after >= deadline - Duration::from_secs(1),
            "closed after {after:?}"
        );
    }
    assert_eq!(
        server
            .metric(r#"likeness_shed_total{reason="slow_body"}"#)
            .await,
        100.0
    );
    assert_eq!(server.metric("likeness_uploads_in_progress").await, 0.0);
    // Served again from the address that was trickling.
    let again = send(
        reqwest::Client::builder()
            .no_proxy()
            .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
            .post(server.at("/v1/styles/anime/generations"))
            .multipart(photo_form("astronaut.png", None)),
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unfinished_headers_and_idle_connections_are_closed_at_the_header_timeout() {
    let mut config = serve_config(common::first_party_styles());
    config.http.header_read_timeout_secs = 1;
    let server = TestServer::start(config).await;
    let addr = socket_addr(&server);

    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    for stream in [&mut partial, &mut idle] {
        let answer = tokio::time::timeout(HANG, read_until_closed(stream))
            .await
            .expect("the server closes the connection");
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed before the timeout ({waited:?})"
    );

    // A client that keeps to the timeout is served, on the same kind of connection.
    let mut prompt = TcpStream::connect(addr).await.unwrap();
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = tokio::time::timeout(HANG, read_until_closed(&mut prompt))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_upload_expecting_100_continue_gets_413_before_any_body() {
    let server = TestServer::start(serve_config(common::first_party_styles())).await;
    let addr = socket_addr(&server);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/styles/anime/generations HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        30 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(HANG, read_until_closed(&mut stream))
        .await
        .expect("the server answers and closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("\"body_too_large\""), "{answer}");

    // An early answer to a request expecting 100-continue (here 404) does not invite its body
    // either.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/styles/no-such-style/generations HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(HANG, read_until_closed(&mut stream))
        .await
        .expect("the server answers and closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}
