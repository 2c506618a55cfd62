//! Hostile-safe image ingestion: sniff the type by magic bytes, check the limits against the header
//! before anything large is allocated, decode JPEG/PNG/WebP, apply the EXIF orientation, convert to
//! RGB8 (alpha flattened on white), and resize to the diffusion working size.

use std::io::Cursor;

use image::{
    DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage, RgbaImage,
};
use serde::Serialize;

/// Limits applied to every upload. Checked on the byte length and on the header's dimensions,
/// before the pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest accepted upload, in bytes (default 20 MiB).
    pub max_upload_bytes: usize,
    /// Largest accepted pixel count, width x height (default 40 megapixels).
    pub max_pixels: u64,
    /// Largest accepted width or height, in pixels (default 12000).
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 12_000,
        }
    }
}

/// The container formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JPEG (baseline or progressive; greyscale, YCbCr or CMYK).
    Jpeg,
    /// PNG (any bit depth and colour type).
    Png,
    /// WebP (lossy or lossless; the first frame of an animation).
    Webp,
}

/// Why an upload was refused. Each variant has a stable [`code`](IngestError::code); the
/// `Display` text is a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Zero bytes were sent.
    #[error("the upload is empty: send a JPEG, PNG or WebP photo")]
    Empty,
    /// The upload is larger than [`Limits::max_upload_bytes`].
    #[error("the upload is {size} bytes, more than the limit of {limit} bytes")]
    UploadTooLarge {
        /// Bytes received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The header declares more pixels than the limits allow (checked before decoding).
    #[error(
        "the image is {width}x{height} pixels; the limits are {max_side} pixels per side and {max_pixels} pixels in all"
    )]
    DimensionsTooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Limit per side.
        max_side: u32,
        /// Limit on width x height.
        max_pixels: u64,
    },
    /// Not a JPEG, PNG or WebP (detected from the magic bytes), or a feature of one that is not supported.
    #[error("unsupported image type ({detected}): send a JPEG, PNG or WebP photo")]
    Unsupported {
        /// What the bytes look like, e.g. "gif" or "unknown".
        detected: String,
    },
    /// The bytes claim a supported format but cannot be decoded (truncated, corrupt).
    #[error("the {format} image could not be decoded: {reason}")]
    Corrupt {
        /// The claimed format.
        format: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

impl IngestError {
    /// Stable machine-readable code: `empty_upload`, `image_too_large`, `unsupported_image` or `corrupt_image`.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Empty => "empty_upload",
            IngestError::UploadTooLarge { .. } | IngestError::DimensionsTooLarge { .. } => {
                "image_too_large"
            }
            IngestError::Unsupported { .. } => "unsupported_image",
            IngestError::Corrupt { .. } => "corrupt_image",
        }
    }
}

/// A decoded, upright RGB8 image and what was learnt on the way.
#[derive(Debug, Clone, Serialize)]
pub struct Decoded {
    /// The pixels, EXIF orientation applied, alpha flattened on white.
    #[serde(skip)]
    pub image: RgbImage,
    /// The container format.
    pub format: Format,
    /// Width and height as stored in the file (before orientation).
    pub original_size: (u32, u32),
    /// The EXIF orientation tag that was applied (1 = upright, 1..=8).
    pub orientation: u8,
}

impl Decoded {
    /// The photo's full size upright: [`Decoded::original_size`] turned by the orientation (the
    /// image's own size when it was decoded in full).
    pub fn upright_size(&self) -> (u32, u32) {
        let (w, h) = self.original_size;
        if (5..=8).contains(&self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }
}

/// Sniffs the container from its magic bytes. `Err` names what else it looks like.
pub fn sniff(bytes: &[u8]) -> Result<Format, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Format::Webp);
    }
    let detected = if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "gif"
    } else if bytes.starts_with(b"BM") {
        "bmp"
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        "tiff"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        "heif/avif"
    } else if bytes.starts_with(b"%PDF") {
        "pdf"
    } else if bytes.starts_with(b"<") || bytes.iter().take(512).all(|b| b.is_ascii() && *b != 0) {
        "text"
    } else {
        "unknown"
    };
    Err(IngestError::Unsupported {
        detected: detected.to_string(),
    })
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Jpeg => "JPEG",
        Format::Png => "PNG",
        Format::Webp => "WebP",
    }
}

fn map_image_error(
    format: Format,
    e: ImageError,
    limits: &Limits,
    dims: Option<(u32, u32)>,
) -> IngestError {
    match e {
        ImageError::Limits(_) => {
            let (width, height) = dims.unwrap_or((0, 0));
            IngestError::DimensionsTooLarge {
                width,
                height,
                max_side: limits.max_side,
                max_pixels: limits.max_pixels,
            }
        }
        ImageError::Unsupported(u) => IngestError::Unsupported {
            detected: format!("{} with {u}", format_name(format)),
        },
        other => IngestError::Corrupt {
            format: format_name(format),
            reason: other.to_string(),
        },
    }
}

fn check_dims(width: u32, height: u32, limits: &Limits) -> Result<(), IngestError> {
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(IngestError::DimensionsTooLarge {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(IngestError::Corrupt {
            format: "image",
            reason: format!("it declares {width}x{height} pixels"),
        });
    }
    Ok(())
}

/// Checks a WebP's chunks, which its decoder trusts, before decoding: every chunk must lie inside
/// the file (the decoder allocates a metadata chunk's declared size, up to 4 GiB, before reading
/// it) and every lossy frame, animation frames included, must declare a size within the limits
/// (the decoder allocates a frame from the frame's own header, up to 16383x16383, and compares it
/// with the canvas only after decoding).
fn check_webp(bytes: &[u8], limits: &Limits) -> Result<(), IngestError> {
    check_webp_chunks(bytes.get(12..).unwrap_or_default(), limits, false)
}

/// The chunks in `data`, and (unless `nested`) those inside each animation frame.
fn check_webp_chunks(data: &[u8], limits: &Limits, nested: bool) -> Result<(), IngestError> {
    let mut at: usize = 0;
    while let Some(&[a, b, c, d, s0, s1, s2, s3]) = data.get(at..at.saturating_add(8)) {
        let size = u32::from_le_bytes([s0, s1, s2, s3]) as usize;
        let start = at + 8;
        let Some(chunk) = data.get(start..start.saturating_add(size)) else {
            return Err(IngestError::Corrupt {
                format: format_name(Format::Webp),
                reason: format!(
                    "its {} chunk declares {size} bytes but the file ends {} bytes later",
                    String::from_utf8_lossy(&[a, b, c, d]),
                    data.len() - start,
                ),
            });
        };
        match &[a, b, c, d] {
            b"VP8 " => check_vp8_frame(chunk, limits)?,
            // An animation frame: a 16-byte header, then the frame's own chunks.
            b"ANMF" if !nested => {
                check_webp_chunks(chunk.get(16..).unwrap_or_default(), limits, true)?
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = start.saturating_add(size).saturating_add(size & 1);
    }
    Ok(())
}

/// A lossy key frame: a 3-byte tag (bit 0 clear), the start code 9d 01 2a, then the width and
/// height in 14 bits each.
fn check_vp8_frame(chunk: &[u8], limits: &Limits) -> Result<(), IngestError> {
    if let Some(&[tag, _, _, 0x9d, 0x01, 0x2a, w0, w1, h0, h1]) = chunk.get(..10)
        && tag & 1 == 0
    {
        let width = u16::from_le_bytes([w0, w1]) & 0x3FFF;
        let height = u16::from_le_bytes([h0, h1]) & 0x3FFF;
        check_dims(width.into(), height.into(), limits)?;
    }
    Ok(())
}

/// Decodes an upload into an upright RGB8 image.
///
/// Order of checks: empty, byte length, magic bytes (and, for WebP, its chunks' sizes and its
/// frames' declared dimensions), header dimensions (before the pixel buffer is allocated; the
/// decoder also gets `image::Limits` with a matching allocation cap), then the decode.
/// Never panics on hostile input; every failure is an [`IngestError`].
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, IngestError> {
    decode_at_least(bytes, limits, 0)
}

/// [`decode`] for a caller that needs no more than `long_side` pixels on the long side: a JPEG
/// at least twice as large is decoded at 1/2, 1/4 or 1/8 of its size by DCT scaling (the
/// smallest of these whose long side is still at least `long_side`), which skips most of the
/// inverse DCT and the upsampling and allocates a quarter or less. The image is then smaller
/// than [`Decoded::original_size`]; resizing it on to `long_side` gives what a full decode and
/// resize gives, within a few levels. Other formats, CMYK JPEGs and `long_side` 0 decode at
/// full size.
pub fn decode_at_least(
    bytes: &[u8],
    limits: &Limits,
    long_side: u32,
) -> Result<Decoded, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    if bytes.len() > limits.max_upload_bytes {
        return Err(IngestError::UploadTooLarge {
            size: bytes.len(),
            limit: limits.max_upload_bytes,
        });
    }
    let format = sniff(bytes)?;
    if format == Format::Webp {
        check_webp(bytes, limits)?;
    }
    let image_format = match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::Webp => ImageFormat::WebP,
    };
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    // Worst case: 16-bit RGBA (8 bytes a pixel) plus one converted 8-bit copy, plus slack for codec state.
    let max_alloc = limits
        .max_pixels
        .saturating_mul(12)
        .saturating_add(64 << 20);
    image_limits.max_alloc = Some(max_alloc);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(image_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(format, e, limits, None))?;
    let (width, height) = decoder.dimensions();
    check_dims(width, height, limits)?;
    // A broken EXIF block is not worth refusing a photo for: treat it as upright.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let scaled = match format {
        Format::Jpeg if long_side > 0 && width.max(height) >= long_side.saturating_mul(2) => {
            decode_jpeg_scaled(bytes, (width, height), long_side, max_alloc)
        }
        _ => None,
    };
    let mut dynamic = match scaled {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder)
            .map_err(|e| map_image_error(format, e, limits, Some((width, height))))?,
    };
    dynamic.apply_orientation(orientation);
    Ok(Decoded {
        image: to_rgb8(dynamic),
        format,
        original_size: (width, height),
        orientation: orientation.to_exif(),
    })
}

/// A JPEG of `size` (already checked against the limits) decoded by DCT scaling to the smallest
/// of 1/2, 1/4, 1/8 whose long side is at least `long_side`. `None` (decode at full size) when
/// the scaled decoder refuses the file or gives CMYK or 16-bit pixels.
fn decode_jpeg_scaled(
    bytes: &[u8],
    (width, height): (u32, u32),
    long_side: u32,
    max_alloc: u64,
) -> Option<DynamicImage> {
    let factor = f64::from(long_side) / f64::from(width.max(height));
    // Both sides scaled alike, so the decoder's "either side at least" is both sides.
    let request = |side: u32| u16::try_from((f64::from(side) * factor).ceil() as u32).ok();
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(usize::try_from(max_alloc).unwrap_or(usize::MAX));
    let (w, h) = decoder.scale(request(width)?, request(height)?).ok()?;
    let (w, h) = (u32::from(w), u32::from(h));
    if w.max(h) < long_side || w > width || h > height {
        return None;
    }
    // The pixel format from the buffer's length (the decoder's `info` panics on some frame
    // headers); a panic in the decoder is a file it cannot scale, decoded in full instead.
    let pixels = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode()))
        .ok()?
        .ok()?;
    let area = w as usize * h as usize;
    if pixels.len() == area * 3 {
        RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    } else if pixels.len() == area {
        image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        None
    }
}

/// Converts any decoded image to RGB8; colours with alpha are composited over white.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    if img.color().has_alpha() {
        flatten_on_white(&img.into_rgba8())
    } else {
        match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.into_rgb8(),
        }
    }
}

fn flatten_on_white(rgba: &RgbaImage) -> RgbImage {
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let a = u32::from(px[3]);
        for &c in &px[..3] {
            // c*a/255 + 255*(255-a)/255, rounded.
            let v = (u32::from(c) * a + 255 * (255 - a) + 127) / 255;
            out.push(v as u8);
        }
    }
    // The buffer has exactly w*h*3 bytes, so this cannot fail; fall back to white if it ever did.
    RgbImage::from_raw(w, h, out)
        .unwrap_or_else(|| RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255])))
}

/// The diffusion working size for an image: short side 1024, long side at most 1280, both rounded
/// down to multiples of 64 (the aspect ratio changes by less than one 64-px step).
pub fn working_size(width: u32, height: u32) -> (u32, u32) {
    if width == 0 || height == 0 {
        return (64, 64);
    }
    let (w, h) = (f64::from(width), f64::from(height));
    let short = w.min(h);
    let long = w.max(h);
    let mut scale = 1024.0 / short;
    if long * scale > 1280.0 {
        scale = 1280.0 / long;
    }
    let snap = |v: f64| (((v * scale).round() as u32 / 64) * 64).max(64);
    (snap(w), snap(h))
}

/// Resizes an RGB8 image with the SIMD resizer (Lanczos3 convolution, which also anti-aliases when
/// shrinking). Returns a copy when the size is unchanged.
pub fn resize(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    use fast_image_resize as fr;
    let (sw, sh) = img.dimensions();
    if (sw, sh) == (width, height) || width == 0 || height == 0 || sw == 0 || sh == 0 {
        return img.clone();
    }
    let Ok(src) = fr::images::ImageRef::new(sw, sh, img.as_raw(), fr::PixelType::U8x3) else {
        return img.clone();
    };
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let mut resizer = fr::Resizer::new();
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    if resizer.resize(&src, &mut dst, &options).is_err() {
        return img.clone();
    }
    RgbImage::from_raw(width, height, dst.into_vec()).unwrap_or_else(|| img.clone())
}

/// Resizes to [`working_size`].
pub fn to_working_size(img: &RgbImage) -> RgbImage {
    let (w, h) = working_size(img.width(), img.height());
    resize(img, w, h)
}

/// A copy whose long side is at most `max_side` (no upscaling) and the factors `[fx, fy]` that map
/// its coordinates back to `img`'s (`original_x = copy_x * fx`).
pub fn bounded(img: &RgbImage, max_side: u32) -> (std::borrow::Cow<'_, RgbImage>, [f32; 2]) {
    let (w, h) = img.dimensions();
    let long = w.max(h);
    if long <= max_side || max_side == 0 {
        return (std::borrow::Cow::Borrowed(img), [1.0, 1.0]);
    }
    let scale = f64::from(max_side) / f64::from(long);
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    let small = resize(img, nw, nh);
    (
        std::borrow::Cow::Owned(small),
        [w as f32 / nw as f32, h as f32 / nh as f32],
    )
}
