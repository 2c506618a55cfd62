//! [`Plane`]: one channel of `f32` values and the filters on it.

use crate::{max_f32, min_f32, to_byte};

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

/// Where the middle of a line of `n` values starts and ends for a box of radius `r`: the
/// part whose window lies inside the line, so it needs no clamped indices.
fn middle(n: usize, r: usize) -> (usize, usize) {
    let lo = (r + 1).min(n);
    (lo, n.saturating_sub(r).max(lo))
}

/// The start of a box filter of one line (radius `r`, clamped ends) into `out` (same length,
/// not empty): `out[..lo]` of [`middle`]; returns the running sum.
fn box_line_head(src: &[f32], out: &mut [f32], r: usize, inv: f64) -> f64 {
    let last = src.len() - 1;
    let mut acc: f64 = 0.0;
    for k in 0..=2 * r {
        acc += src[k.saturating_sub(r).min(last)] as f64;
    }
    out[0] = (acc * inv) as f32;
    for x in 1..middle(src.len(), r).0 {
        acc += src[(x + r).min(last)] as f64 - src[0] as f64;
        out[x] = (acc * inv) as f32;
    }
    acc
}

/// The box filter's middle, `out[from..hi]` of [`middle`], from the running sum `acc`.
fn box_line_middle(src: &[f32], out: &mut [f32], r: usize, from: usize, acc: &mut f64, inv: f64) {
    let (lo, hi) = middle(src.len(), r);
    if hi > from.max(lo) {
        let from = from.max(lo);
        let adds = &src[from + r..];
        let subs = &src[from - r - 1..];
        for ((o, &add), &sub) in out[from..hi].iter_mut().zip(adds).zip(subs) {
            *acc += add as f64 - sub as f64;
            *o = (*acc * inv) as f32;
        }
    }
}

/// The box filter's end, `out[hi..]` of [`middle`], from the running sum `acc`.
fn box_line_tail(src: &[f32], out: &mut [f32], r: usize, mut acc: f64, inv: f64) {
    let (n, last) = (src.len(), src.len() - 1);
    for x in middle(n, r).1.max(1)..n {
        acc += src[last] as f64 - src[x.saturating_sub(r + 1).min(last)] as f64;
        out[x] = (acc * inv) as f32;
    }
}

/// The horizontal pass of a box filter of radius `r` (clamped ends) over `src`, rows of `w`
/// values, into `dst` (same size): a running sum in `f64` along each row.
fn box_rows(src: &[f32], dst: &mut [f32], w: usize, r: usize) {
    if w == 0 {
        return;
    }
    let inv = 1.0 / (2 * r + 1) as f64;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = box_rows_simd(src, dst, w, r, inv);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (s, o) in src[done..]
        .chunks_exact(w)
        .zip(dst[done..].chunks_exact_mut(w))
    {
        let mut acc = box_line_head(s, o, r, inv);
        box_line_middle(s, o, r, 0, &mut acc, inv);
        box_line_tail(s, o, r, acc, inv);
    }
}

/// [`box_rows`] four rows at a time, their middles side by side in SIMD128
/// (`simd::box_rows_middle`), the same arithmetic as the scalar rows; returns
/// how many values it wrote (whole groups of four rows).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn box_rows_simd(src: &[f32], dst: &mut [f32], w: usize, r: usize, inv: f64) -> usize {
    let (lo, hi) = middle(w, r);
    let end = lo + (hi - lo) / 4 * 4;
    if end == lo {
        return 0;
    }
    let done = src.len() / (4 * w) * 4 * w;
    for (s, o) in src[..done]
        .chunks_exact(4 * w)
        .zip(dst[..done].chunks_exact_mut(4 * w))
    {
        let rows: [&[f32]; 4] = std::array::from_fn(|i| &s[i * w..(i + 1) * w]);
        let mut chunks = o.chunks_exact_mut(w);
        let mut outs: [&mut [f32]; 4] = std::array::from_fn(|_| chunks.next().unwrap());
        let mut acc: [f64; 4] = std::array::from_fn(|i| box_line_head(rows[i], outs[i], r, inv));
        crate::simd::box_rows_middle(rows, &mut outs, r, (lo, end), inv, &mut acc);
        for i in 0..4 {
            box_line_middle(rows[i], outs[i], r, end, &mut acc[i], inv);
            box_line_tail(rows[i], outs[i], r, acc[i], inv);
        }
    }
    done
}

/// The vertical pass of a box filter of radius `r` (clamped ends) over `src`, rows of `w`
/// values, into `dst` (same size): row-major, one running sum per column.
fn box_columns(src: &[f32], dst: &mut [f32], w: usize, r: usize) {
    let h = src.len() / w;
    let last = h - 1;
    // f32 sums: the error stays far below 1e-4 at the sizes styles see, and the loops
    // vectorise twice as wide as with f64.
    let inv = 1.0 / (2 * r + 1) as f32;
    let mut acc = vec![0.0f32; w];
    for k in 0..=2 * r {
        let row = &src[k.saturating_sub(r).min(last) * w..][..w];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    for (y, out) in dst.chunks_exact_mut(w).enumerate() {
        if y == 0 {
            for (d, &a) in out.iter_mut().zip(&acc) {
                *d = a * inv;
            }
        } else {
            let add = &src[(y + r).min(last) * w..][..w];
            let sub = &src[y.saturating_sub(r + 1).min(last) * w..][..w];
            column_step(&mut acc, add, sub, out, inv);
        }
    }
}

/// One row of [`box_columns`]: the running sums `acc += add - sub`, and `out = acc * inv`.
fn column_step(acc: &mut [f32], add: &[f32], sub: &[f32], out: &mut [f32], inv: f32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = crate::simd::column_step(acc, add, sub, out, inv);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    let sums = add[done..].iter().zip(&sub[done..]);
    for ((a, (&p, &m)), d) in acc[done..].iter_mut().zip(sums).zip(&mut out[done..]) {
        *a += p - m;
        *d = *a * inv;
    }
}

/// `out[x] = sum over t of kernel[t] * padded[x + t]` (`padded` is `kernel.len() - 1` longer
/// than `out`), summed from 0 in tap order.
fn convolve_row(padded: &[f32], kernel: &[f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = crate::simd::convolve_row(padded, kernel, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    let out = &mut out[done..];
    out.iter_mut().for_each(|v| *v = 0.0);
    // Tap by tap over the whole row, so that the loop vectorises.
    for (t, &tv) in kernel.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(&padded[done + t..]) {
            *o += tv * v;
        }
    }
}

/// `out[x] = sum over k of kernel[k] * row[x]` of the `w`-wide row `slots[k]` of `ring`,
/// summed from 0 in kernel order; `out` is `w` long.
fn weighted_rows(ring: &[f32], w: usize, slots: &[usize], kernel: &[f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = crate::simd::weighted_rows(ring, w, slots, kernel, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    let out = &mut out[done..];
    out.iter_mut().for_each(|v| *v = 0.0);
    for (&kv, &slot) in kernel.iter().zip(slots) {
        for (d, &v) in out.iter_mut().zip(&ring[slot * w + done..(slot + 1) * w]) {
            *d += kv * v;
        }
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
        self.data.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| {
            (min_f32(v, lo), max_f32(v, hi))
        })
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
            box_rows(&self.data, &mut tmp, w, rx as usize);
        }
        if ry == 0 {
            return Plane {
                width: self.width,
                height: self.height,
                data: tmp,
            };
        }
        let mut out = vec![0.0f32; w * h];
        box_columns(&tmp, &mut out, w, ry as usize);
        Plane {
            width: self.width,
            height: self.height,
            data: out,
        }
    }

    /// Square box blurs of `radii` one after the other, in the plane's buffer and one more.
    fn box_blurs(mut self, radii: &[u32]) -> Plane {
        let w = self.width as usize;
        let mut tmp = vec![0.0f32; self.data.len()];
        for &r in radii.iter().filter(|&&r| r > 0) {
            box_rows(&self.data, &mut tmp, w, r as usize);
            box_columns(&tmp, &mut self.data, w, r as usize);
        }
        self
    }

    /// A Gaussian blur of standard deviation `sigma` pixels: an exact separable kernel for
    /// small sigmas (below 3), three box blurs of the same variance (a close approximation at
    /// constant cost) above, on the plane padded with its edge values so that the borders blur
    /// as if the edge pixels repeated forever.
    pub fn gaussian_blur(&self, sigma: f32) -> Plane {
        if sigma <= 0.0 || self.data.is_empty() {
            return self.clone();
        }
        if sigma < 3.0 {
            return self.convolve_separable(&gaussian_kernel(sigma));
        }
        let radii = box_radii_for_sigma(sigma);
        let pad = radii.iter().sum();
        self.padded(pad)
            .box_blurs(&radii)
            .cropped(pad, self.width, self.height)
    }

    /// The plane with `pad` more pixels on every side, repeating the edge values.
    fn padded(&self, pad: u32) -> Plane {
        let (w, p) = (self.width as usize, pad as usize);
        let (pw, ph) = (self.width + 2 * pad, self.height + 2 * pad);
        let mut data = Vec::with_capacity(pw as usize * ph as usize);
        for y in 0..ph as usize {
            let sy = y.saturating_sub(p).min(self.height as usize - 1);
            let row = &self.data[sy * w..][..w];
            data.extend(std::iter::repeat_n(row[0], p));
            data.extend_from_slice(row);
            data.extend(std::iter::repeat_n(row[w - 1], p));
        }
        Plane {
            width: pw,
            height: ph,
            data,
        }
    }

    /// The `width` x `height` part of the plane from (`at`, `at`).
    fn cropped(&self, at: u32, width: u32, height: u32) -> Plane {
        let (w, at) = (self.width as usize, at as usize);
        let mut data = Vec::with_capacity(width as usize * height as usize);
        for y in at..at + height as usize {
            data.extend_from_slice(&self.data[y * w + at..][..width as usize]);
        }
        Plane {
            width,
            height,
            data,
        }
    }

    /// Convolves rows, then columns, with the symmetric odd-length `kernel` (edges clamped).
    /// The rows are convolved as the column pass needs them, into a ring of `kernel.len()`
    /// rows, so that only the output is image-sized.
    fn convolve_separable(&self, kernel: &[f32]) -> Plane {
        let (w, h) = (self.width as usize, self.height as usize);
        let (n, r) = (kernel.len(), kernel.len() / 2);
        let mut padded = vec![0.0f32; w + 2 * r];
        let mut ring = vec![0.0f32; n * w];
        // Which source row each ring slot holds, and the slot of each tap of this output row.
        let mut held = vec![usize::MAX; n];
        let mut slots = vec![0usize; n];
        let mut out = vec![0.0f32; w * h];
        for y in 0..h {
            // The rows within the kernel's reach are distinct modulo `n`: all fit the ring.
            for (k, slot) in slots.iter_mut().enumerate() {
                let sy = (y + k).saturating_sub(r).min(h - 1);
                *slot = sy % n;
                if held[*slot] != sy {
                    let src = &self.data[sy * w..(sy + 1) * w];
                    padded[..r].fill(src[0]);
                    padded[r..r + w].copy_from_slice(src);
                    padded[r + w..].fill(src[w - 1]);
                    convolve_row(&padded, kernel, &mut ring[*slot * w..(*slot + 1) * w]);
                    held[*slot] = sy;
                }
            }
            weighted_rows(&ring, w, &slots, kernel, &mut out[y * w..(y + 1) * w]);
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
        let coefficient = |ip: f32, ii: f32, mi: f32, mp: f32| {
            let cov = ip - mi * mp;
            let var = max_f32(ii - mi * mi, 0.0);
            let ak = cov / (var + eps);
            (ak, mp - ak * mi)
        };
        let means = mean_i.data.iter().zip(&mean_p.data);
        let ab = a.data.iter_mut().zip(&mut b.data);
        // Two loops, not a choice per pixel, so that each vectorises.
        match &corr_ii {
            Some(ii) => {
                for (((ak, bk), &ii), (&mi, &mp)) in ab.zip(&ii.data).zip(means) {
                    (*ak, *bk) = coefficient(*ak, ii, mi, mp);
                }
            }
            None => {
                for ((ak, bk), (&mi, &mp)) in ab.zip(means) {
                    (*ak, *bk) = coefficient(*ak, *ak, mi, mp);
                }
            }
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

/// The radii of three box blurs whose succession has the variance of a Gaussian of `sigma`
/// (Kovesi's two box widths, so that the blur is neither wider nor narrower than asked).
fn box_radii_for_sigma(sigma: f32) -> [u32; 3] {
    if sigma <= 0.0 {
        return [0; 3];
    }
    let (s2, n) = (sigma as f64 * sigma as f64, 3.0);
    let ideal = (12.0 * s2 / n + 1.0).sqrt();
    let mut lower = ideal.floor() as i64;
    if lower % 2 == 0 {
        lower -= 1;
    }
    let l = lower as f64;
    let narrow = ((12.0 * s2 - n * l * l - 4.0 * n * l - 3.0 * n) / (-4.0 * l - 4.0)).round();
    let radius = |width: i64| ((width - 1) / 2).max(0) as u32;
    [0, 1, 2].map(|i| {
        radius(if (i as f64) < narrow {
            lower
        } else {
            lower + 2
        })
    })
}

/// For each output coordinate: the two source indices and the weight of the second.
pub(crate) fn resample_axis(src: u32, dst: u32) -> Vec<(usize, usize, f32)> {
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
