//! Image buffers and the filters styles build their looks from.
//!
//! [`Rgba`] is an 8-bit RGBA image (the WIT [`Image`], checked); [`Plane`] is one channel of
//! `f32` values, nominally `0.0..=1.0`, for intermediate results (luma, edges, masks, textures).
//! Everything is pure Rust and written for speed in WebAssembly as well as natively: row-major
//! loops over slices, separable box filters with running sums (cost independent of the
//! radius), lookup tables instead of per-pixel divisions, and no allocation per pixel.
//!
//! Borders are handled by clamping (the edge pixel repeats). Alpha is carried through
//! unchanged by every filter.

use crate::{Analysis, Image, StyleError};

/// A single-channel `f32` image, rows top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` values.
    pub data: Vec<f32>,
}

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

/// A palette colour, red, green, blue.
pub type Color = [u8; 3];

/// `v / 255` for every byte.
fn unit_lut() -> [f32; 256] {
    let mut lut = [0.0; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        *v = i as f32 / 255.0;
    }
    lut
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

/// Box filter of one line, radius `r`, clamped ends, into `out` (same length).
fn box_line(src: &[f32], out: &mut [f32], r: usize) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let last = n - 1;
    let inv = 1.0 / (2 * r + 1) as f64;
    let mut acc: f64 = 0.0;
    for k in 0..=2 * r {
        acc += src[k.saturating_sub(r).min(last)] as f64;
    }
    out[0] = (acc * inv) as f32;
    // Clamped indices only near the ends; the middle runs without bounds arithmetic.
    let lo = (r + 1).min(n);
    let hi = n.saturating_sub(r).max(lo);
    for x in 1..lo {
        acc += src[(x + r).min(last)] as f64 - src[0] as f64;
        out[x] = (acc * inv) as f32;
    }
    if hi > lo {
        let adds = &src[lo + r..];
        let subs = &src[lo - r - 1..];
        for ((o, &add), &sub) in out[lo..hi].iter_mut().zip(adds).zip(subs) {
            acc += add as f64 - sub as f64;
            *o = (acc * inv) as f32;
        }
    }
    for x in hi.max(1)..n {
        acc += src[last] as f64 - src[x.saturating_sub(r + 1).min(last)] as f64;
        out[x] = (acc * inv) as f32;
    }
}

impl Plane {
    /// A plane filled with `value`.
    pub fn new(width: u32, height: u32, value: f32) -> Self {
        Plane {
            width,
            height,
            data: vec![value; width as usize * height as usize],
        }
    }

    /// The value at (`x`, `y`); panics outside the plane.
    #[inline]
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// The value at (`x`, `y`) with the plane repeated in both directions (for textures).
    #[inline]
    pub fn get_tiled(&self, x: u32, y: u32) -> f32 {
        self.get(x % self.width, y % self.height)
    }

    /// The smallest and largest value (`(0, 0)` when empty).
    pub fn min_max(&self) -> (f32, f32) {
        if self.data.is_empty() {
            return (0.0, 0.0);
        }
        self.data
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
    }

    /// The mean value (0 when empty).
    pub fn mean(&self) -> f32 {
        if self.data.is_empty() {
            return 0.0;
        }
        (self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len() as f64) as f32
    }

    /// The smallest rectangle `(x0, y0, x1, y1)` (exclusive ends) holding every value above 0,
    /// or `None` when there is none; e.g. the area a [`face_mask`] covers.
    pub fn nonzero_bounds(&self) -> Option<(u32, u32, u32, u32)> {
        let w = self.width as usize;
        let mut bounds: Option<(usize, usize, usize, usize)> = None;
        for (y, row) in self.data.chunks_exact(w.max(1)).enumerate() {
            let Some(first) = row.iter().position(|&v| v > 0.0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v > 0.0).unwrap_or(first);
            bounds = Some(match bounds {
                None => (first, y, last + 1, y + 1),
                Some((x0, y0, x1, _)) => (x0.min(first), y0, x1.max(last + 1), y + 1),
            });
        }
        bounds.map(|(x0, y0, x1, y1)| (x0 as u32, y0 as u32, x1 as u32, y1 as u32))
    }

    /// Stretches the values linearly to `0.0..=1.0` (a constant plane becomes 0).
    pub fn normalize(&mut self) {
        let (lo, hi) = self.min_max();
        let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
        for v in &mut self.data {
            *v = (*v - lo) * scale;
        }
    }

    /// Applies `f` to every value.
    pub fn map(&mut self, f: impl Fn(f32) -> f32) {
        for v in &mut self.data {
            *v = f(*v);
        }
    }

    /// Combines every value with the matching value of `other` (same size) by `f`.
    pub fn zip_map(&mut self, other: &Plane, f: impl Fn(f32, f32) -> f32) {
        debug_assert_eq!(self.data.len(), other.data.len());
        for (v, &o) in self.data.iter_mut().zip(&other.data) {
            *v = f(*v, o);
        }
    }

    /// Mean over a `(2 * radius + 1)` square window, edges clamped. Separable with running
    /// sums: the cost does not depend on the radius.
    pub fn box_blur(&self, radius: u32) -> Plane {
        self.box_blur_xy(radius, radius)
    }

    /// Mean over a `(2 * rx + 1) x (2 * ry + 1)` window, edges clamped.
    pub fn box_blur_xy(&self, rx: u32, ry: u32) -> Plane {
        let (w, h) = (self.width as usize, self.height as usize);
        if w == 0 || h == 0 || (rx == 0 && ry == 0) {
            return self.clone();
        }
        // Horizontal pass, row by row.
        let mut tmp = vec![0.0f32; w * h];
        if rx == 0 {
            tmp.copy_from_slice(&self.data);
        } else {
            for (src, out) in self.data.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
                box_line(src, out, rx as usize);
            }
        }
        if ry == 0 {
            return Plane {
                width: self.width,
                height: self.height,
                data: tmp,
            };
        }
        // Vertical pass, still row-major: one running sum per column.
        let r = ry as usize;
        let last = h - 1;
        // f32 sums: the error stays far below 1e-4 at the sizes styles see, and the loops
        // vectorise twice as wide as with f64.
        let inv = 1.0 / (2 * r + 1) as f32;
        let mut acc = vec![0.0f32; w];
        for k in 0..=2 * r {
            let row = &tmp[k.saturating_sub(r).min(last) * w..][..w];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
        let mut out = vec![0.0f32; w * h];
        for y in 0..h {
            let dst = &mut out[y * w..(y + 1) * w];
            if y > 0 {
                let add = &tmp[(y + r).min(last) * w..][..w];
                let sub = &tmp[y.saturating_sub(r + 1).min(last) * w..][..w];
                for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
                    *a += p - m;
                }
            }
            for (d, &a) in dst.iter_mut().zip(&acc) {
                *d = a * inv;
            }
        }
        Plane {
            width: self.width,
            height: self.height,
            data: out,
        }
    }

    /// A Gaussian blur of standard deviation `sigma` pixels: an exact separable kernel for
    /// small sigmas (below 3), three box blurs (a close approximation at constant cost) above.
    pub fn gaussian_blur(&self, sigma: f32) -> Plane {
        if sigma <= 0.0 || self.data.is_empty() {
            return self.clone();
        }
        if sigma < 3.0 {
            return self.convolve_separable(&gaussian_kernel(sigma));
        }
        let r = box_radius_for_sigma(sigma);
        self.box_blur(r).box_blur(r).box_blur(r)
    }

    /// Convolves rows, then columns, with the symmetric odd-length `kernel` (edges clamped).
    fn convolve_separable(&self, kernel: &[f32]) -> Plane {
        let (w, h) = (self.width as usize, self.height as usize);
        let r = kernel.len() / 2;
        let mut tmp = vec![0.0f32; w * h];
        let mut padded = vec![0.0f32; w + 2 * r];
        for (src, out) in self.data.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
            for (i, p) in padded.iter_mut().enumerate() {
                *p = src[i.saturating_sub(r).min(w - 1)];
            }
            for (x, o) in out.iter_mut().enumerate() {
                *o = padded[x..x + kernel.len()]
                    .iter()
                    .zip(kernel)
                    .map(|(a, k)| a * k)
                    .sum();
            }
        }
        let mut out = vec![0.0f32; w * h];
        for y in 0..h {
            let dst = &mut out[y * w..(y + 1) * w];
            for (k, &kv) in kernel.iter().enumerate() {
                let sy = (y + k).saturating_sub(r).min(h - 1);
                for (d, &v) in dst.iter_mut().zip(&tmp[sy * w..(sy + 1) * w]) {
                    *d += kv * v;
                }
            }
        }
        Plane {
            width: self.width,
            height: self.height,
            data: out,
        }
    }

    /// Gradient magnitude by the Sobel operator (edges clamped), scaled so that a step from 0
    /// to 1 gives 1.
    pub fn sobel(&self) -> Plane {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = Plane::new(self.width, self.height, 0.0);
        if w == 0 || h == 0 {
            return out;
        }
        let d = &self.data;
        for y in 0..h {
            let up = &d[y.saturating_sub(1) * w..][..w];
            let mid = &d[y * w..][..w];
            let down = &d[(y + 1).min(h - 1) * w..][..w];
            let row = &mut out.data[y * w..][..w];
            for x in 0..w {
                let l = x.saturating_sub(1);
                let r = (x + 1).min(w - 1);
                let gx = (up[r] + 2.0 * mid[r] + down[r]) - (up[l] + 2.0 * mid[l] + down[l]);
                let gy = (down[l] + 2.0 * down[x] + down[r]) - (up[l] + 2.0 * up[x] + up[r]);
                row[x] = (gx * gx + gy * gy).sqrt() * 0.25;
            }
        }
        out
    }

    /// Edge-preserving smoothing of this plane guided by `guide` (same size): the guided filter
    /// of He et al. Flat areas of the guide (variance well below `eps`) are averaged over the
    /// `radius` window; edges (variance well above `eps`) are kept. `eps` is in squared value
    /// units, e.g. `0.01` keeps steps larger than about 0.1.
    pub fn guided_filter(&self, guide: &Plane, radius: u32, eps: f32) -> Plane {
        // Self-guided filtering (the common case) shares the guide's statistics.
        let same = std::ptr::eq(self, guide);
        let mean_i = guide.box_blur(radius);
        let mean_p_own = (!same).then(|| self.box_blur(radius));
        let mean_p = mean_p_own.as_ref().unwrap_or(&mean_i);
        let mut corr_ip = guide.clone();
        corr_ip.zip_map(self, |i, p| i * p);
        let corr_ip = corr_ip.box_blur(radius);
        let corr_ii = (!same).then(|| {
            let mut ii = guide.clone();
            ii.map(|i| i * i);
            ii.box_blur(radius)
        });
        // a = cov(I, p) / (var(I) + eps), in place of corr_ip; b = mean_p - a * mean_i.
        let mut a = corr_ip;
        let mut b = Plane::new(self.width, self.height, 0.0);
        for k in 0..a.data.len() {
            let mi = mean_i.data[k];
            let mp = mean_p.data[k];
            let cov = a.data[k] - mi * mp;
            let ii = corr_ii.as_ref().map_or(a.data[k], |c| c.data[k]);
            let var = (ii - mi * mi).max(0.0);
            let ak = cov / (var + eps);
            a.data[k] = ak;
            b.data[k] = mp - ak * mi;
        }
        drop((mean_i, mean_p_own, corr_ii));
        let a = a.box_blur(radius);
        let mut q = b.box_blur(radius);
        drop(b);
        for ((q, &a), &i) in q.data.iter_mut().zip(&a.data).zip(&guide.data) {
            *q += a * i;
        }
        q
    }

    /// Resamples to `width` x `height` with bilinear interpolation (pixel centres aligned).
    pub fn resize(&self, width: u32, height: u32) -> Plane {
        let mut out = Plane::new(width, height, 0.0);
        if self.data.is_empty() || width == 0 || height == 0 {
            return out;
        }
        let xs = resample_axis(self.width, width);
        let ys = resample_axis(self.height, height);
        let sw = self.width as usize;
        for (row, &(y0, y1, ty)) in out.data.chunks_exact_mut(width as usize).zip(&ys) {
            let r0 = &self.data[y0 * sw..][..sw];
            let r1 = &self.data[y1 * sw..][..sw];
            for (o, &(x0, x1, tx)) in row.iter_mut().zip(&xs) {
                let a = r0[x0] + (r0[x1] - r0[x0]) * tx;
                let b = r1[x0] + (r1[x1] - r1[x0]) * tx;
                *o = a + (b - a) * ty;
            }
        }
        out
    }

    /// Reads a binary greyscale PGM (`P5`, 8-bit, header comments allowed); values become
    /// `0.0..=1.0`.
    pub fn from_pgm(bytes: &[u8]) -> Result<Plane, String> {
        let mut pos = 0;
        let mut fields = [0u32; 3];
        if bytes.get(..2) != Some(b"P5") {
            return Err("not a binary PGM (no P5 magic)".to_string());
        }
        pos += 2;
        for field in &mut fields {
            // Whitespace and comments before each number.
            loop {
                match bytes.get(pos) {
                    Some(c) if c.is_ascii_whitespace() => pos += 1,
                    Some(b'#') => {
                        while bytes.get(pos).is_some_and(|&c| c != b'\n') {
                            pos += 1;
                        }
                    }
                    _ => break,
                }
            }
            let start = pos;
            while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            *field = std::str::from_utf8(&bytes[start..pos])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("malformed PGM header")?;
        }
        let [width, height, maxval] = fields;
        if width == 0 || height == 0 || maxval == 0 || maxval > 255 {
            return Err(format!(
                "unsupported PGM: {width} x {height}, maxval {maxval}"
            ));
        }
        if !bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
            return Err("malformed PGM header".to_string());
        }
        pos += 1;
        let n = width as usize * height as usize;
        let pixels = bytes
            .get(pos..pos + n)
            .ok_or("PGM pixel data is too short")?;
        let scale = 1.0 / maxval as f32;
        Ok(Plane {
            width,
            height,
            data: pixels.iter().map(|&p| p as f32 * scale).collect(),
        })
    }

    /// Writes the plane as a binary greyscale PGM (`P5`, maxval 255), values clamped.
    pub fn to_pgm(&self) -> Vec<u8> {
        let mut out = format!("P5\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend(self.data.iter().map(|&v| to_byte(v)));
        out
    }
}

/// A normalised Gaussian kernel of `sigma`, radius `ceil(3 * sigma)`.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i32;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// A soft mask of the faces of `analysis`, drawn on a `width` x `height` image (coordinates
/// scale from the analysed size): 1 inside an ellipse a little larger than each face box,
/// fading to 0 over a third of the box size. Styles use it to treat faces more gently.
pub fn face_mask(width: u32, height: u32, analysis: &Analysis) -> Plane {
    let mut mask = Plane::new(width, height, 0.0);
    if analysis.width == 0 || analysis.height == 0 {
        return mask;
    }
    let (sx, sy) = (
        width as f32 / analysis.width as f32,
        height as f32 / analysis.height as f32,
    );
    for face in &analysis.faces {
        let b = &face.bbox;
        let (cx, cy) = ((b.x1 + b.x2) * 0.5 * sx, (b.y1 + b.y2) * 0.5 * sy);
        // Semi-axes: the box grown by 15%, with hair and chin.
        let ax = ((b.x2 - b.x1) * 0.5 * sx * 1.15).max(1.0);
        let ay = ((b.y2 - b.y1) * 0.5 * sy * 1.15).max(1.0);
        let fade = 1.35f32; // the mask reaches 0 at 1.35 times the semi-axes
        let y0 = ((cy - ay * fade).floor().max(0.0) as u32).min(height);
        let y1 = ((cy + ay * fade).ceil().max(0.0) as u32).min(height);
        let x0 = ((cx - ax * fade).floor().max(0.0) as u32).min(width);
        let x1 = ((cx + ax * fade).ceil().max(0.0) as u32).min(width);
        for y in y0..y1 {
            let dy = (y as f32 + 0.5 - cy) / ay;
            let row = &mut mask.data[(y * width) as usize..][..width as usize];
            for (x, m) in row
                .iter_mut()
                .enumerate()
                .take(x1 as usize)
                .skip(x0 as usize)
            {
                let dx = (x as f32 + 0.5 - cx) / ax;
                let d = (dx * dx + dy * dy).sqrt();
                let t = ((fade - d) / (fade - 1.0)).clamp(0.0, 1.0);
                *m = m.max(t * t * (3.0 - 2.0 * t));
            }
        }
    }
    mask
}

/// The box radius whose triple application approximates a Gaussian of `sigma`.
fn box_radius_for_sigma(sigma: f32) -> u32 {
    if sigma <= 0.0 {
        return 0;
    }
    let w = (4.0 * sigma * sigma + 1.0).sqrt();
    (((w - 1.0) * 0.5).round() as u32).max(1)
}

/// For each output coordinate: the two source indices and the weight of the second.
fn resample_axis(src: u32, dst: u32) -> Vec<(usize, usize, f32)> {
    let scale = src as f32 / dst as f32;
    let last = src as usize - 1;
    (0..dst)
        .map(|i| {
            let f = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (f.floor() as usize).min(last);
            (i0, (i0 + 1).min(last), f - i0 as f32)
        })
        .collect()
}

/// The nearest colour of `palette` to (`r`, `g`, `b`) by the "redmean" weighted distance (a
/// cheap approximation of perceived difference); its index.
#[inline]
pub fn nearest_color(palette: &[Color], r: i32, g: i32, b: i32) -> usize {
    let mut best = 0;
    let mut best_d = i64::MAX;
    for (i, c) in palette.iter().enumerate() {
        let rmean = (r + c[0] as i32) / 2;
        let dr = (r - c[0] as i32) as i64;
        let dg = (g - c[1] as i32) as i64;
        let db = (b - c[2] as i32) as i64;
        let d = (((512 + rmean as i64) * dr * dr) >> 8)
            + 4 * dg * dg
            + (((767 - rmean as i64) * db * db) >> 8);
        if d < best_d {
            best_d = d;
            best = i;
        }
    }
    best
}

/// The 4 x 4 Bayer matrix, values 0..16.
const BAYER4: [[u8; 4]; 4] = [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]];

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
    /// 4`; otherwise [`StyleError::UnusableInput`].
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<Self, StyleError> {
        if width == 0 || height == 0 {
            return Err(StyleError::UnusableInput(format!(
                "the image is empty ({width} x {height} pixels)"
            )));
        }
        let expected = (width as u128) * (height as u128) * 4;
        if data.len() as u128 != expected {
            return Err(StyleError::UnusableInput(format!(
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

    /// Checks a WIT image (see [`Rgba::from_raw`]).
    pub fn from_image(image: Image) -> Result<Self, StyleError> {
        Self::from_raw(image.width, image.height, image.rgba)
    }

    /// The WIT image.
    pub fn into_image(self) -> Image {
        Image {
            width: self.width,
            height: self.height,
            rgba: self.data,
        }
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
        let lut = unit_lut();
        let data = self
            .data
            .chunks_exact(4)
            .map(|p| lut[luma_u8(p[0], p[1], p[2]) as usize])
            .collect();
        Plane {
            width: self.width,
            height: self.height,
            data,
        }
    }

    /// The red, green and blue channels as planes of `0.0..=1.0`.
    pub fn to_planes(&self) -> [Plane; 3] {
        let lut = unit_lut();
        let n = self.pixel_count();
        let (mut r, mut g, mut b) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for (((p, r), g), b) in self
            .data
            .chunks_exact(4)
            .zip(&mut r)
            .zip(&mut g)
            .zip(&mut b)
        {
            *r = lut[p[0] as usize];
            *g = lut[p[1] as usize];
            *b = lut[p[2] as usize];
        }
        [r, g, b].map(|data| Plane {
            width: self.width,
            height: self.height,
            data,
        })
    }

    /// Replaces red, green and blue by `planes` (same size, `0.0..=1.0`, clamped); alpha stays.
    pub fn set_planes(&mut self, planes: &[Plane; 3]) {
        let [r, g, b] = planes;
        for (((p, &r), &g), &b) in self
            .data
            .chunks_exact_mut(4)
            .zip(&r.data)
            .zip(&g.data)
            .zip(&b.data)
        {
            p[0] = to_byte(r);
            p[1] = to_byte(g);
            p[2] = to_byte(b);
        }
    }

    /// An image of the same size and alpha with the colours of `planes`.
    pub fn with_planes(&self, planes: &[Plane; 3]) -> Rgba {
        let mut out = self.clone();
        out.set_planes(planes);
        out
    }

    /// Box blur of radius `radius` on the colour channels.
    pub fn box_blur(&self, radius: u32) -> Rgba {
        self.with_planes(&self.to_planes().map(|p| p.box_blur(radius)))
    }

    /// Approximate Gaussian blur of `sigma` pixels on the colour channels.
    pub fn gaussian_blur(&self, sigma: f32) -> Rgba {
        self.with_planes(&self.to_planes().map(|p| p.gaussian_blur(sigma)))
    }

    /// Gradient magnitude of the luma (Sobel), `0.0..` with 1 for a black-to-white step.
    pub fn edges(&self) -> Plane {
        self.luma().sobel()
    }

    /// Edge-preserving smoothing: each colour channel through the [`Plane::guided_filter`],
    /// guided by itself.
    pub fn guided_smooth(&self, radius: u32, eps: f32) -> Rgba {
        self.with_planes(&self.to_planes().map(|p| p.guided_filter(&p, radius, eps)))
    }

    /// Edge-preserving smoothing with a painterly, blocky-free look: a soft Kuwahara filter.
    /// For each pixel the four overlapping `(2 * radius + 1)` squares whose corners meet at it
    /// are averaged, each weighted by how flat (low luma variance) it is, so that regions stay
    /// flat and edges stay sharp. `sharpness` (1..) sets how strongly the flattest square wins.
    pub fn kuwahara(&self, radius: u32, sharpness: f32) -> Rgba {
        if radius == 0 {
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
            let var = (*wv - m * m).max(0.0);
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
        for y in 0..h {
            let rows = [y.saturating_sub(d) * w, (y + d).min(h - 1) * w];
            for x in 0..w {
                let cols = [x.saturating_sub(d), (x + d).min(w - 1)];
                let (mut sw, mut sr, mut sg, mut sb) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                for row in rows {
                    for col in cols {
                        let i = row + col;
                        sw += weight.data[i];
                        sr += weighted[0].data[i];
                        sg += weighted[1].data[i];
                        sb += weighted[2].data[i];
                    }
                }
                let o = (y * w + x) * 4;
                let inv = 1.0 / sw;
                out.data[o] = to_byte(sr * inv);
                out.data[o + 1] = to_byte(sg * inv);
                out.data[o + 2] = to_byte(sb * inv);
            }
        }
        out
    }

    /// Reduces each colour channel to `levels` evenly spaced values (2..=255; fewer is flatter).
    pub fn posterize(&mut self, levels: u8) {
        let steps = levels.max(2) as u32 - 1;
        let mut lut = [0u8; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            let q = (i as u32 * steps + 127) / 255;
            *v = ((q * 255 + steps / 2) / steps) as u8;
        }
        self.apply_lut(&lut);
    }

    /// Maps every colour byte through `lut`; alpha stays.
    pub fn apply_lut(&mut self, lut: &[u8; 256]) {
        for p in self.data.chunks_exact_mut(4) {
            p[0] = lut[p[0] as usize];
            p[1] = lut[p[1] as usize];
            p[2] = lut[p[2] as usize];
        }
    }

    /// Replaces every colour by the nearest colour of `palette` ([`nearest_color`]). Runs of
    /// equal pixels (as after [`Rgba::pixelate`]) are looked up once. An empty palette leaves
    /// the image as it is.
    pub fn quantize(&mut self, palette: &[Color]) {
        self.quantize_dithered(palette, 0.0);
    }

    /// Like [`Rgba::quantize`], with ordered (4 x 4 Bayer) dithering of `strength` (0: none;
    /// 1: a spread of about a quarter of the full range, enough for 4-colour palettes) to render
    /// gradients with few colours.
    pub fn quantize_dithered(&mut self, palette: &[Color], strength: f32) {
        if palette.is_empty() {
            return;
        }
        let spread = (strength.max(0.0) * 64.0) as i32;
        let w = self.width as usize;
        let mut last: Option<([i32; 3], usize)> = None;
        for (i, p) in self.data.chunks_exact_mut(4).enumerate() {
            let offset = if spread == 0 {
                0
            } else {
                let (x, y) = (i % w, i / w);
                (BAYER4[y & 3][x & 3] as i32 * 2 - 15) * spread / 32
            };
            let key = [
                p[0] as i32 + offset,
                p[1] as i32 + offset,
                p[2] as i32 + offset,
            ];
            let index = match last {
                Some((k, idx)) if k == key => idx,
                _ => {
                    let idx = nearest_color(palette, key[0], key[1], key[2]);
                    last = Some((key, idx));
                    idx
                }
            };
            let c = palette[index];
            p[0] = c[0];
            p[1] = c[1];
            p[2] = c[2];
        }
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

    /// Scales the saturation: 0 greys the image, 1 keeps it, above 1 strengthens colours
    /// (moving each channel away from the pixel's luma).
    pub fn saturate(&mut self, factor: f32) {
        let f = (factor.max(0.0) * 256.0) as i32;
        for p in self.data.chunks_exact_mut(4) {
            let l = luma_u8(p[0], p[1], p[2]) as i32;
            for c in &mut p[..3] {
                *c = (l + (((*c as i32 - l) * f) >> 8)).clamp(0, 255) as u8;
            }
        }
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

impl TryFrom<Image> for Rgba {
    type Error = StyleError;

    fn try_from(image: Image) -> Result<Self, StyleError> {
        Rgba::from_image(image)
    }
}

impl From<Rgba> for Image {
    fn from(rgba: Rgba) -> Image {
        rgba.into_image()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Rgba {
        let mut img = Rgba::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let i = ((y * w + x) * 4) as usize;
                img.data[i] = (x * 255 / (w - 1).max(1)) as u8;
                img.data[i + 1] = (y * 255 / (h - 1).max(1)) as u8;
                img.data[i + 2] = ((x + y) % 256) as u8;
                img.data[i + 3] = 200;
            }
        }
        img
    }

    #[test]
    fn image_validation() {
        let ok = Image {
            width: 2,
            height: 3,
            rgba: vec![0; 24],
        };
        let rgba = Rgba::try_from(ok).unwrap();
        assert_eq!((rgba.width, rgba.height), (2, 3));
        let back: Image = rgba.into();
        assert_eq!(back.rgba.len(), 24);
        for (w, h, len) in [
            (0, 3, 0),
            (2, 0, 0),
            (2, 3, 23),
            (2, 3, 25),
            (u32::MAX, u32::MAX, 4),
        ] {
            match Rgba::from_image(Image {
                width: w,
                height: h,
                rgba: vec![0; len],
            }) {
                Err(StyleError::UnusableInput(m)) => assert!(!m.is_empty()),
                other => panic!("{w}x{h} {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn box_blur_keeps_constants_and_means() {
        let mut p = Plane::new(17, 9, 0.25);
        assert!(p.box_blur(4).data.iter().all(|v| (v - 0.25).abs() < 1e-6));
        // A single bright pixel spreads evenly over the window.
        p.data.iter_mut().for_each(|v| *v = 0.0);
        p.data[4 * 17 + 8] = 9.0;
        let b = p.box_blur(1);
        assert!((b.get(8, 4) - 1.0).abs() < 1e-6);
        assert!((b.get(7, 3) - 1.0).abs() < 1e-6);
        assert!(b.get(6, 4).abs() < 1e-6);
        // Radii larger than the plane clamp to the edge values.
        let b = p.box_blur(100);
        assert!(b.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn box_blur_matches_naive() {
        let img = gradient(23, 11);
        let l = img.luma();
        for (rx, ry) in [(3i64, 2i64), (1, 0), (0, 1), (11, 5), (12, 6), (30, 40)] {
            let fast = l.box_blur_xy(rx as u32, ry as u32);
            let n = ((2 * rx + 1) * (2 * ry + 1)) as f32;
            for y in 0..11i64 {
                for x in 0..23i64 {
                    let mut s = 0.0;
                    for dy in -ry..=ry {
                        for dx in -rx..=rx {
                            s += l.get((x + dx).clamp(0, 22) as u32, (y + dy).clamp(0, 10) as u32);
                        }
                    }
                    let got = fast.get(x as u32, y as u32);
                    assert!(
                        (got - s / n).abs() < 1e-5,
                        "r {rx},{ry} at {x},{y}: {got} vs {}",
                        s / n
                    );
                }
            }
        }
    }

    #[test]
    fn gaussian_blur_is_normalised_and_ordered() {
        let mut p = Plane::new(81, 81, 0.0);
        p.data[40 * 81 + 40] = 1.0;
        for sigma in [0.5, 1.0, 1.5, 2.5, 4.0, 8.0] {
            let b = p.gaussian_blur(sigma);
            let total: f32 = b.data.iter().sum();
            assert!((total - 1.0).abs() < 1e-3, "{sigma}: {total}");
        }
        // A wider blur spreads a point further: the centre gets lower.
        let c = |s: f32| p.gaussian_blur(s).get(40, 40);
        assert!(c(0.8) > c(1.2) && c(1.2) > c(2.0) && c(2.0) > c(4.0));
    }

    #[test]
    fn sobel_finds_a_step() {
        let mut p = Plane::new(8, 4, 0.0);
        for y in 0..4 {
            for x in 4..8 {
                p.data[y * 8 + x] = 1.0;
            }
        }
        let e = p.sobel();
        assert!((e.get(3, 1) - 1.0).abs() < 1e-6);
        assert!((e.get(4, 1) - 1.0).abs() < 1e-6);
        assert_eq!(e.get(0, 1), 0.0);
        assert_eq!(e.get(7, 2), 0.0);
    }

    #[test]
    fn guided_filter_smooths_noise_and_keeps_steps() {
        let mut p = Plane::new(40, 10, 0.0);
        for y in 0..10 {
            for x in 0..40 {
                let noise = if (x + y) % 2 == 0 { 0.02 } else { -0.02 };
                p.data[y * 40 + x] = if x < 20 { 0.2 } else { 0.8 } + noise;
            }
        }
        let q = p.guided_filter(&p, 3, 0.01);
        // A separate but equal guide takes the general path and gives the same result.
        let general = p.guided_filter(&p.clone(), 3, 0.01);
        for (a, b) in q.data.iter().zip(&general.data) {
            assert!((a - b).abs() < 1e-5);
        }
        assert!((q.get(5, 5) - 0.2).abs() < 0.01);
        assert!((q.get(35, 5) - 0.8).abs() < 0.01);
        assert!(q.get(19, 5) < 0.3 && q.get(20, 5) > 0.7);
    }

    #[test]
    fn posterize_uses_the_levels() {
        let mut img = gradient(64, 4);
        img.posterize(3);
        for p in img.data.chunks_exact(4) {
            for c in &p[..3] {
                assert!([0, 128, 255].contains(c), "{c}");
            }
            assert_eq!(p[3], 200);
        }
    }

    #[test]
    fn quantize_maps_to_the_nearest_palette_colour() {
        let palette = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]];
        let mut img = Rgba::new(5, 1);
        let colours = [
            [10, 10, 10],
            [240, 250, 230],
            [200, 40, 30],
            [20, 30, 180],
            [255, 0, 0],
        ];
        for (p, c) in img.data.chunks_exact_mut(4).zip(colours) {
            p[..3].copy_from_slice(&c);
        }
        img.quantize(&palette);
        let got: Vec<[u8; 3]> = img
            .data
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        assert_eq!(
            got,
            vec![
                [0, 0, 0],
                [255, 255, 255],
                [255, 0, 0],
                [0, 0, 255],
                [255, 0, 0]
            ]
        );
        // Every palette colour maps to itself, dithered or not.
        let mut img = gradient(32, 32);
        img.quantize_dithered(&palette, 1.0);
        for p in img.data.chunks_exact(4) {
            assert!(palette.contains(&[p[0], p[1], p[2]]));
            assert_eq!(p[3], 200);
        }
    }

    #[test]
    fn pixelate_makes_flat_blocks() {
        let mut img = gradient(30, 21);
        img.pixelate(8);
        assert_eq!(
            (img.width, img.height, img.data.len()),
            (30, 21, 30 * 21 * 4)
        );
        for y in 0..21 {
            for x in 0..30 {
                assert_eq!(img.pixel(x, y), img.pixel(x / 8 * 8, y / 8 * 8));
            }
        }
        // The first block's red is the rounded mean of the ramp's first 8 values.
        let sum: u32 = (0..8).map(|x| x * 255 / 29).sum();
        assert_eq!(img.pixel(0, 0)[0] as u32, (sum + 4) / 8);
        // The last, partial block (x 24..30, y 16..21) averages what it covers.
        let green: u32 = (16..21).map(|y| y * 255 / 20).sum();
        assert_eq!(img.pixel(29, 20)[1] as u32, (green * 6 + 15) / 30);
    }

    #[test]
    fn saturate_blend_multiply() {
        let mut img = Rgba::new(1, 1);
        img.data[..3].copy_from_slice(&[200, 100, 50]);
        let mut grey = img.clone();
        grey.saturate(0.0);
        let l = luma_u8(200, 100, 50);
        assert_eq!(&grey.data[..3], &[l, l, l]);
        let mut vivid = img.clone();
        vivid.saturate(1.5);
        assert!(vivid.data[0] > 200 && vivid.data[2] < 50);
        let mut b = img.clone();
        b.blend(&grey, 1.0);
        assert_eq!(&b.data[..3], &[l, l, l]);
        let mut m = img.clone();
        let mut white = Rgba::new(1, 1);
        white.data[..3].copy_from_slice(&[255, 255, 255]);
        m.multiply(&white);
        assert_eq!(m, img);
    }

    #[test]
    fn kuwahara_and_smoothing_keep_size_and_alpha() {
        let img = gradient(37, 29);
        for out in [
            img.kuwahara(4, 1.0),
            img.guided_smooth(3, 0.01),
            img.gaussian_blur(2.0),
        ] {
            assert_eq!((out.width, out.height), (37, 29));
            assert!(out.data.chunks_exact(4).all(|p| p[3] == 200));
        }
    }

    #[test]
    fn face_mask_covers_faces_softly() {
        use crate::testing::portrait;
        let analysis = portrait(300, 300); // face box 100..200
        let mask = face_mask(600, 600, &analysis); // twice the analysed size
        assert_eq!(mask.get(300, 300), 1.0);
        assert_eq!(mask.get(300, 200), 1.0);
        assert_eq!(mask.get(0, 0), 0.0);
        assert_eq!(mask.get(300, 560), 0.0);
        let edge = mask.get(300, 160);
        assert!(edge > 0.0 && edge < 1.0, "{edge}");
        let none = face_mask(
            10,
            10,
            &crate::Analysis {
                width: 10,
                height: 10,
                faces: Vec::new(),
            },
        );
        assert!(none.data.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn displace_shifts_and_clamps() {
        let img = gradient(20, 10);
        let zero = Plane::new(20, 10, 0.0);
        assert_eq!(img.displace(&zero, &zero), img);
        let one = Plane::new(20, 10, 1.0);
        let shifted = img.displace(&one, &zero);
        assert_eq!(shifted.pixel(3, 4), img.pixel(4, 4));
        assert_eq!(shifted.pixel(19, 4), img.pixel(19, 4));
        let half = Plane::new(20, 10, 0.5);
        let between = img.displace(&zero, &half);
        let (a, b) = (img.pixel(5, 2)[1] as i32, img.pixel(5, 3)[1] as i32);
        assert!((between.pixel(5, 2)[1] as i32 - (a + b) / 2).abs() <= 1);
    }

    #[test]
    fn crop_and_bounds() {
        let img = gradient(20, 10);
        let c = img.crop(5, 2, 4, 3);
        assert_eq!((c.width, c.height), (4, 3));
        assert_eq!(c.pixel(0, 0), img.pixel(5, 2));
        assert_eq!(c.pixel(3, 2), img.pixel(8, 4));
        let edge = img.crop(18, 8, 10, 10);
        assert_eq!((edge.width, edge.height), (2, 2));
        let mut p = Plane::new(10, 8, 0.0);
        assert_eq!(p.nonzero_bounds(), None);
        p.data[2 * 10 + 7] = 0.5;
        p.data[5 * 10 + 3] = 1.0;
        assert_eq!(p.nonzero_bounds(), Some((3, 2, 8, 6)));
    }

    #[test]
    fn pgm_round_trip() {
        let mut p = Plane::new(5, 3, 0.0);
        for (i, v) in p.data.iter_mut().enumerate() {
            *v = i as f32 / 14.0;
        }
        let bytes = p.to_pgm();
        let q = Plane::from_pgm(&bytes).unwrap();
        assert_eq!((q.width, q.height), (5, 3));
        for (a, b) in p.data.iter().zip(&q.data) {
            assert!((a - b).abs() < 0.003);
        }
        let commented = b"P5\n# made by hand\n2 1\n# max\n255\n\x00\xff";
        assert_eq!(Plane::from_pgm(commented).unwrap().data, vec![0.0, 1.0]);
        assert!(Plane::from_pgm(b"P2\n1 1\n255\n0").is_err());
        assert!(Plane::from_pgm(b"P5\n2 2\n255\n\x00").is_err());
    }

    #[test]
    fn resize_and_downsample() {
        let img = gradient(10, 10);
        let empty = Rgba::new(0, 0);
        assert_eq!(empty.resize(3, 3).data.len(), 36);
        assert_eq!(empty.downsample(4).data.len(), 0);
        assert_eq!(img.resize(0, 5).data.len(), 0);
        assert_eq!(empty.kuwahara(3, 1.0).data.len(), 0);
        assert_eq!(empty.guided_smooth(3, 0.01).data.len(), 0);
        let big = img.resize(20, 15);
        assert_eq!(big.data.len(), 20 * 15 * 4);
        let small = img.downsample(4);
        assert_eq!((small.width, small.height), (3, 3));
        let up = small.upscale_nearest(4, 10, 10);
        assert_eq!(up.data.len(), 400);
        let p = img.luma().resize(5, 5);
        assert_eq!(p.data.len(), 25);
    }
}

#[cfg(test)]
mod timings {
    use super::*;

    /// Prints each filter's time on 1024 x 1024 (`cargo test --release -p likeness-sdk --
    /// --ignored --nocapture filter_timings`).
    #[test]
    #[ignore]
    fn filter_timings() {
        let img = crate::testing::photo(1024, 1024);
        let luma = img.luma();
        let zero = Plane::new(1024, 1024, 0.3);
        let time = |name: &str, f: &dyn Fn()| {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = std::time::Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            }
            println!("{name:>24}: {best:6.1} ms");
        };
        time("to_planes", &|| drop(std::hint::black_box(img.to_planes())));
        time("luma", &|| drop(std::hint::black_box(img.luma())));
        time("plane box_blur r8", &|| {
            drop(std::hint::black_box(luma.box_blur(8)))
        });
        time("plane gaussian s2", &|| {
            drop(std::hint::black_box(luma.gaussian_blur(2.0)))
        });
        time("plane gaussian s6", &|| {
            drop(std::hint::black_box(luma.gaussian_blur(6.0)))
        });
        time("plane guided r8", &|| {
            drop(std::hint::black_box(luma.guided_filter(&luma, 8, 0.01)))
        });
        time("sobel", &|| drop(std::hint::black_box(luma.sobel())));
        time("rgba guided_smooth r8", &|| {
            drop(std::hint::black_box(img.guided_smooth(8, 0.01)))
        });
        time("rgba kuwahara r7", &|| {
            drop(std::hint::black_box(img.kuwahara(7, 8.0)))
        });
        time("rgba gaussian s2.5", &|| {
            drop(std::hint::black_box(img.gaussian_blur(2.5)))
        });
        time("rgba displace", &|| {
            drop(std::hint::black_box(img.displace(&zero, &zero)))
        });
        time("fractal noise 3 oct", &|| {
            drop(std::hint::black_box(crate::noise::fractal_noise(
                1024, 1024, 90.0, 3, 1, false,
            )))
        });
        time("pixelate 8", &|| {
            let mut c = img.clone();
            c.pixelate(8);
            std::hint::black_box(c);
        });
        time("quantize 16", &|| {
            let mut c = img.clone();
            c.quantize(&[
                [0, 0, 0],
                [255, 255, 255],
                [255, 0, 0],
                [0, 255, 0],
                [0, 0, 255],
                [9, 9, 9],
                [10, 20, 30],
                [40, 50, 60],
                [70, 80, 90],
                [100, 110, 120],
                [130, 140, 150],
                [160, 170, 180],
                [190, 200, 210],
                [220, 230, 240],
                [250, 10, 20],
                [30, 40, 50],
            ]);
            std::hint::black_box(c);
        });
    }
}
