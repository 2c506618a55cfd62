//! OpenCV-compatible `INTER_AREA` resampling (what the MTCNN reference uses), separable, on
//! interleaved 3-channel f32 buffers.
//!
//! Shrinking on both axes uses exact area weights (OpenCV's `computeResizeAreaTab`); otherwise
//! OpenCV's "area mode" bilinear coefficients are used on each axis.

use image::RgbImage;

use crate::simd::with_avx2;

/// Source pixel types the area resize reads.
pub(crate) trait Sample: Copy {
    /// `acc[i] += w * row[i]`.
    fn accumulate(acc: &mut [f32], row: &[Self], w: f32);
}

impl Sample for u8 {
    fn accumulate(acc: &mut [f32], row: &[u8], w: f32) {
        acc_u8(acc, row, w)
    }
}

impl Sample for f32 {
    fn accumulate(acc: &mut [f32], row: &[f32], w: f32) {
        acc_f32(acc, row, w)
    }
}

with_avx2!(acc_u8(acc: &mut [f32], row: &[u8], w: f32) {
    for (a, s) in acc.iter_mut().zip(row) {
        *a += w * f32::from(*s);
    }
});

with_avx2!(acc_f32(acc: &mut [f32], row: &[f32], w: f32) {
    for (a, s) in acc.iter_mut().zip(row) {
        *a += w * *s;
    }
});

/// Taps for one destination index: (source index, weight).
type Taps = Vec<(usize, f32)>;

fn area_taps(ssize: usize, dsize: usize) -> Vec<Taps> {
    let scale = ssize as f64 / dsize as f64;
    (0..dsize)
        .map(|dx| {
            let mut taps = Taps::new();
            let fsx1 = dx as f64 * scale;
            let fsx2 = fsx1 + scale;
            let cell = scale.min(ssize as f64 - fsx1);
            let mut sx1 = fsx1.ceil() as i64;
            let mut sx2 = fsx2.floor() as i64;
            sx2 = sx2.min(ssize as i64 - 1);
            sx1 = sx1.min(sx2);
            if sx1 as f64 - fsx1 > 1e-3 && sx1 >= 1 {
                taps.push(((sx1 - 1) as usize, ((sx1 as f64 - fsx1) / cell) as f32));
            }
            for sx in sx1.max(0)..sx2 {
                taps.push((sx as usize, (1.0 / cell) as f32));
            }
            if fsx2 - sx2 as f64 > 1e-3 && sx2 >= 0 {
                taps.push((
                    sx2 as usize,
                    ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
                ));
            }
            taps
        })
        .collect()
}

fn linear_area_taps(ssize: usize, dsize: usize) -> Vec<Taps> {
    let scale = ssize as f64 / dsize as f64;
    let inv = dsize as f64 / ssize as f64;
    (0..dsize)
        .map(|dx| {
            let sx = (dx as f64 * scale).floor() as i64;
            let mut fx = ((dx + 1) as f64 - (sx + 1) as f64 * inv) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            let last = ssize as i64 - 1;
            let (sx, fx) = if sx < 0 {
                (0, 0.0)
            } else if sx >= last {
                (last, 0.0)
            } else {
                (sx, fx)
            };
            let sx = sx.max(0) as usize;
            if fx == 0.0 {
                vec![(sx, 1.0)]
            } else {
                vec![(sx, 1.0 - fx), ((sx + 1).min(ssize - 1), fx)]
            }
        })
        .collect()
}

fn taps_for(ssize: usize, dsize: usize, shrink_both: bool) -> Vec<Taps> {
    if shrink_both {
        area_taps(ssize, dsize)
    } else {
        linear_area_taps(ssize, dsize)
    }
}

/// Taps flattened for the inner loops: destination `d` uses `idx[ofs[d]..ofs[d+1]]` with `wt`.
struct FlatTaps {
    ofs: Vec<usize>,
    idx: Vec<usize>,
    wt: Vec<f32>,
}

impl FlatTaps {
    fn new(taps: Vec<Taps>) -> FlatTaps {
        let mut ofs = Vec::with_capacity(taps.len() + 1);
        let (mut idx, mut wt) = (Vec::new(), Vec::new());
        ofs.push(0);
        for t in taps {
            for (i, w) in t {
                idx.push(i);
                wt.push(w);
            }
            ofs.push(idx.len());
        }
        FlatTaps { ofs, idx, wt }
    }

    fn range(&self, d: usize) -> std::ops::Range<usize> {
        self.ofs[d]..self.ofs[d + 1]
    }
}

/// Resizes an interleaved 3-channel image (`sw*sh*3` values, u8 or f32) to `dw x dh` like
/// `cv2.resize(..., interpolation=cv2.INTER_AREA)` computed in float (no rounding).
pub(crate) fn area_resize_f32<T: Sample>(
    src: &[T],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
) -> Vec<f32> {
    const C: usize = 3;
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || src.len() < sw * sh * C {
        return vec![0.0; dw * dh * C];
    }
    let shrink_both = sw >= dw && sh >= dh;
    let xt = FlatTaps::new(taps_for(sw, dw, shrink_both));
    let yt = FlatTaps::new(taps_for(sh, dh, shrink_both));
    let row_len = sw * C;
    let mut acc = vec![0f32; row_len];
    let mut out = vec![0f32; dw * dh * C];
    for dy in 0..dh {
        acc.fill(0.0);
        for k in yt.range(dy) {
            let (sy, w) = (yt.idx[k], yt.wt[k]);
            let row = &src[sy * row_len..(sy + 1) * row_len];
            T::accumulate(&mut acc, row, w);
        }
        let orow = &mut out[dy * dw * C..(dy + 1) * dw * C];
        for (dx, o) in orow.chunks_exact_mut(C).enumerate() {
            let mut px = [0f32; C];
            for k in xt.range(dx) {
                let (sx, w) = (xt.idx[k] * C, xt.wt[k]);
                let s = &acc[sx..sx + C];
                px[0] += w * s[0];
                px[1] += w * s[1];
                px[2] += w * s[2];
            }
            o.copy_from_slice(&px);
        }
    }
    out
}

/// Like [`area_resize_f32`] on 8-bit input, rounded to u8 values (kept as f32) as OpenCV does for
/// 8-bit images.
pub(crate) fn area_resize_u8(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    let mut out = area_resize_f32(src, sw, sh, dw, dh);
    for v in &mut out {
        *v = v.round_ties_even().clamp(0.0, 255.0);
    }
    out
}

/// Summed-area table of an RGB image, `(w+1) x (h+1)` per channel, giving box averages with
/// fractional coverage in O(1). Sums are exact integers: 32-bit while the whole image's sum fits
/// (up to 16.8 Mpx, half the memory to write and read), else 64-bit.
pub(crate) struct Sat {
    w: usize,
    h: usize,
    table: Table,
}

/// The table's entries, as narrow as the image allows.
enum Table {
    Narrow(Vec<[u32; 3]>),
    Wide(Vec<[u64; 3]>),
}

/// The summed-area table of `raw` (`w x h` RGB) in `T`, which must hold `255 * w * h`.
fn summed<T>(raw: &[u8], w: usize, h: usize) -> Vec<[T; 3]>
where
    T: Copy + Default + From<u8> + std::ops::Add<Output = T>,
{
    let stride = w + 1;
    let mut table = vec![[T::default(); 3]; stride * (h + 1)];
    for y in 0..h {
        let mut row = [T::default(); 3];
        for x in 0..w {
            let p = &raw[(y * w + x) * 3..(y * w + x) * 3 + 3];
            for c in 0..3 {
                row[c] = row[c] + T::from(p[c]);
            }
            let above = table[y * stride + x + 1];
            table[(y + 1) * stride + x + 1] =
                [above[0] + row[0], above[1] + row[1], above[2] + row[2]];
        }
    }
    table
}

impl Sat {
    pub(crate) fn new(img: &RgbImage) -> Sat {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let raw = img.as_raw();
        let table = if (w * h) as u64 * 255 <= u64::from(u32::MAX) {
            Table::Narrow(summed::<u32>(raw, w, h))
        } else {
            Table::Wide(summed::<u64>(raw, w, h))
        };
        Sat { w, h, table }
    }

    /// The table's entry at index `i`.
    fn at(&self, i: usize) -> [f64; 3] {
        match &self.table {
            Table::Narrow(t) => t[i].map(f64::from),
            // Exact: a sum of at most 255 * 2^43 pixels is below 2^53.
            Table::Wide(t) => t[i].map(|v| v as f64),
        }
    }

    /// The integral of the zero-extended, piecewise-constant image over [0,x) x [0,y): the table
    /// interpolated bilinearly (exact for a piecewise-constant image).
    fn integral(&self, x: f64, y: f64) -> [f64; 3] {
        let x = x.clamp(0.0, self.w as f64);
        let y = y.clamp(0.0, self.h as f64);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w), (y0 + 1).min(self.h));
        let (fx, fy) = (x - x0 as f64, y - y0 as f64);
        let stride = self.w + 1;
        let t = |xx: usize, yy: usize| self.at(yy * stride + xx);
        let (a, b, c, d) = (t(x0, y0), t(x1, y0), t(x0, y1), t(x1, y1));
        let mut out = [0f64; 3];
        for k in 0..3 {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            out[k] = top + (bottom - top) * fy;
        }
        out
    }

    /// INTER_AREA shrink of the `cw x ch` window at image position (x0, y0) to `size x size`
    /// (row-major [y][x][c], 0..255 floats).
    pub(crate) fn area_crop(&self, x0: f64, y0: f64, cw: f64, ch: f64, size: usize) -> Vec<f32> {
        let (sx, sy) = (cw / size as f64, ch / size as f64);
        let inv = 1.0 / (sx * sy);
        let mut out = vec![0f32; size * size * 3];
        let xs: Vec<f64> = (0..=size).map(|i| x0 + i as f64 * sx).collect();
        let mut prev: Vec<[f64; 3]> = xs.iter().map(|&x| self.integral(x, y0)).collect();
        for r in 0..size {
            let yb = y0 + (r + 1) as f64 * sy;
            let cur: Vec<[f64; 3]> = xs.iter().map(|&x| self.integral(x, yb)).collect();
            for q in 0..size {
                for k in 0..3 {
                    let sum = cur[q + 1][k] - cur[q][k] - prev[q + 1][k] + prev[q][k];
                    out[(r * size + q) * 3 + k] = (sum * inv) as f32;
                }
            }
            prev = cur;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_weights_sum_to_one() {
        for (s, d) in [(10, 3), (1024, 615), (7, 7), (100, 24)] {
            for taps in area_taps(s, d) {
                let sum: f32 = taps.iter().map(|t| t.1).sum();
                assert!((sum - 1.0).abs() < 1e-4, "{s}->{d}: {sum}");
            }
        }
    }

    #[test]
    fn integer_factor_is_block_mean() {
        let src: Vec<f32> = (0..4 * 2 * 3).map(|v| v as f32).collect();
        let out = area_resize_f32(&src, 4, 2, 2, 1);
        // first output pixel, channel 0: mean of (0,3) row 0 and (12,15) row 1
        assert!((out[0] - (0.0 + 3.0 + 12.0 + 15.0) / 4.0).abs() < 1e-4);
    }

    #[test]
    fn upscale_keeps_constant() {
        let src = vec![7.0f32; 5 * 5 * 3];
        let out = area_resize_f32(&src, 5, 5, 24, 24);
        assert!(out.iter().all(|v| (v - 7.0).abs() < 1e-4));
    }

    #[test]
    fn summed_area_crop_matches_the_separable_area_resize() {
        let img = RgbImage::from_fn(97, 83, |x, y| {
            image::Rgb([(x * 3 + y) as u8, (x * y % 251) as u8, (255 - x) as u8])
        });
        let src: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
        let sat = Sat::new(&img);
        // A window partly outside the image (zero padding), 70x70 -> 24x24.
        let (bx, by, bw) = (40i64, -5i64, 70usize);
        let mut tmp = vec![0f32; bw * bw * 3];
        for ty in 0..bw as i64 {
            for tx in 0..bw as i64 {
                let (ix, iy) = (bx + tx, by + ty);
                if ix >= 0 && iy >= 0 && ix < 97 && iy < 83 {
                    let s = ((iy * 97 + ix) * 3) as usize;
                    let t = ((ty * bw as i64 + tx) * 3) as usize;
                    tmp[t..t + 3].copy_from_slice(&src[s..s + 3]);
                }
            }
        }
        let want = area_resize_f32(&tmp, bw, bw, 24, 24);
        let got = sat.area_crop(bx as f64, by as f64, bw as f64, bw as f64, 24);
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.05, "max difference {worst}");
    }

    #[test]
    fn the_wide_table_crops_as_the_narrow_one() {
        let img = RgbImage::from_fn(61, 47, |x, y| {
            image::Rgb([(x * 7 + y) as u8, 255, (x * y % 253) as u8])
        });
        let narrow = Sat::new(&img);
        assert!(matches!(narrow.table, Table::Narrow(_)));
        let wide = Sat {
            w: 61,
            h: 47,
            table: Table::Wide(summed::<u64>(img.as_raw(), 61, 47)),
        };
        for (x, y, side, size) in [
            (-3.0, 4.0, 30.0, 24),
            (10.5, 0.0, 44.0, 48),
            (0.0, 0.0, 61.0, 24),
        ] {
            assert_eq!(
                narrow.area_crop(x, y, side, side, size),
                wide.area_crop(x, y, side, side, size)
            );
        }
    }
}
