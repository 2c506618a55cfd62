//! Hostile and unusual uploads: each gives its typed error or a correct decode, never a panic,
//! and nothing large is allocated for a file that only declares large dimensions.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

mod common;

use image::{ImageBuffer, Rgb, RgbImage, Rgba};
use likeness_vision::ingest::{self, Format, IngestError, Limits};

/// The system allocator, noting the largest allocation each thread makes (tests run on their own
/// threads), so a test can check that nothing large was allocated.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

fn limits() -> Limits {
    Limits::default()
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A hand-made PNG whose IHDR declares `w x h` RGB8, with a tiny (bogus) IDAT.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn sample_rgb(w: u32, h: u32) -> RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    })
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .expect("encode");
    out
}

#[test]
fn zero_bytes_is_empty_upload() {
    let e = ingest::decode(&[], &limits()).unwrap_err();
    assert_eq!(e, IngestError::Empty);
    assert_eq!(e.code(), "empty_upload");
}

#[test]
fn text_named_jpg_is_unsupported() {
    let e = ingest::decode(b"hello, this is not a photo\n", &limits()).unwrap_err();
    assert_eq!(e.code(), "unsupported_image");
    assert!(e.to_string().contains("text"), "{e}");
}

#[test]
fn gif_bmp_and_animated_gif_are_unsupported() {
    // A 1x1 two-frame animated GIF, written by hand.
    let mut gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    gif.extend_from_slice(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00");
    for _ in 0..2 {
        gif.extend_from_slice(b"\x21\xf9\x04\x00\x0a\x00\x00\x00");
        gif.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
    }
    gif.push(0x3b);
    let e = ingest::decode(&gif, &limits()).unwrap_err();
    assert_eq!(e.code(), "unsupported_image");
    assert!(e.to_string().contains("gif"), "{e}");
    let e = ingest::decode(b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", &limits()).unwrap_err();
    assert_eq!(e.code(), "unsupported_image");
}

#[test]
fn png_declaring_100000_squared_is_refused_before_decoding() {
    let bytes = png_declaring(100_000, 100_000);
    let t = Instant::now();
    let e = ingest::decode(&bytes, &limits()).unwrap_err();
    assert_eq!(e.code(), "image_too_large");
    assert!(t.elapsed().as_millis() < 500, "took {:?}", t.elapsed());
    // Within the side limit but over the pixel limit (11000 x 11000 = 121 MP).
    let e = ingest::decode(&png_declaring(11_000, 11_000), &limits()).unwrap_err();
    assert_eq!(e.code(), "image_too_large");
    // A small declared size with a broken stream is corrupt, not too large.
    let e = ingest::decode(&png_declaring(64, 64), &limits()).unwrap_err();
    assert_eq!(e.code(), "corrupt_image");
}

#[test]
fn jpeg_declaring_huge_dimensions_is_refused() {
    // SOI, SOF0 declaring 60000 x 60000 x 3, then EOI: nothing to decode.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    jpeg.extend_from_slice(&60000u16.to_be_bytes());
    jpeg.extend_from_slice(&60000u16.to_be_bytes());
    jpeg.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    let e = ingest::decode(&jpeg, &limits()).unwrap_err();
    assert!(
        matches!(e.code(), "image_too_large" | "corrupt_image"),
        "{e:?}"
    );
}

#[test]
fn upload_size_limit_is_checked_first() {
    let small = Limits {
        max_upload_bytes: 10,
        ..Limits::default()
    };
    let e = ingest::decode(&[0xFF; 11], &small).unwrap_err();
    assert_eq!(
        e,
        IngestError::UploadTooLarge {
            size: 11,
            limit: 10
        }
    );
}

#[test]
fn truncated_jpeg_is_corrupt_or_decodes_without_panic() {
    let bytes = jpeg_bytes(&sample_rgb(256, 256));
    for cut in [3, 20, bytes.len() / 4, bytes.len() / 2, bytes.len() - 2] {
        match ingest::decode(&bytes[..cut], &limits()) {
            Ok(d) => assert_eq!(d.image.dimensions(), (256, 256), "cut {cut}"),
            Err(e) => assert_eq!(e.code(), "corrupt_image", "cut {cut}: {e}"),
        }
    }
    // Garbage after a valid JPEG header.
    let mut junk = bytes[..200].to_vec();
    junk.extend(std::iter::repeat_n(0xAB, 5000));
    if let Err(e) = ingest::decode(&junk, &limits()) {
        assert_eq!(e.code(), "corrupt_image");
    }
}

#[test]
fn sixteen_bit_png_and_alpha_are_converted() {
    // 16-bit RGB.
    let img16: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_fn(8, 4, |x, _| Rgb([(x as u16) * 8000, 65535, 0]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb16(img16)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    let d = ingest::decode(&png, &limits()).expect("decode 16-bit");
    assert_eq!(d.format, Format::Png);
    assert_eq!(d.image.get_pixel(0, 0).0, [0, 255, 0]);
    assert_eq!(
        d.image.get_pixel(7, 0).0[0],
        ((7u32 * 8000 + 128) / 257) as u8
    );
    // 16-bit RGBA, half transparent black over white -> mid grey; fully transparent -> white.
    let rgba: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgba([0, 0, 0, 32896])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba16(rgba)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    let d = ingest::decode(&png, &limits()).expect("decode rgba16");
    let p = d.image.get_pixel(0, 0).0;
    assert!(p.iter().all(|&v| (126..=129).contains(&v)), "{p:?}");
    assert_eq!(d.image.get_pixel(1, 0).0, [255, 255, 255]);
    // Greyscale PNG.
    let grey = image::GrayImage::from_fn(3, 3, |x, y| image::Luma([(x * 40 + y) as u8]));
    let mut png = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    let d = ingest::decode(&png, &limits()).expect("decode grey");
    assert_eq!(d.image.get_pixel(2, 1).0, [81, 81, 81]);
}

#[test]
fn cmyk_jpeg_decodes_to_the_right_colours() {
    // Made by tools/vision-bench/golden.py with PIL: patches red, green, blue, white.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/cmyk.jpg"
    ))
    .expect("read");
    let d = ingest::decode(&bytes, &limits()).expect("decode CMYK JPEG");
    assert_eq!(d.image.dimensions(), (16, 16));
    let close = |p: [u8; 3], q: [u8; 3]| {
        p.iter()
            .zip(q)
            .all(|(a, b)| (i16::from(*a) - i16::from(b)).abs() <= 40)
    };
    for ((x, y), want) in [
        ((3, 3), [255, 0, 0]),
        ((12, 3), [0, 255, 0]),
        ((3, 12), [0, 0, 255]),
        ((12, 12), [255, 255, 255]),
    ] {
        let got = d.image.get_pixel(x, y).0;
        assert!(close(got, want), "({x},{y}) {got:?} vs {want:?}");
    }
}

#[test]
fn webp_decodes() {
    let img = sample_rgb(32, 16);
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .encode(img.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .expect("encode");
    let d = ingest::decode(&webp, &limits()).expect("decode webp");
    assert_eq!(d.format, Format::Webp);
    assert_eq!(d.image, img);
    // Truncated WebP: typed error.
    let e = ingest::decode(&webp[..webp.len() / 2], &limits()).unwrap_err();
    assert_eq!(e.code(), "corrupt_image");
}

/// A 32x16 WebP in the extended format (VP8X, with the EXIF flag) holding `chunks`.
fn extended_webp(chunks: &[u8]) -> Vec<u8> {
    // VP8X: the flags, then the canvas size minus one, 24 bits each.
    let mut body = b"WEBPVP8X\x0a\0\0\0\x08\0\0\0\x1f\0\0\x0f\0\0".to_vec();
    body.extend_from_slice(chunks);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend_from_slice(&body);
    webp
}

/// A 32x16 lossless WebP (VP8X) with an EXIF chunk that declares `exif_size` bytes and holds `exif`.
fn webp_with_exif(exif_size: u32, exif: &[u8]) -> Vec<u8> {
    let img = sample_rgb(32, 16);
    let mut simple = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut simple)
        .encode(img.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .expect("encode");
    let mut chunks = simple[12..].to_vec();
    chunks.extend_from_slice(b"EXIF");
    chunks.extend_from_slice(&exif_size.to_le_bytes());
    chunks.extend_from_slice(exif);
    if exif.len() % 2 == 1 {
        chunks.push(0);
    }
    extended_webp(&chunks)
}

/// Decodes `bytes`, expecting a refusal with `code`, and returns the error's text after checking
/// that nothing over 1 MiB was allocated on the way.
fn refused_without_allocating(bytes: &[u8], code: &str) -> String {
    LARGEST.with(|largest| largest.set(0));
    let e = ingest::decode(bytes, &limits()).unwrap_err();
    let largest = LARGEST.with(Cell::get);
    assert_eq!(e.code(), code, "{e}");
    let size = bytes.len();
    assert!(
        largest < 1 << 20,
        "allocated {largest} bytes for a {size}-byte file"
    );
    e.to_string()
}

/// Found by fuzz/fuzz_targets/ingest_decode.rs: the WebP decoder allocated what a chunk declared.
#[test]
fn webp_metadata_chunk_larger_than_the_file_is_refused_without_allocating_it() {
    // Big-endian TIFF, one IFD entry: orientation (0x0112), SHORT, 1 value: 6 (turn 90).
    let exif = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0";
    let d = ingest::decode(&webp_with_exif(exif.len() as u32, exif), &limits()).expect("decode");
    assert_eq!((d.orientation, d.image.dimensions()), (6, (16, 32)));

    let text = refused_without_allocating(&webp_with_exif(800_000_000, exif), "corrupt_image");
    assert!(
        text.contains("EXIF chunk declares 800000000 bytes"),
        "{text}"
    );
}

/// Found by fuzz/fuzz_targets/ingest_decode.rs: a 32x16 canvas whose lossy frame declares
/// 16383x16383 made the WebP decoder allocate the frame (400 MB) before comparing the two.
#[test]
fn webp_frame_larger_than_its_canvas_is_refused_without_allocating_it() {
    // A key frame tag, the start code, 16383 x 16383, and a little bitstream.
    let frame = b"\x10\x02\0\x9d\x01\x2a\xff\x3f\xff\x3f\0\0\0\0\0\0";
    let mut chunks = b"VP8 ".to_vec();
    chunks.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    chunks.extend_from_slice(frame);
    // The same frame inside an animation frame (a 16-byte header, then its chunks).
    let mut animated = b"ANIM\x06\0\0\0\0\0\0\0\0\0ANMF".to_vec();
    animated.extend_from_slice(&(16 + chunks.len() as u32).to_le_bytes());
    animated.extend_from_slice(b"\0\0\0\0\0\0\x1f\0\0\x0f\0\0\x64\0\0\0");
    animated.extend_from_slice(&chunks);
    for webp in [extended_webp(&chunks), extended_webp(&animated)] {
        let text = refused_without_allocating(&webp, "image_too_large");
        assert!(text.contains("16383x16383"), "{text}");
    }
}

#[test]
fn working_size_rules() {
    assert_eq!(ingest::working_size(512, 512), (1024, 1024));
    assert_eq!(ingest::working_size(4000, 3000), (1280, 960));
    assert_eq!(ingest::working_size(3000, 4000), (960, 1280));
    assert_eq!(ingest::working_size(1920, 1080), (1280, 704));
    for (w, h) in [(640, 480), (1000, 3000), (17, 9000), (1, 1)] {
        let (a, b) = ingest::working_size(w, h);
        assert!(
            a % 64 == 0 && b % 64 == 0 && a.max(b) <= 1280 && a.min(b) <= 1024,
            "{w}x{h} -> {a}x{b}"
        );
    }
    let resized = ingest::to_working_size(&sample_rgb(300, 200));
    assert_eq!(resized.dimensions(), (1280, 832));
}

#[test]
fn errors_serialise_to_stable_codes() {
    let all = [
        IngestError::Empty,
        IngestError::UploadTooLarge { size: 2, limit: 1 },
        IngestError::DimensionsTooLarge {
            width: 1,
            height: 1,
            max_side: 1,
            max_pixels: 1,
        },
        IngestError::Unsupported {
            detected: "gif".into(),
        },
        IngestError::Corrupt {
            format: "PNG",
            reason: "x".into(),
        },
    ];
    let codes: Vec<_> = all.iter().map(IngestError::code).collect();
    assert_eq!(
        codes,
        [
            "empty_upload",
            "image_too_large",
            "image_too_large",
            "unsupported_image",
            "corrupt_image"
        ]
    );
    assert!(all.iter().all(|e| e.to_string().len() > 10));
}

/// Mean absolute difference and the share of channel values more than 24 levels apart.
fn difference(a: &RgbImage, b: &RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut sum, mut far) = (0u64, 0usize);
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        far += usize::from(d > 24);
    }
    let n = a.as_raw().len() as f64;
    (sum as f64 / n, far as f64 / n)
}

/// A 2600x1950 photo (obama.jpg scaled up) as a JPEG, as a phone would send one.
fn large_photo() -> RgbImage {
    ingest::resize(&common::photo("obama.jpg"), 2600, 1950)
}

/// What the DCT-scaled decode gives is what a full decode resized (Lanczos3) to the same size
/// gives: at 1/2 within a mean of 1 level and at most 0.1% of the values more than 24 levels
/// apart; at 1/4 and 1/8 (where the DCT's box-like averaging and Lanczos3's sharpening part
/// more at edges) within a mean of 3 levels and 1%. The same holds after the resize on to the
/// side asked for.
#[test]
fn dct_scaled_jpegs_match_a_full_decode_and_resize() {
    let bytes = jpeg_bytes(&large_photo());
    let full = ingest::decode(&bytes, &limits()).expect("full");
    assert_eq!(full.image.dimensions(), (2600, 1950));
    for (long_side, want, (mean_max, far_max)) in [
        (1280, (1300, 975), (1.0, 0.001)),
        (600, (650, 488), (3.0, 0.01)),
        (300, (325, 244), (3.0, 0.01)),
    ] {
        let scaled = ingest::decode_at_least(&bytes, &limits(), long_side).expect("scaled");
        assert_eq!(scaled.image.dimensions(), want, "for {long_side}");
        assert_eq!(scaled.original_size, (2600, 1950));
        let resized = ingest::resize(&full.image, want.0, want.1);
        let (mean, far) = difference(&scaled.image, &resized);
        println!(
            "decoded for {long_side}: {want:?}, mean difference {mean:.3}, {:.4}% far",
            far * 100.0
        );
        assert!(
            mean <= mean_max && far <= far_max,
            "for {long_side}: {mean:.3}, {far:.4}"
        );
        let (a, _) = ingest::bounded(&scaled.image, long_side);
        let (b, _) = ingest::bounded(&full.image, long_side);
        let (mean, far) = difference(&a, &b);
        println!(
            "  bounded to {long_side}: mean difference {mean:.3}, {:.4}% far",
            far * 100.0
        );
        assert!(
            mean <= mean_max && far <= far_max,
            "bounded to {long_side}: {mean:.3}, {far:.4}"
        );
    }
    // Under twice the side asked for, and other formats: decoded in full.
    let whole = ingest::decode_at_least(&bytes, &limits(), 1400).expect("whole");
    assert_eq!(whole.image.dimensions(), (2600, 1950));
    assert_eq!(
        ingest::decode_at_least(&bytes, &limits(), 0)
            .expect("0")
            .image,
        full.image
    );
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        large_photo().as_raw(),
        2600,
        1950,
        image::ExtendedColorType::Rgb8,
    )
    .expect("png");
    let png = ingest::decode_at_least(&png, &limits(), 600).expect("png");
    assert_eq!(png.image.dimensions(), (2600, 1950));
}

/// Every EXIF orientation is applied to the scaled decode as to the full one.
#[test]
fn dct_scaled_jpegs_are_turned_upright() {
    use image::DynamicImage;
    use image::metadata::Orientation;
    let upright = large_photo();
    let inverse = [1u8, 2, 3, 4, 5, 8, 7, 6];
    for tag in 1u8..=8 {
        let inv = Orientation::from_exif(inverse[(tag - 1) as usize]).expect("orientation");
        let mut stored = DynamicImage::ImageRgb8(upright.clone());
        stored.apply_orientation(inv);
        let bytes = common::jpeg_with_orientation(&stored.to_rgb8(), u16::from(tag));
        let scaled = ingest::decode_at_least(&bytes, &limits(), 1280).expect("scaled");
        assert_eq!(scaled.orientation, tag);
        assert_eq!(scaled.image.dimensions(), (1300, 975), "tag {tag}");
        assert_eq!(scaled.upright_size(), (2600, 1950), "tag {tag}");
        let (mean, far) = difference(&scaled.image, &ingest::resize(&upright, 1300, 975));
        assert!(
            mean <= 1.0 && far <= 0.001,
            "tag {tag}: {mean:.3}, {far:.4}"
        );
    }
}

/// A truncated or corrupt large JPEG decoded for a smaller side: an error or a picture, never a
/// panic.
#[test]
fn broken_large_jpegs_decoded_for_a_smaller_side_do_not_panic() {
    let bytes = jpeg_bytes(&large_photo());
    for cut in [bytes.len() / 2, bytes.len() - 10, 700] {
        let result = ingest::decode_at_least(&bytes[..cut], &limits(), 600);
        if let Ok(d) = result {
            assert!(d.image.width() >= 325, "{:?}", d.image.dimensions());
        }
    }
    let mut scrambled = bytes.clone();
    for i in (2000..scrambled.len()).step_by(997) {
        scrambled[i] ^= 0x5A;
    }
    let _ = ingest::decode_at_least(&scrambled, &limits(), 600);
}
