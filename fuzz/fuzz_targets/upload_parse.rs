//! The host's upload parser (`server::upload::read`: multipart/form-data, JSON with a `data:`
//! URL, raw body) on a request built from the input. Every input must give an upload or an
//! `ApiError` with a 4xx status, never a panic or a hang.
//!
//! Input layout, so that seeds can be written by hand:
//! - byte 0, bits 0-2: the `Content-Type`, from [`CONTENT_TYPES`]; 6 sends none, 7 takes the
//!   header from the body up to its first `\n` (the rest is the body);
//! - byte 0, bit 3: the endpoint's fields, `WithOptions` (generations) if set, else `ImageOnly`
//!   (analysis);
//! - byte 1: the body arrives in chunks of this many bytes (0: in one piece), to reach the
//!   parsers' streaming paths;
//! - the rest: the body.
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use likeness_host::server::upload::{self, Fields};

/// The multipart boundary of the seeds.
const CONTENT_TYPES: [&str; 6] = [
    "multipart/form-data; boundary=likeness-fuzz",
    "application/json",
    "application/octet-stream",
    "image/png",
    "image/jpeg",
    "image/webp",
];

/// One small runtime for every input, as a server's worker thread would be.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

fuzz_target!(|input: &[u8]| {
    let [selector, chunk, rest @ ..] = input else {
        return;
    };
    let fields = if selector & 8 == 0 {
        Fields::ImageOnly
    } else {
        Fields::WithOptions
    };
    let (content_type, body) = match usize::from(selector & 7) {
        6 => (None, rest),
        7 => match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (HeaderValue::from_bytes(&rest[..end]).ok(), &rest[end + 1..]),
            None => (None, rest),
        },
        i => (Some(HeaderValue::from_static(CONTENT_TYPES[i])), rest),
    };
    let body = if *chunk == 0 {
        Body::from(body.to_vec())
    } else {
        let pieces: Vec<Result<Bytes, Infallible>> = body
            .chunks(usize::from(*chunk))
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .collect();
        Body::from_stream(futures_util::stream::iter(pieces))
    };
    let mut request = Request::post("/v1/styles/fuzz/generations")
        .body(body)
        .expect("a request");
    if let Some(value) = content_type {
        request.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    match RUNTIME.block_on(upload::read(request, fields)) {
        Ok(upload) => {
            if fields == Fields::ImageOnly {
                assert!(upload.options.is_empty() && upload.output_format.is_none());
            }
        }
        Err(error) => {
            assert!(error.status().is_client_error(), "{error:?}");
            assert!(!error.code().is_empty());
        }
    }
});
