//! A style's preview picture: an optional image in the package (`preview = "preview.webp"` in
//! `style.toml`) that clients show beside the style, e.g. the playground's style cards. The
//! host reads and checks it when it loads the package, keeps it in memory with the version it
//! belongs to, and serves it at `GET /v1/styles/{id}/preview`.

use std::path::Path;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use image::ImageFormat;
use sha2::{Digest as _, Sha256};

/// Largest preview file accepted.
pub const PREVIEW_MAX_BYTES: u64 = 256 * 1024;
/// Largest side of a preview, in pixels.
pub const PREVIEW_MAX_SIDE: u32 = 1024;

/// A checked preview picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The file's bytes.
    pub bytes: Bytes,
    /// Its media type: `image/png`, `image/jpeg` or `image/webp`.
    pub mime: &'static str,
    /// A strong entity tag (quoted), from the bytes' SHA-256.
    pub etag: String,
}

impl Preview {
    /// Reads the preview `name` (a plain file name) in the package folder `dir`: a regular
    /// file (not a link) of at most [`PREVIEW_MAX_BYTES`], a PNG, JPEG or WebP whose sides are
    /// 1..=[`PREVIEW_MAX_SIDE`].
    pub fn read(dir: &Path, name: &str) -> anyhow::Result<Preview> {
        let path = dir.join(name);
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading the preview {}", path.display()))?;
        ensure!(
            meta.file_type().is_file(),
            "the preview {name} must be a regular file"
        );
        ensure!(
            meta.len() <= PREVIEW_MAX_BYTES,
            "the preview {name} is {} bytes; the limit is {PREVIEW_MAX_BYTES}",
            meta.len()
        );
        let bytes = std::fs::read(&path)
            .with_context(|| format!("reading the preview {}", path.display()))?;
        Self::from_bytes(name, bytes)
    }

    /// Checks a preview's bytes (see [`Preview::read`]); `name` is for the messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> anyhow::Result<Preview> {
        let format = image::guess_format(&bytes).ok();
        let mime = match format {
            Some(ImageFormat::Png) => "image/png",
            Some(ImageFormat::Jpeg) => "image/jpeg",
            Some(ImageFormat::WebP) => "image/webp",
            _ => anyhow::bail!("the preview {name} is not a PNG, JPEG or WebP image"),
        };
        let (width, height) = image::ImageReader::with_format(
            std::io::Cursor::new(&bytes),
            format.expect("matched above"),
        )
        .into_dimensions()
        .with_context(|| format!("the preview {name} is not a readable image"))?;
        ensure!(
            (1..=PREVIEW_MAX_SIDE).contains(&width) && (1..=PREVIEW_MAX_SIDE).contains(&height),
            "the preview {name} is {width}x{height}; each side must be 1..={PREVIEW_MAX_SIDE} pixels"
        );
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..32]);
        Ok(Preview {
            bytes: bytes.into(),
            mime,
            etag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(width, height)
            .write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_small_png_is_a_preview_with_its_type_and_tag() {
        let preview = Preview::from_bytes("p.png", png(8, 4)).unwrap();
        assert_eq!(preview.mime, "image/png");
        assert_eq!(preview.etag.len(), 34);
        assert_ne!(
            preview.etag,
            Preview::from_bytes("p.png", png(4, 8)).unwrap().etag
        );
    }

    #[test]
    fn what_is_not_a_small_image_is_refused_with_a_sentence() {
        let text = Preview::from_bytes("p.webp", b"<svg onload=alert(1)>".to_vec()).unwrap_err();
        assert!(
            text.to_string().contains("not a PNG, JPEG or WebP"),
            "{text}"
        );
        let large = Preview::from_bytes("p.png", png(1025, 2)).unwrap_err();
        assert!(large.to_string().contains("1025x2"), "{large}");
        let mut truncated = png(8, 8);
        truncated.truncate(20);
        assert!(Preview::from_bytes("p.png", truncated).is_err());
    }

    #[test]
    fn a_link_or_an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.png"), vec![0u8; 300 * 1024]).unwrap();
        let big = Preview::read(dir.path(), "big.png").unwrap_err();
        assert!(big.to_string().contains("the limit is 262144"), "{big}");
        std::fs::write(dir.path().join("real.png"), png(2, 2)).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real.png"), dir.path().join("link.png"))
            .unwrap();
        let link = Preview::read(dir.path(), "link.png").unwrap_err();
        assert!(link.to_string().contains("regular file"), "{link}");
        assert!(Preview::read(dir.path(), "real.png").is_ok());
    }
}
