//! Plain 8-bit images in and out of the engine, and their conversion to tensors.

/// An 8-bit image, rows top to bottom, `channels` interleaved bytes per pixel (1 grey, 3 RGB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u8,
    /// `width * height * channels` bytes.
    pub data: Vec<u8>,
}

impl Image {
    /// An RGB image; `None` when the buffer size does not match.
    pub fn rgb(width: u32, height: u32, data: Vec<u8>) -> Option<Image> {
        Image::new(width, height, 3, data)
    }

    /// A grey image; `None` when the buffer size does not match.
    pub fn grey(width: u32, height: u32, data: Vec<u8>) -> Option<Image> {
        Image::new(width, height, 1, data)
    }

    fn new(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Option<Image> {
        let expected = (width as usize)
            .checked_mul(height as usize)?
            .checked_mul(channels as usize)?;
        (expected == data.len() && width > 0 && height > 0).then_some(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// Checks the buffer's size and channel count (for images built field by field).
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.channels != 1 && self.channels != 3 {
            return Err(format!(
                "{what} has {} channels; 1 (grey) or 3 (RGB) expected",
                self.channels
            ));
        }
        let expected = (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(self.channels as usize));
        if self.width == 0 || self.height == 0 || expected != Some(self.data.len()) {
            return Err(format!(
                "{what} is {}x{}x{} but holds {} bytes",
                self.width,
                self.height,
                self.channels,
                self.data.len()
            ));
        }
        Ok(())
    }

    /// Channel `c` (0..3) of pixel (x, y); grey images repeat their one channel.
    fn at(&self, x: usize, y: usize, c: usize) -> f32 {
        let ch = self.channels as usize;
        let c = if ch == 1 { 0 } else { c };
        f32::from(self.data[(y * self.width as usize + x) * ch + c])
    }

    /// The image resized (bilinear, pixel centres aligned) to `w` x `h` as planar RGB f32 in
    /// 0..255, `3 * h * w` values (CHW).
    pub fn to_planar(&self, w: u32, h: u32) -> Vec<f32> {
        let (w, h) = (w as usize, h as usize);
        let (sw, sh) = (self.width as usize, self.height as usize);
        let mut out = vec![0f32; 3 * w * h];
        if sw == w && sh == h {
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        out[c * w * h + y * w + x] = self.at(x, y, c);
                    }
                }
            }
            return out;
        }
        let sx = sw as f32 / w as f32;
        let sy = sh as f32 / h as f32;
        for y in 0..h {
            let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(sh - 1);
            let ty = fy - y0 as f32;
            for x in 0..w {
                let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
                let x0 = fx.floor() as usize;
                let x1 = (x0 + 1).min(sw - 1);
                let tx = fx - x0 as f32;
                for c in 0..3 {
                    let top = self.at(x0, y0, c) * (1.0 - tx) + self.at(x1, y0, c) * tx;
                    let bottom = self.at(x0, y1, c) * (1.0 - tx) + self.at(x1, y1, c) * tx;
                    out[c * w * h + y * w + x] = top * (1.0 - ty) + bottom * ty;
                }
            }
        }
        out
    }
}

/// The generated picture: 8-bit RGB, rows top to bottom, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Interleaved RGB bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Converts a decoded VAE image (planar RGB in -1..1, CHW) as diffusers does:
    /// `round(clamp(x / 2 + 0.5, 0, 1) * 255)`.
    pub fn from_decoded(width: u32, height: u32, planar: &[f32]) -> RgbImage {
        let n = width as usize * height as usize;
        let mut data = vec![0u8; n * 3];
        for i in 0..n {
            for c in 0..3 {
                let v = planar.get(c * n + i).copied().unwrap_or(0.0);
                let v = (v / 2.0 + 0.5).clamp(0.0, 1.0);
                data[i * 3 + c] = (v * 255.0).round_ties_even() as u8;
            }
        }
        RgbImage {
            width,
            height,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(Image::rgb(2, 2, vec![0; 12]).is_some());
        assert!(Image::rgb(2, 2, vec![0; 11]).is_none());
        let bad = Image {
            width: 2,
            height: 2,
            channels: 2,
            data: vec![0; 8],
        };
        assert!(bad.validate("x").is_err());
    }

    #[test]
    fn grey_expands_and_resize_keeps_constants() {
        let g = Image::grey(3, 2, vec![10, 20, 30, 40, 50, 60]).unwrap();
        let p = g.to_planar(3, 2);
        assert_eq!(&p[0..6], &p[6..12]);
        let c = Image::rgb(5, 7, vec![77; 105]).unwrap();
        assert!(c.to_planar(16, 9).iter().all(|v| (*v - 77.0).abs() < 1e-4));
    }

    #[test]
    fn decoded_conversion_matches_diffusers() {
        let img = RgbImage::from_decoded(1, 1, &[-1.0, 0.0, 2.0]);
        assert_eq!(img.data, vec![0, 128, 255]);
    }
}
