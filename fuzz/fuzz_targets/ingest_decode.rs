//! `ingest::decode` on any bytes, under small limits so that the refusal paths (upload size,
//! side, pixel count) are reached as often as the decoders: every input must give an upright
//! RGB8 image within the limits or a typed error with a 4xx status, never a panic, and the
//! memory stays bounded (`make fuzz` runs this with `-rss_limit_mb` and `-malloc_limit_mb`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use likeness_host::pipeline::GenerateError;
use likeness_host::server::error::generation_status;
use likeness_vision::ingest::{self, Limits};

/// Small limits: a 16 KiB upload, 256 pixels a side, 128x128 pixels in all.
const LIMITS: Limits = Limits {
    max_upload_bytes: 16 * 1024,
    max_pixels: 128 * 128,
    max_side: 256,
};

fuzz_target!(|bytes: &[u8]| {
    match ingest::decode(bytes, &LIMITS) {
        Ok(decoded) => {
            let (width, height) = decoded.original_size;
            assert!(width <= LIMITS.max_side && height <= LIMITS.max_side);
            assert!(u64::from(width) * u64::from(height) <= LIMITS.max_pixels);
            assert!((1..=8).contains(&decoded.orientation));
            // Orientations 5 to 8 turn the image by a quarter.
            let upright = if decoded.orientation >= 5 {
                (height, width)
            } else {
                (width, height)
            };
            assert_eq!(decoded.image.dimensions(), upright);
        }
        Err(error) => {
            let status = generation_status(&GenerateError::Image(error.clone()));
            assert!(status.is_client_error(), "{error:?}");
            assert!(!error.code().is_empty() && !error.to_string().is_empty());
        }
    }
});
