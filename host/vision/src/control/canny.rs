//! Canny edges as OpenCV computes them: BT.601 grey, 3x3 Gaussian blur, 3x3 Sobel, L1 gradient
//! magnitude, non-maximum suppression with OpenCV's fixed-point 22.5/67.5 degree sectors, and
//! hysteresis (8-connected). Thresholds come from the median of the blurred grey image like the
//! common `auto_canny`: `(0.66 * median, 1.33 * median)`.
//!
//! Rows are processed in parallel stripes on all cores (std threads; no extra dependency).

use image::{GrayImage, RgbImage};

use crate::simd::with_avx2;

/// BT.601 grey with OpenCV's fixed-point weights (`cv2.COLOR_RGB2GRAY`).
pub fn to_gray(img: &RgbImage) -> GrayImage {
    let (w, h) = img.dimensions();
    let mut out = vec![0u8; w as usize * h as usize];
    let src = img.as_raw();
    par_rows(&mut out, w as usize, |y0, rows| {
        let n = w as usize;
        for (r, row) in rows.chunks_exact_mut(n).enumerate() {
            gray_row(&src[(y0 + r) * n * 3..(y0 + r + 1) * n * 3], row);
        }
    });
    GrayImage::from_raw(w, h, out).unwrap_or_else(|| GrayImage::new(w, h))
}

/// `auto_canny` thresholds from a median: `(0.66 * median, 1.33 * median)`, clamped to 0..255.
pub fn auto_thresholds(median: f32) -> (f32, f32) {
    (
        (0.66 * median).clamp(0.0, 255.0),
        (1.33 * median).clamp(0.0, 255.0),
    )
}

/// Canny edges of a colour image with automatic thresholds (255 = edge): grey, 3x3 blur and the
/// median in one fused parallel pass, then [`canny_gray`].
pub fn canny(img: &RgbImage) -> GrayImage {
    let (blurred, hist) = gray_blur_hist(img);
    let (low, high) = auto_thresholds(hist_median(&hist));
    canny_gray(&blurred, low, high)
}

/// Grey + 3x3 Gaussian blur + histogram of the blurred image, per stripe with a rolling window of
/// grey rows (same results as [`to_gray`] then [`gaussian3`]).
fn gray_blur_hist(img: &RgbImage) -> (GrayImage, [u64; 256]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0u8; w * h];
    if w == 0 || h == 0 {
        return (GrayImage::new(w as u32, h as u32), [0; 256]);
    }
    let src = img.as_raw();
    let hists = std::sync::Mutex::new(Vec::new());
    par_rows(&mut out, w, |y0, rows| {
        let mut hist = [0u64; 256];
        let grey = |y: usize, buf: &mut [u8]| gray_row(&src[y * w * 3..(y + 1) * w * 3], buf);
        let (mut a, mut b, mut c) = (vec![0u8; w], vec![0u8; w], vec![0u8; w]);
        let mut vsum = vec![0u16; w];
        let n = rows.len() / w;
        if n == 0 {
            return;
        }
        grey(reflect101(y0 as isize - 1, h), &mut a);
        grey(y0, &mut b);
        for (r, row) in rows.chunks_exact_mut(w).enumerate() {
            let y = (y0 + r) as isize;
            grey(reflect101(y + 1, h), &mut c);
            blur_row(&a, &b, &c, &mut vsum, row);
            for &v in row.iter() {
                hist[v as usize] += 1;
            }
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut b, &mut c);
        }
        hists.lock().unwrap_or_else(|p| p.into_inner()).push(hist);
    });
    let mut total = [0u64; 256];
    for hist in hists.into_inner().unwrap_or_else(|p| p.into_inner()) {
        for (t, v) in total.iter_mut().zip(hist) {
            *t += v;
        }
    }
    (
        GrayImage::from_raw(w as u32, h as u32, out)
            .unwrap_or_else(|| GrayImage::new(w as u32, h as u32)),
        total,
    )
}

/// Reflect-101 index (OpenCV's default border): -1 -> 1, n -> n-2.
fn reflect101(i: isize, n: usize) -> usize {
    if n == 1 {
        0
    } else if i < 0 {
        ((-i) as usize).min(n - 1)
    } else if i as usize >= n {
        (2 * n).saturating_sub(2 + i as usize)
    } else {
        i as usize
    }
}

with_avx2!(gray_row(src: &[u8], dst: &mut [u8]) {
    for (o, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
        let v = u32::from(px[0]) * 4899 + u32::from(px[1]) * 9617 + u32::from(px[2]) * 1868;
        *o = ((v + (1 << 13)) >> 14) as u8;
    }
});

with_avx2!(blur_row(a: &[u8], b: &[u8], c: &[u8], vsum: &mut [u16], row: &mut [u8]) {
    let w = row.len();
    let (a, b, c, vsum) = (&a[..w], &b[..w], &c[..w], &mut vsum[..w]);
    for i in 0..w {
        vsum[i] = u16::from(a[i]) + 2 * u16::from(b[i]) + u16::from(c[i]);
    }
    if w == 1 {
        row[0] = ((4 * vsum[0] + 8) >> 4) as u8;
        return;
    }
    row[0] = ((2 * vsum[1] + 2 * vsum[0] + 8) >> 4) as u8;
    let (l, m, r) = (&vsum[..w - 2], &vsum[1..w - 1], &vsum[2..]);
    for (i, o) in row[1..w - 1].iter_mut().enumerate() {
        *o = ((l[i] + 2 * m[i] + r[i] + 8) >> 4) as u8;
    }
    row[w - 1] = ((2 * vsum[w - 2] + 2 * vsum[w - 1] + 8) >> 4) as u8;
});

/// Median of a grey image (the mean of the two middle values for an even count, like `np.median`).
pub fn median(img: &GrayImage) -> f32 {
    let mut hist = [0u64; 256];
    for &v in img.as_raw() {
        hist[v as usize] += 1;
    }
    hist_median(&hist)
}

fn hist_median(hist: &[u64; 256]) -> f32 {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let nth = |k: u64| {
        let mut acc = 0;
        for (v, &c) in hist.iter().enumerate() {
            acc += c;
            if acc > k {
                return v as f32;
            }
        }
        255.0
    };
    if n % 2 == 1 {
        nth(n / 2)
    } else {
        (nth(n / 2 - 1) + nth(n / 2)) / 2.0
    }
}

/// 3x3 Gaussian blur (`cv2.GaussianBlur(img, (3, 3), 0)`: kernel [1 2 1]/4, reflect-101 border,
/// rounded).
pub fn gaussian3(img: &GrayImage) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return img.clone();
    }
    let src = img.as_raw();
    let mut out = vec![0u8; w * h];
    par_rows(&mut out, w, |y0, rows| {
        let mut vsum = vec![0u16; w];
        for (r, row) in rows.chunks_exact_mut(w).enumerate() {
            let y = (y0 + r) as isize;
            let a = &src[reflect101(y - 1, h) * w..][..w];
            let b = &src[reflect101(y, h) * w..][..w];
            let c = &src[reflect101(y + 1, h) * w..][..w];
            blur_row(a, b, c, &mut vsum, row);
        }
    });
    GrayImage::from_raw(w as u32, h as u32, out).unwrap_or_else(|| img.clone())
}

/// Canny on a grey image with explicit thresholds on the L1 gradient magnitude (as
/// `cv2.Canny(img, low, high)`; replicate border for Sobel).
///
/// Each thread takes a stripe of rows and keeps a rolling window of three Sobel rows, so the
/// gradients never make a full-image round trip through memory; hysteresis then grows the strong
/// pixels the stripes collected.
pub fn canny_gray(img: &GrayImage, low: f32, high: f32) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return img.clone();
    }
    let (mut low, mut high) = (low, high);
    if low > high {
        std::mem::swap(&mut low, &mut high);
    }
    let low = low.floor() as i32;
    let high = high.floor() as i32;
    let src = img.as_raw();
    let pw = w + 2;
    // map: 0 = weak candidate, 1 = not an edge, 2 = edge; a one-pixel border of 1s.
    let mut map = vec![1u8; pw * (h + 2)];
    let stripes = stripes(h);
    let mut strong: Vec<Vec<usize>> = Vec::new();
    {
        let mut parts: Vec<&mut [u8]> = Vec::new();
        let mut rest = &mut map[pw..pw * (h + 1)];
        for &(a, b) in &stripes {
            let (head, tail) = rest.split_at_mut((b - a) * pw);
            parts.push(head);
            rest = tail;
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .into_iter()
                .zip(&stripes)
                .map(|(part, &(a, b))| {
                    s.spawn(move || nms_stripe(src, w, h, a, b, low, high, part))
                })
                .collect();
            for handle in handles {
                // A worker cannot panic on valid slices; an empty list only loses edges.
                strong.push(handle.join().unwrap_or_default());
            }
        });
    }

    // Hysteresis: grow strong edges through weak candidates (8-connected).
    let mut stack: Vec<usize> = strong.into_iter().flatten().collect();
    let pwi = pw as isize;
    let offsets: [isize; 8] = [-pwi - 1, -pwi, -pwi + 1, -1, 1, pwi - 1, pwi, pwi + 1];
    while let Some(i) = stack.pop() {
        for off in offsets {
            let k = (i as isize + off) as usize;
            if map[k] == 0 {
                map[k] = 2;
                stack.push(k);
            }
        }
    }
    let mut out = vec![0u8; w * h];
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        let mrow = &map[(y + 1) * pw + 1..][..w];
        for (o, &m) in row.iter_mut().zip(mrow) {
            *o = if m == 2 { 255 } else { 0 };
        }
    }
    GrayImage::from_raw(w as u32, h as u32, out)
        .unwrap_or_else(|| GrayImage::new(w as u32, h as u32))
}

/// Sobel (3x3, replicate border) of row `y` into `mag[1..=w]` (|dx|+|dy|, zero padding at both
/// ends), `gx` and `gy`. `p`, `c`, `n` are scratch rows of `w + 2`.
#[allow(clippy::too_many_arguments)]
fn sobel_row(
    src: &[u8],
    w: usize,
    h: usize,
    y: usize,
    scratch: &mut [Vec<i16>; 3],
    mag: &mut [i16],
    gx: &mut [i16],
    gy: &mut [i16],
) {
    let row = |yy: isize| &src[(yy.clamp(0, h as isize - 1) as usize) * w..][..w];
    let yi = y as isize;
    let [p, c, n] = scratch;
    widen(row(yi - 1), p);
    widen(row(yi), c);
    widen(row(yi + 1), n);
    sobel_kernel(p, c, n, &mut mag[1..w + 1], &mut gx[..w], &mut gy[..w]);
}

/// A row widened to i16 with one replicated pixel each side (`buf.len() == row.len() + 2`).
fn widen(row: &[u8], buf: &mut [i16]) {
    let w = row.len();
    buf[0] = i16::from(row[0]);
    for (b, &v) in buf[1..=w].iter_mut().zip(row) {
        *b = i16::from(v);
    }
    buf[w + 1] = i16::from(row[w - 1]);
}

with_avx2!(sobel_kernel(p: &[i16], c: &[i16], n: &[i16], m: &mut [i16], gx: &mut [i16], gy: &mut [i16]) {
    let w = m.len();
    let (p0, p1, p2) = (&p[..w], &p[1..w + 1], &p[2..w + 2]);
    let (c0, c2) = (&c[..w], &c[2..w + 2]);
    let (n0, n1, n2) = (&n[..w], &n[1..w + 1], &n[2..w + 2]);
    let (gx, gy) = (&mut gx[..w], &mut gy[..w]);
    for x in 0..w {
        let dx = (p2[x] - p0[x]) + 2 * (c2[x] - c0[x]) + (n2[x] - n0[x]);
        let dy = (n0[x] + 2 * n1[x] + n2[x]) - (p0[x] + 2 * p1[x] + p2[x]);
        gx[x] = dx;
        gy[x] = dy;
        m[x] = dx.abs() + dy.abs();
    }
});

/// Non-maximum suppression for rows `a..b` into `part` (those rows of the padded map); returns
/// the indices (in the whole padded map) of the strong edge pixels.
#[allow(clippy::too_many_arguments)]
fn nms_stripe(
    src: &[u8],
    w: usize,
    h: usize,
    a: usize,
    b: usize,
    low: i32,
    high: i32,
    part: &mut [u8],
) -> Vec<usize> {
    const TG22: i32 = 13573; // tan(22.5 deg) * 2^15
    const SHIFT: i32 = 15;
    let pw = w + 2;
    let mut scratch = [vec![0i16; pw], vec![0i16; pw], vec![0i16; pw]];
    // Rolling magnitude rows (zero-padded, zero outside the image) and the current gradients.
    let mut prev = vec![0i16; pw];
    let mut cur = vec![0i16; pw];
    let mut next = vec![0i16; pw];
    let (mut gx, mut gy) = (vec![0i16; w], vec![0i16; w]);
    let (mut gx_next, mut gy_next) = (vec![0i16; w], vec![0i16; w]);
    let (mut tx, mut ty) = (vec![0i16; w], vec![0i16; w]);
    if a > 0 {
        sobel_row(src, w, h, a - 1, &mut scratch, &mut prev, &mut tx, &mut ty);
    }
    sobel_row(src, w, h, a, &mut scratch, &mut cur, &mut gx, &mut gy);
    let mut strong = Vec::new();
    for y in a..b {
        if y + 1 < h {
            sobel_row(
                src,
                w,
                h,
                y + 1,
                &mut scratch,
                &mut next,
                &mut gx_next,
                &mut gy_next,
            );
        } else {
            next.fill(0);
        }
        let mrow = &mut part[(y - a) * pw..(y - a + 1) * pw];
        let at = |row: &[i16], k: usize| i32::from(row[k]);
        for x in 0..w {
            let j = x + 1;
            let m = i32::from(cur[j]);
            if m <= low {
                continue;
            }
            let xs = i32::from(gx[x]);
            let ys = i32::from(gy[x]);
            let ax = xs.abs();
            let ay = ys.abs() << SHIFT;
            let tg22x = ax * TG22;
            let keep = if ay < tg22x {
                m > at(&cur, j - 1) && m >= at(&cur, j + 1)
            } else {
                let tg67x = tg22x + (ax << (SHIFT + 1));
                if ay > tg67x {
                    m > at(&prev, j) && m >= at(&next, j)
                } else if (xs ^ ys) < 0 {
                    m > at(&prev, j + 1) && m > at(&next, j - 1)
                } else {
                    m > at(&prev, j - 1) && m > at(&next, j + 1)
                }
            };
            if keep {
                if m > high {
                    mrow[j] = 2;
                    strong.push((y + 1) * pw + j);
                } else {
                    mrow[j] = 0;
                }
            }
        }
        std::mem::swap(&mut prev, &mut cur);
        std::mem::swap(&mut cur, &mut next);
        std::mem::swap(&mut gx, &mut gx_next);
        std::mem::swap(&mut gy, &mut gy_next);
    }
    strong
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// Splits `h` rows into contiguous stripes, one per thread.
fn stripes(h: usize) -> Vec<(usize, usize)> {
    let t = threads().min(h.max(1) / 64).max(1);
    let per = h.div_ceil(t);
    (0..t)
        .map(|i| (i * per, ((i + 1) * per).min(h)))
        .filter(|(a, b)| a < b)
        .collect()
}

/// Runs `f(first_row, rows)` over stripes of a row-major buffer with `w` items per row.
fn par_rows<T: Send>(buf: &mut [T], w: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if w == 0 {
        return;
    }
    let h = buf.len() / w;
    let stripes = stripes(h);
    if stripes.len() <= 1 {
        f(0, buf);
        return;
    }
    let f = &f;
    std::thread::scope(|s| {
        let mut rest = buf;
        for &(a, b) in &stripes {
            let (head, tail) = rest.split_at_mut((b - a) * w);
            rest = tail;
            s.spawn(move || f(a, head));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_gives_closed_outline() {
        let mut img = GrayImage::new(64, 64);
        for y in 20..44 {
            for x in 20..44 {
                img.put_pixel(x, y, image::Luma([200]));
            }
        }
        let e = canny_gray(&img, 50.0, 100.0);
        let edges = e.as_raw().iter().filter(|v| **v == 255).count();
        assert!(edges > 4 * 20 && edges < 4 * 30 * 2, "{edges}");
        assert_eq!(e.get_pixel(32, 32)[0], 0);
        assert_eq!(e.get_pixel(5, 5)[0], 0);
    }

    #[test]
    fn flat_and_tiny_images() {
        let flat = RgbImage::from_pixel(10, 10, image::Rgb([90, 90, 90]));
        assert!(canny(&flat).as_raw().iter().all(|v| *v == 0));
        let one = RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9]));
        assert_eq!(canny(&one).dimensions(), (1, 1));
        assert_eq!(
            median(&GrayImage::from_raw(2, 1, vec![10, 20]).unwrap()),
            15.0
        );
    }
}
