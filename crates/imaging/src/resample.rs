//! Resampling to any size: Lanczos 3 (antialiased when shrinking) or nearest neighbour.
//!
//! The Lanczos path is a separable convolution in the manner of Pillow's `Image.resize`: the
//! kernel is widened by the scale factor when shrinking (so it averages instead of aliasing),
//! cut at the borders and renormalised, applied in 22-bit fixed point, horizontally and then
//! vertically through an 8-bit intermediate. Images with any transparency are resampled with
//! premultiplied alpha, so transparent pixels do not bleed their colour.

use crate::Rgba;

/// How [`Rgba::resample`] computes each output pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Lanczos 3: sharp, antialiased; for photos.
    Lanczos3,
    /// The source pixel under the output pixel's centre: hard edges; for pixel art and masks.
    Nearest,
}

/// Fixed-point precision of the Lanczos weights (Pillow's: 32 - 8 - 2 bits).
const PRECISION_BITS: u32 = 22;

/// Lanczos 3 lobes.
const SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / SUPPORT)
    } else {
        0.0
    }
}

/// The taps of one axis: for each output index the first source index, and `ksize` fixed-point
/// weights (zero past the tap count).
struct Taps {
    first: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Taps {
        let scale = src as f64 / dst as f64;
        let filter_scale = scale.max(1.0);
        let support = SUPPORT * filter_scale;
        let inverse = 1.0 / filter_scale;
        let ksize = (support.ceil() as usize * 2 + 1).min(src + 1);
        let mut taps = Taps {
            first: Vec::with_capacity(dst),
            count: Vec::with_capacity(dst),
            ksize,
            weights: vec![0; dst * ksize],
        };
        let mut k = vec![0.0f64; ksize];
        for (i, out) in taps.weights.chunks_exact_mut(ksize).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            let first = ((center - support + 0.5).max(0.0) as usize).min(src - 1);
            let end = ((center + support + 0.5) as usize).clamp(first + 1, src);
            let n = (end - first).min(ksize);
            let mut total = 0.0;
            for (x, w) in k[..n].iter_mut().enumerate() {
                *w = lanczos(((first + x) as f64 - center + 0.5) * inverse);
                total += *w;
            }
            let unit = (1u32 << PRECISION_BITS) as f64;
            for (o, &w) in out.iter_mut().zip(&k[..n]) {
                let w = if total != 0.0 { w / total } else { w };
                *o = if w < 0.0 {
                    (w * unit - 0.5) as i32
                } else {
                    (w * unit + 0.5) as i32
                };
            }
            taps.first.push(first);
            taps.count.push(n);
        }
        taps
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        let w = &self.weights[i * self.ksize..][..self.count[i]];
        (self.first[i], w)
    }
}

/// A fixed-point sum back to a byte.
#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The rounding offset every fixed-point sum starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resamples rows of `width` pixels to `out_width`.
fn horizontal(data: &[u8], width: usize, out_width: usize) -> Vec<u8> {
    let taps = Taps::new(width, out_width);
    let rows = data.len() / (width * 4);
    let mut out = vec![0u8; rows * out_width * 4];
    for (src, dst) in data
        .chunks_exact(width * 4)
        .zip(out.chunks_exact_mut(out_width * 4))
    {
        for (x, p) in dst.chunks_exact_mut(4).enumerate() {
            let (first, weights) = taps.of(x);
            let mut sum = [HALF; 4];
            for (s, &w) in src[first * 4..].chunks_exact(4).zip(weights) {
                for c in 0..4 {
                    sum[c] += s[c] as i32 * w;
                }
            }
            for c in 0..4 {
                p[c] = clip8(sum[c]);
            }
        }
    }
    out
}

/// Resamples `height` rows of `width` pixels to `out_height` rows.
fn vertical(data: &[u8], width: usize, height: usize, out_height: usize) -> Vec<u8> {
    let taps = Taps::new(height, out_height);
    let stride = width * 4;
    let mut out = vec![0u8; out_height * stride];
    let mut sum = vec![0i32; stride];
    for (y, dst) in out.chunks_exact_mut(stride).enumerate() {
        let (first, weights) = taps.of(y);
        sum.iter_mut().for_each(|s| *s = HALF);
        for (k, &w) in weights.iter().enumerate() {
            let row = &data[(first + k) * stride..][..stride];
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v as i32 * w;
            }
        }
        for (d, &s) in dst.iter_mut().zip(&sum) {
            *d = clip8(s);
        }
    }
    out
}

/// `v * alpha / 255`, rounded, as Pillow premultiplies.
#[inline]
fn mul_div_255(v: u8, alpha: u8) -> u8 {
    let t = v as u32 * alpha as u32 + 128;
    (((t >> 8) + t) >> 8) as u8
}

impl Rgba {
    /// This image resampled to `width` x `height` with `filter`; an empty image when either
    /// side is 0.
    pub fn resample(&self, width: u32, height: u32, filter: Filter) -> Rgba {
        if width == 0 || height == 0 || self.data.is_empty() {
            return Rgba {
                width: 0,
                height: 0,
                data: Vec::new(),
            };
        }
        let data = match filter {
            Filter::Nearest => self.nearest(width as usize, height as usize),
            Filter::Lanczos3 => self.lanczos(width as usize, height as usize),
        };
        Rgba {
            width,
            height,
            data,
        }
    }

    /// Nearest neighbour as Pillow computes it: the source coordinate of each output pixel's
    /// centre, stepped along the axis in `f64` and floored.
    fn nearest(&self, width: usize, height: usize) -> Vec<u8> {
        let (sw, sh) = (self.width as usize, self.height as usize);
        let indices = |src: usize, dst: usize| {
            let scale = src as f64 / dst as f64;
            let mut at = scale * 0.5;
            (0..dst)
                .map(|_| {
                    let i = (at.floor().max(0.0) as usize).min(src - 1);
                    at += scale;
                    i
                })
                .collect::<Vec<usize>>()
        };
        let (xs, ys) = (indices(sw, width), indices(sh, height));
        let mut out = vec![0u8; width * height * 4];
        for (row, &sy) in out.chunks_exact_mut(width * 4).zip(&ys) {
            let src = &self.data[sy * sw * 4..][..sw * 4];
            for (p, &sx) in row.chunks_exact_mut(4).zip(&xs) {
                p.copy_from_slice(&src[sx * 4..sx * 4 + 4]);
            }
        }
        out
    }

    fn lanczos(&self, width: usize, height: usize) -> Vec<u8> {
        let (sw, sh) = (self.width as usize, self.height as usize);
        let transparent = self.data.chunks_exact(4).any(|p| p[3] != 255);
        let mut data = if transparent {
            let mut premultiplied = self.data.clone();
            for p in premultiplied.chunks_exact_mut(4) {
                for c in 0..3 {
                    p[c] = mul_div_255(p[c], p[3]);
                }
            }
            premultiplied
        } else {
            self.data.clone()
        };
        if width != sw {
            data = horizontal(&data, sw, width);
        }
        if height != sh {
            data = vertical(&data, width, sh, height);
        }
        if transparent {
            for p in data.chunks_exact_mut(4) {
                let a = p[3] as u32;
                if a != 0 && a != 255 {
                    for v in &mut p[..3] {
                        *v = (255 * *v as u32 / a).min(255) as u8;
                    }
                }
            }
        }
        data
    }
}
