//! A finished generation made ready for clients: the image encoded (PNG, JPEG or WebP) and the
//! facts of the run (style version, plan, faces, identity score, stage timings).

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::identity::Identity;
use crate::pipeline::Generation;
use likeness_contract::{Options, Plan};

use crate::wasm::Image;

/// JPEG quality of encoded results.
const JPEG_QUALITY: u8 = 90;

/// An image format results can be returned in. The settings are the fastest sound ones of the
/// `image` crate's encoders (measured at 1024 x 1024 on the styles' results: `cargo bench -p
/// likeness-host --bench looks`, docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// PNG: lossless; `image`'s `CompressionType::Fast`, which is the `png` crate's
    /// `Compression::Fast` (fdeflate's ultra-fast DEFLATE), with adaptive filters; RGB when
    /// the image is opaque (a quarter less to filter and compress), else RGBA.
    Png,
    /// JPEG, quality 90 (alpha dropped): the smallest for photo-like results, lossy, and the
    /// slowest encoder of the three.
    Jpeg,
    /// WebP, lossless (`image-webp`'s encoder; the `image` crate has no lossy WebP): the
    /// default, as fast as PNG and smaller for every style's results.
    #[default]
    Webp,
}

impl OutputFormat {
    /// Every format.
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp];

    /// The format's name: `png`, `jpeg` or `webp`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Webp => "webp",
        }
    }

    /// The format's media type.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// The format named `name` (`png`, `jpeg`/`jpg`, `webp`; any case).
    pub fn parse(name: &str) -> Option<OutputFormat> {
        match name.trim().to_ascii_lowercase().as_str() {
            "png" => Some(OutputFormat::Png),
            "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
            "webp" => Some(OutputFormat::Webp),
            _ => None,
        }
    }

    /// The format of the media type `mime` (e.g. `image/png`).
    pub fn from_mime(mime: &str) -> Option<OutputFormat> {
        Self::ALL
            .into_iter()
            .find(|format| format.mime().eq_ignore_ascii_case(mime.trim()))
    }

    /// Encodes an RGBA image (alpha is dropped for JPEG, and for PNG when it is opaque).
    pub fn encode(self, image: &Image) -> Result<Vec<u8>, image::ImageError> {
        let mut out = Vec::new();
        let (w, h) = (image.width, image.height);
        match self {
            OutputFormat::Png => {
                let png = PngEncoder::new_with_quality(
                    &mut out,
                    CompressionType::Fast,
                    FilterType::Adaptive,
                );
                if image.rgba.chunks_exact(4).all(|p| p[3] == 255) {
                    png.write_image(&rgb(image), w, h, ExtendedColorType::Rgb8)?
                } else {
                    png.write_image(&image.rgba, w, h, ExtendedColorType::Rgba8)?
                }
            }
            OutputFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
                .write_image(&rgb(image), w, h, ExtendedColorType::Rgb8)?,
            OutputFormat::Webp => WebPEncoder::new_lossless(&mut out).write_image(
                &image.rgba,
                w,
                h,
                ExtendedColorType::Rgba8,
            )?,
        }
        Ok(out)
    }
}

/// The image's RGB samples (alpha dropped).
fn rgb(image: &Image) -> Vec<u8> {
    image
        .rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// A finished generation, encoded.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The generation's id (also the job's, for asynchronous ones).
    pub id: String,
    /// The style that ran.
    pub style_id: String,
    /// The version of the style that ran.
    pub style_version: String,
    /// The sha256 of the style's component that ran.
    pub style_digest: String,
    /// The style's plan; `plan.method` ran, for `plan.reason`.
    pub plan: Plan,
    /// The method the style planned (`plan.method` is what ran).
    pub planned: likeness_contract::MethodKind,
    /// The options the style got (checked, defaults applied).
    pub options: Options,
    /// What the host saw in the photo.
    pub analysis: likeness_vision::Analysis,
    /// How much of the reference face's identity the image kept.
    pub identity: Identity,
    /// The image's format.
    pub format: OutputFormat,
    /// The image's size.
    pub width: u32,
    /// The image's height.
    pub height: u32,
    /// The encoded image.
    pub bytes: Vec<u8>,
    /// Milliseconds per stage, in order (queued, analysing, planning, post-processing,
    /// encoding).
    pub timings: Vec<(&'static str, f64)>,
}

impl Rendered {
    /// Encodes `generation` (CPU-heavy: call it off the async workers).
    pub fn encode(
        id: String,
        generation: Generation,
        format: OutputFormat,
        mut timings: Vec<(&'static str, f64)>,
    ) -> Result<Rendered, image::ImageError> {
        let started = std::time::Instant::now();
        let bytes = format.encode(&generation.image)?;
        timings.extend(generation.timings);
        timings.push(("encoding", started.elapsed().as_secs_f64() * 1e3));
        Ok(Rendered {
            id,
            style_id: generation.style_id,
            style_version: generation.style_version,
            style_digest: generation.style_digest,
            plan: generation.plan,
            options: generation.options,
            analysis: generation.analysis,
            identity: generation.identity,
            planned: generation.planned,
            format,
            width: generation.image.width,
            height: generation.image.height,
            bytes,
            timings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips_through_the_decoder() {
        let image = Image {
            width: 3,
            height: 2,
            rgba: (0..24).map(|i| (i * 10) as u8).collect(),
        };
        for format in OutputFormat::ALL {
            let bytes = format.encode(&image).unwrap();
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (3, 2), "{format:?}");
            if format != OutputFormat::Jpeg {
                assert_eq!(
                    decoded.to_rgba8().into_raw(),
                    image.rgba,
                    "{format:?} is lossless"
                );
            }
            assert_eq!(OutputFormat::from_mime(format.mime()), Some(format));
            assert_eq!(OutputFormat::parse(format.name()), Some(format));
        }
        assert_eq!(OutputFormat::parse("JPG"), Some(OutputFormat::Jpeg));
        assert_eq!(OutputFormat::parse("gif"), None);
        assert_eq!(OutputFormat::default(), OutputFormat::Webp);
    }

    #[test]
    fn an_opaque_png_is_rgb_and_keeps_every_pixel() {
        let opaque = Image {
            width: 2,
            height: 2,
            rgba: [
                [1, 2, 3, 255],
                [4, 5, 6, 255],
                [7, 8, 9, 255],
                [0, 0, 0, 255],
            ]
            .concat(),
        };
        let decoded = image::load_from_memory(&OutputFormat::Png.encode(&opaque).unwrap()).unwrap();
        assert_eq!(decoded.color(), image::ColorType::Rgb8);
        assert_eq!(decoded.to_rgba8().into_raw(), opaque.rgba);
    }
}
