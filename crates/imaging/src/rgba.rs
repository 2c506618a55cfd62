//! [`Rgba`]: an 8-bit RGBA image and the filters on it.

use crate::plane::resample_axis;
use crate::{Color, Plane, SizeError, max_f32};

/// An 8-bit RGBA image, rows top to bottom, `width * height * 4` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgba {
    /// Width in pixels, at least 1.
    pub width: u32,
    /// Height in pixels, at least 1.
    pub height: u32,
    /// The pixels, 4 bytes each: red, green, blue, alpha.
    pub data: Vec<u8>,
}

/// `v / 255` for every byte.
fn unit_lut() -> [f32; 256] {
    let mut lut = [0.0; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        *v = i as f32 / 255.0;
    }
    lut
}

/// `out[i] = data[4 * i + c] / 255`: channel `c` of RGBA pixels as `0.0..=1.0`.
fn read_channel(data: &[u8], c: usize, out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = crate::simd::read_channel(data, c, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    let lut = unit_lut();
    for (v, p) in out[done..].iter_mut().zip(data[done * 4..].chunks_exact(4)) {
        *v = lut[p[c] as usize];
    }
}

/// `out[i]` = the luma ([`luma_u8`]) of pixel `i` of `data` / 255.
fn read_luma(data: &[u8], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = crate::simd::read_luma(data, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    let lut = unit_lut();
    for (v, p) in out[done..].iter_mut().zip(data[done * 4..].chunks_exact(4)) {
        *v = lut[luma_u8(p[0], p[1], p[2]) as usize];
    }
}

/// For each `x`: the sum, from 0, of `top` and then `bottom` at `x - d` and `x + d` (clamped to
/// the row): the corners of the squares of [`Rgba::kuwahara`] whose corners meet at `x`. Where
/// no index is clamped the loop runs on shifted slices, so that it vectorises.
fn corner_sums(top: &[f32], bottom: &[f32], d: usize, out: &mut [f32]) {
    let w = out.len();
    let at = |x: usize| {
        let (c0, c1) = (x.saturating_sub(d), (x + d).min(w - 1));
        0.0 + top[c0] + top[c1] + bottom[c0] + bottom[c1]
    };
    let lo = d.min(w);
    let hi = w.saturating_sub(d).max(lo);
    for (x, o) in out[..lo].iter_mut().enumerate() {
        *o = at(x);
    }
    if hi > lo {
        let tops = top.iter().zip(&top[2 * d..]);
        let bottoms = bottom.iter().zip(&bottom[2 * d..]);
        for ((o, (&t0, &t1)), (&b0, &b1)) in out[lo..hi].iter_mut().zip(tops).zip(bottoms) {
            *o = 0.0 + t0 + t1 + b0 + b1;
        }
    }
    for (x, o) in out.iter_mut().enumerate().skip(hi) {
        *o = at(x);
    }
}

/// `data[4 * i + c] = to_byte(values[i])`: `values` into channel `c` of RGBA pixels.
fn write_channel(values: &[f32], c: usize, data: &mut [u8]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = crate::simd::write_channel(values, c, data);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (p, &v) in data[done * 4..].chunks_exact_mut(4).zip(&values[done..]) {
        p[c] = to_byte(v);
    }
}

/// `0.0..=1.0` to a byte, rounded and clamped.
#[inline]
pub fn to_byte(v: f32) -> u8 {
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// Rec. 601 luma of a pixel in `0..=255`, integer weights 77/150/29.
#[inline]
pub fn luma_u8(r: u8, g: u8, b: u8) -> u8 {
    ((77 * r as u32 + 150 * g as u32 + 29 * b as u32 + 128) >> 8) as u8
}

impl Rgba {
    /// An opaque black image.
    pub fn new(width: u32, height: u32) -> Self {
        let mut data = vec![0u8; width as usize * height as usize * 4];
        for px in data.chunks_exact_mut(4) {
            px[3] = 255;
        }
        Rgba {
            width,
            height,
            data,
        }
    }

    /// Checks and wraps a pixel buffer: both sides non-zero and `data.len() == width * height *
    /// 4`.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<Self, SizeError> {
        if width == 0 || height == 0 {
            return Err(SizeError(format!(
                "the image is empty ({width} x {height} pixels)"
            )));
        }
        let expected = (width as u128) * (height as u128) * 4;
        if data.len() as u128 != expected {
            return Err(SizeError(format!(
                "the image buffer has {} bytes but {width} x {height} RGBA needs {expected}",
                data.len()
            )));
        }
        Ok(Rgba {
            width,
            height,
            data,
        })
    }

    /// Converts an image of another crate (e.g. the style SDK's WIT image) by its
    /// `TryInto<Rgba>`, which checks it.
    pub fn from_image<T: TryInto<Rgba>>(image: T) -> Result<Self, T::Error> {
        image.try_into()
    }

    /// Converts into an image of another crate (e.g. the style SDK's WIT image) by its
    /// `From<Rgba>`.
    pub fn into_image<T: From<Rgba>>(self) -> T {
        T::from(self)
    }

    /// The number of pixels.
    pub fn pixel_count(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The pixel at (`x`, `y`); panics outside the image.
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [
            self.data[i],
            self.data[i + 1],
            self.data[i + 2],
            self.data[i + 3],
        ]
    }

    /// Luma (Rec. 601) as a plane of `0.0..=1.0`.
    pub fn luma(&self) -> Plane {
        let mut plane = Plane::new(self.width, self.height, 0.0);
        read_luma(&self.data, &mut plane.data);
        plane
    }

    /// The red, green and blue channels as planes of `0.0..=1.0`.
    pub fn to_planes(&self) -> [Plane; 3] {
        [0, 1, 2].map(|c| {
            let mut plane = Plane::new(self.width, self.height, 0.0);
            read_channel(&self.data, c, &mut plane.data);
            plane
        })
    }

    /// Replaces red, green and blue by `planes` (same size, `0.0..=1.0`, clamped); alpha stays.
    pub fn set_planes(&mut self, planes: &[Plane; 3]) {
        for (c, plane) in planes.iter().enumerate() {
            write_channel(&plane.data, c, &mut self.data);
        }
    }

    /// An image of the same size and alpha with the colours of `planes`.
    pub fn with_planes(&self, planes: &[Plane; 3]) -> Rgba {
        let mut out = self.clone();
        out.set_planes(planes);
        out
    }

    /// An image of the same size and alpha whose colour channels are `filter` of this one's,
    /// one channel at a time (so that one channel's planes are alive at once, not three).
    pub fn map_channels(&self, filter: impl Fn(&Plane) -> Plane) -> Rgba {
        let mut out = self.clone();
        let mut plane = Plane::new(self.width, self.height, 0.0);
        for c in 0..3 {
            read_channel(&self.data, c, &mut plane.data);
            let filtered = filter(&plane);
            write_channel(&filtered.data, c, &mut out.data);
        }
        out
    }

    /// Box blur of radius `radius` on the colour channels.
    pub fn box_blur(&self, radius: u32) -> Rgba {
        self.map_channels(|p| p.box_blur(radius))
    }

    /// Gaussian blur of `sigma` pixels on the colour channels ([`Plane::gaussian_blur`]).
    pub fn gaussian_blur(&self, sigma: f32) -> Rgba {
        self.map_channels(|p| p.gaussian_blur(sigma))
    }

    /// Gradient magnitude of the luma (Sobel), `0.0..` with 1 for a black-to-white step.
    pub fn edges(&self) -> Plane {
        self.luma().sobel()
    }

    /// Edge-preserving smoothing: each colour channel through the [`Plane::guided_filter`],
    /// guided by itself.
    pub fn guided_smooth(&self, radius: u32, eps: f32) -> Rgba {
        self.map_channels(|p| p.guided_filter(p, radius, eps))
    }

    /// Edge-preserving smoothing with a painterly, blocky-free look: a soft Kuwahara filter.
    /// For each pixel the four overlapping `(2 * radius + 1)` squares whose corners meet at it
    /// are averaged, each weighted by how flat (low luma variance) it is, so that regions stay
    /// flat and edges stay sharp. `sharpness` (1..) sets how strongly the flattest square wins.
    pub fn kuwahara(&self, radius: u32, sharpness: f32) -> Rgba {
        if radius == 0 || self.data.is_empty() {
            return self.clone();
        }
        let [r, g, b] = self.to_planes();
        let mut l = self.luma();
        let mean_l = l.box_blur(radius);
        l.map(|v| v * v);
        let mean_l2 = l.box_blur(radius);
        let k = sharpness.max(0.0) * 400.0;
        // Per square (indexed by its centre): its weight, and its mean colour times the weight.
        let mut weight = mean_l2;
        for (wv, &m) in weight.data.iter_mut().zip(&mean_l.data) {
            let var = max_f32(*wv - m * m, 0.0);
            // Weight 1 / (1 + sharpness * var / 0.0025)^4: flat squares dominate.
            let t = 1.0 + k * var;
            let t2 = t * t;
            *wv = 1.0 / (t2 * t2);
        }
        let mut weighted = [r.box_blur(radius), g.box_blur(radius), b.box_blur(radius)];
        for p in &mut weighted {
            p.zip_map(&weight, |m, wv| m * wv);
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let d = radius as usize;
        let mut out = self.clone();
        // Row by row: the four squares' sums of the weight and of each weighted colour, then
        // the colours (sums over the weight's sum).
        let planes = [&weight, &weighted[0], &weighted[1], &weighted[2]];
        let mut sums = vec![0.0f32; 4 * w];
        for (y, out_row) in out.data.chunks_exact_mut(4 * w).enumerate() {
            let (top, bottom) = (y.saturating_sub(d) * w, (y + d).min(h - 1) * w);
            for (plane, sum) in planes.iter().zip(sums.chunks_exact_mut(w)) {
                corner_sums(&plane.data[top..][..w], &plane.data[bottom..][..w], d, sum);
            }
            let (sw, colours) = sums.split_at_mut(w);
            for (c, colour) in colours.chunks_exact_mut(w).enumerate() {
                for (v, &s) in colour.iter_mut().zip(&*sw) {
                    *v *= 1.0 / s;
                }
                write_channel(colour, c, out_row);
            }
        }
        out
    }

    /// The image shrunk by `block`: each output pixel is the mean of a `block` x `block` square
    /// (partial squares at the right and bottom edges average what they cover).
    pub fn downsample(&self, block: u32) -> Rgba {
        let block = block.max(1);
        let (w, h) = (self.width as usize, self.height as usize);
        if w == 0 || h == 0 {
            return Rgba::new(0, 0);
        }
        let (bw, bh) = (w.div_ceil(block as usize), h.div_ceil(block as usize));
        let bs = block as usize;
        let mut sums = vec![0u32; bw * 4];
        let mut out = Vec::with_capacity(bw * bh * 4);
        for by in 0..bh {
            sums.iter_mut().for_each(|s| *s = 0);
            let y0 = by * bs;
            let y1 = (y0 + bs).min(h);
            for y in y0..y1 {
                let row = &self.data[y * w * 4..(y + 1) * w * 4];
                for (x, p) in row.chunks_exact(4).enumerate() {
                    let s = &mut sums[(x / bs) * 4..][..4];
                    s[0] += p[0] as u32;
                    s[1] += p[1] as u32;
                    s[2] += p[2] as u32;
                    s[3] += p[3] as u32;
                }
            }
            for bx in 0..bw {
                let cw = ((bx + 1) * bs).min(w) - bx * bs;
                let n = (cw * (y1 - y0)) as u32;
                for c in 0..4 {
                    out.push(((sums[bx * 4 + c] + n / 2) / n) as u8);
                }
            }
        }
        Rgba {
            width: bw as u32,
            height: bh as u32,
            data: out,
        }
    }

    /// The image grown by `block` (each pixel becomes a `block` x `block` square), cropped to
    /// `width` x `height`.
    pub fn upscale_nearest(&self, block: u32, width: u32, height: u32) -> Rgba {
        if width == 0 || height == 0 || self.data.is_empty() {
            return Rgba::new(width, height);
        }
        let bs = block.max(1) as usize;
        let (w, h) = (width as usize, height as usize);
        let sw = self.width as usize;
        let mut data = vec![0u8; w * h * 4];
        for (y, row) in data.chunks_exact_mut(w * 4).enumerate() {
            let sy = (y / bs).min(self.height as usize - 1);
            let src = &self.data[sy * sw * 4..(sy + 1) * sw * 4];
            for (x, p) in row.chunks_exact_mut(4).enumerate() {
                let sx = (x / bs).min(sw - 1);
                p.copy_from_slice(&src[sx * 4..sx * 4 + 4]);
            }
        }
        Rgba {
            width,
            height,
            data,
        }
    }

    /// The `width` x `height` part whose top-left corner is (`x`, `y`), cut to the image.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Rgba {
        let x = x.min(self.width);
        let y = y.min(self.height);
        let width = width.min(self.width - x);
        let height = height.min(self.height - y);
        let sw = self.width as usize;
        let mut data = Vec::with_capacity(width as usize * height as usize * 4);
        for row in y as usize..(y + height) as usize {
            let start = (row * sw + x as usize) * 4;
            data.extend_from_slice(&self.data[start..start + width as usize * 4]);
        }
        Rgba {
            width,
            height,
            data,
        }
    }

    /// Pixelates in place: every `block` x `block` square takes its mean colour.
    pub fn pixelate(&mut self, block: u32) {
        if block <= 1 {
            return;
        }
        *self = self
            .downsample(block)
            .upscale_nearest(block, self.width, self.height);
    }

    /// Resamples to `width` x `height` with bilinear interpolation (a fast path for thumbnails
    /// and tests, not an antialiased downscaler).
    pub fn resize(&self, width: u32, height: u32) -> Rgba {
        if width == 0 || height == 0 || self.data.is_empty() {
            return Rgba::new(width, height);
        }
        let xs = resample_axis(self.width, width);
        let ys = resample_axis(self.height, height);
        let sw = self.width as usize;
        let mut data = vec![0u8; width as usize * height as usize * 4];
        for (row, &(y0, y1, ty)) in data.chunks_exact_mut(width as usize * 4).zip(&ys) {
            let r0 = &self.data[y0 * sw * 4..][..sw * 4];
            let r1 = &self.data[y1 * sw * 4..][..sw * 4];
            for (p, &(x0, x1, tx)) in row.chunks_exact_mut(4).zip(&xs) {
                for c in 0..4 {
                    let a = r0[x0 * 4 + c] as f32
                        + (r0[x1 * 4 + c] as f32 - r0[x0 * 4 + c] as f32) * tx;
                    let b = r1[x0 * 4 + c] as f32
                        + (r1[x1 * 4 + c] as f32 - r1[x0 * 4 + c] as f32) * tx;
                    p[c] = (a + (b - a) * ty + 0.5) as u8;
                }
            }
        }
        Rgba {
            width,
            height,
            data,
        }
    }

    /// Warps the image: each output pixel samples (bilinearly, edges clamped) the pixel at its
    /// position plus (`dx`, `dy`) from the planes of the same size, in pixels. With smooth
    /// noise as offsets, edges wobble like paint that ran.
    pub fn displace(&self, dx: &Plane, dy: &Plane) -> Rgba {
        let (w, h) = (self.width as usize, self.height as usize);
        if w == 0 || h == 0 {
            return self.clone();
        }
        let (maxx, maxy) = ((w - 1) as f32, (h - 1) as f32);
        let mut out = self.clone();
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let sx = (x as f32 + dx.data[i]).clamp(0.0, maxx);
                let sy = (y as f32 + dy.data[i]).clamp(0.0, maxy);
                let (x0, y0) = (sx as usize, sy as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (tx, ty) = (sx - x0 as f32, sy - y0 as f32);
                let (a, b) = ((y0 * w + x0) * 4, (y0 * w + x1) * 4);
                let (c, d) = ((y1 * w + x0) * 4, (y1 * w + x1) * 4);
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                crate::simd::bilinear_pixel(
                    &self.data,
                    [a, b, c, d],
                    (tx, ty),
                    &mut out.data,
                    i * 4,
                );
                #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
                for k in 0..3 {
                    let top = self.data[a + k] as f32
                        + (self.data[b + k] as f32 - self.data[a + k] as f32) * tx;
                    let bottom = self.data[c + k] as f32
                        + (self.data[d + k] as f32 - self.data[c + k] as f32) * tx;
                    out.data[i * 4 + k] = (top + (bottom - top) * ty + 0.5) as u8;
                }
            }
        }
        out
    }

    /// Mixes `other` (same size) in: `amount` 0 keeps this image, 1 gives `other`.
    pub fn blend(&mut self, other: &Rgba, amount: f32) {
        let t = (amount.clamp(0.0, 1.0) * 256.0) as i32;
        for (p, o) in self
            .data
            .chunks_exact_mut(4)
            .zip(other.data.chunks_exact(4))
        {
            for c in 0..3 {
                let a = p[c] as i32;
                p[c] = (a + (((o[c] as i32 - a) * t) >> 8)) as u8;
            }
        }
    }

    /// Multiplies by `other` (same size) channel by channel, as layers in "multiply" mode.
    pub fn multiply(&mut self, other: &Rgba) {
        for (p, o) in self
            .data
            .chunks_exact_mut(4)
            .zip(other.data.chunks_exact(4))
        {
            for c in 0..3 {
                p[c] = ((p[c] as u32 * o[c] as u32 + 127) / 255) as u8;
            }
        }
    }

    /// Multiplies every colour channel by the pixel's value in `factor` (same size; values
    /// above 1 brighten, results clamped).
    pub fn scale(&mut self, factor: &Plane) {
        for (p, &f) in self.data.chunks_exact_mut(4).zip(&factor.data) {
            for c in &mut p[..3] {
                *c = (*c as f32 * f + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }

    /// Moves every colour towards `color` by the pixel's value in `amount` (same size,
    /// `0.0..=1.0`): 0 keeps the pixel, 1 paints `color`.
    pub fn tint(&mut self, color: Color, amount: &Plane) {
        for (p, &t) in self.data.chunks_exact_mut(4).zip(&amount.data) {
            let t = t.clamp(0.0, 1.0);
            for (c, &target) in p[..3].iter_mut().zip(&color) {
                *c = (*c as f32 + (target as f32 - *c as f32) * t + 0.5) as u8;
            }
        }
    }
}
