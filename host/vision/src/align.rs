//! Similarity (Umeyama) alignment of five face landmarks to the ArcFace 112x112 template (face
//! recognition) or to facexlib's FFHQ 512x512 template (PuLID's EVA-CLIP input), and the bilinear
//! affine warp that cuts the aligned crop.

use image::RgbImage;
use serde::Serialize;

/// The standard ArcFace 112x112 five-point template: left eye, right eye, nose, left and right
/// mouth corners (image left/right).
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// facexlib's five-point template for its 512x512 FFHQ-style crop (`FaceRestoreHelper`'s
/// `face_template`, the crop PuLID's pipeline feeds to face parsing and EVA02-CLIP).
pub const FFHQ_TEMPLATE_512: [[f32; 2]; 5] = [
    [192.98138, 239.94708],
    [318.90277, 240.1936],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
];

/// The colour facexlib fills outside the photo when it cuts the 512 crop (`borderValue=(135, 133,
/// 132)` in BGR).
pub const FFHQ_BORDER: [u8; 3] = [132, 133, 135];

/// A 2-D similarity transform `x' = a*x - b*y + tx`, `y' = b*x + a*y + ty`
/// (scale `sqrt(a^2+b^2)`, rotation `atan2(b, a)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Similarity {
    /// scale * cos(angle).
    pub a: f64,
    /// scale * sin(angle).
    pub b: f64,
    /// Translation x.
    pub tx: f64,
    /// Translation y.
    pub ty: f64,
}

impl Similarity {
    /// Maps a point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform (identity when degenerate).
    pub fn inverse(&self) -> Similarity {
        let d = self.a * self.a + self.b * self.b;
        if d <= f64::EPSILON {
            return Similarity {
                a: 1.0,
                b: 0.0,
                tx: 0.0,
                ty: 0.0,
            };
        }
        let (ia, ib) = (self.a / d, -self.b / d);
        Similarity {
            a: ia,
            b: ib,
            tx: -(ia * self.tx - ib * self.ty),
            ty: -(ib * self.tx + ia * self.ty),
        }
    }
}

/// Least-squares similarity from `src` to `dst` (Umeyama 1991 without reflection; in 2-D it is the
/// closed form below, the same estimate as scikit-image's `SimilarityTransform` used by InsightFace).
pub fn umeyama(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Similarity {
    let n = src.len().min(dst.len());
    if n == 0 {
        return Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
    }
    let mean = |pts: &[[f32; 2]]| {
        let (mut x, mut y) = (0f64, 0f64);
        for p in &pts[..n] {
            x += f64::from(p[0]);
            y += f64::from(p[1]);
        }
        [x / n as f64, y / n as f64]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut sxx, mut num_a, mut num_b) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let sx = f64::from(src[i][0]) - ms[0];
        let sy = f64::from(src[i][1]) - ms[1];
        let dx = f64::from(dst[i][0]) - md[0];
        let dy = f64::from(dst[i][1]) - md[1];
        sxx += sx * sx + sy * sy;
        num_a += sx * dx + sy * dy;
        num_b += sx * dy - sy * dx;
    }
    let (a, b) = if sxx > f64::EPSILON {
        (num_a / sxx, num_b / sxx)
    } else {
        (1.0, 0.0)
    };
    Similarity {
        a,
        b,
        tx: md[0] - (a * ms[0] - b * ms[1]),
        ty: md[1] - (b * ms[0] + a * ms[1]),
    }
}

/// Warps `img` by `m` (source -> destination) into a `w x h` image, bilinear, black outside
/// (like `cv2.warpAffine(img, M, (w, h), borderValue=0)`).
pub fn warp_affine(img: &RgbImage, m: &Similarity, w: u32, h: u32) -> RgbImage {
    warp_affine_filled(img, m, w, h, [0, 0, 0])
}

/// [`warp_affine`] with `fill` outside the photo (`cv2.warpAffine(..., borderMode=
/// BORDER_CONSTANT, borderValue=fill)`: the constant border takes part in the bilinear taps).
pub fn warp_affine_filled(
    img: &RgbImage,
    m: &Similarity,
    w: u32,
    h: u32,
    fill: [u8; 3],
) -> RgbImage {
    let inv = m.inverse();
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let mut out: Vec<u8> = std::iter::repeat_n(fill, w as usize * h as usize)
        .flatten()
        .collect();
    let fill_f = fill.map(f32::from);
    // Source position of pixel (x, y): the row's start plus x steps along the mapped x axis.
    let step_x = [inv.a, inv.b];
    let px = |sx: usize, sy: usize| {
        let i = (sy * sw + sx) * 3;
        [
            f32::from(src[i]),
            f32::from(src[i + 1]),
            f32::from(src[i + 2]),
        ]
    };
    for (y, row) in out.chunks_exact_mut(w as usize * 3).enumerate() {
        let start = inv.apply([0.0, y as f64]);
        for (x, o) in row.chunks_exact_mut(3).enumerate() {
            let p = [
                start[0] + x as f64 * step_x[0],
                start[1] + x as f64 * step_x[1],
            ];
            let (fx, fy) = (p[0].floor(), p[1].floor());
            if !(fx >= -1.0 && fy >= -1.0 && fx < sw as f64 && fy < sh as f64) {
                continue; // entirely outside: the fill
            }
            let (ax, ay) = ((p[0] - fx) as f32, (p[1] - fy) as f32);
            let (x0, y0) = (fx as i64, fy as i64);
            let inside = x0 >= 0 && y0 >= 0 && (x0 as usize) + 1 < sw && (y0 as usize) + 1 < sh;
            let mut acc = [0f32; 3];
            if inside {
                let (x0, y0) = (x0 as usize, y0 as usize);
                let (a, b, c, d) = (
                    px(x0, y0),
                    px(x0 + 1, y0),
                    px(x0, y0 + 1),
                    px(x0 + 1, y0 + 1),
                );
                for k in 0..3 {
                    let top = a[k] + (b[k] - a[k]) * ax;
                    let bottom = c[k] + (d[k] - c[k]) * ax;
                    acc[k] = top + (bottom - top) * ay;
                }
            } else {
                for (dy, wy) in [(0i64, 1.0 - ay), (1, ay)] {
                    for (dx, wx) in [(0i64, 1.0 - ax), (1, ax)] {
                        let (sx, sy) = (x0 + dx, y0 + dy);
                        let v = if sx < 0 || sy < 0 || sx as usize >= sw || sy as usize >= sh {
                            fill_f
                        } else {
                            px(sx as usize, sy as usize)
                        };
                        for k in 0..3 {
                            acc[k] += wx * wy * v[k];
                        }
                    }
                }
            }
            for k in 0..3 {
                o[k] = acc[k].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Cuts the aligned `size x size` face crop (112 for ArcFace-style models): the five landmarks
/// are mapped onto [`ARCFACE_TEMPLATE`] scaled by `size / 112`.
pub fn align_face(img: &RgbImage, landmarks: &[[f32; 2]; 5], size: u32) -> RgbImage {
    let k = size as f32 / 112.0;
    let dst = ARCFACE_TEMPLATE.map(|p| [p[0] * k, p[1] * k]);
    let m = umeyama(landmarks, &dst);
    warp_affine(img, &m, size, size)
}

/// Cuts PuLID's `size x size` face crop (512 in PuLID): the five landmarks mapped onto
/// [`FFHQ_TEMPLATE_512`] scaled by `size / 512`, [`FFHQ_BORDER`] outside the photo, as facexlib's
/// `align_warp_face` does. facexlib estimates the similarity with OpenCV's LMEDS, which on five
/// consistent points agrees with this least-squares estimate to a fraction of a pixel. Returns the
/// crop and the landmarks' positions in it.
pub fn align_face_ffhq(
    img: &RgbImage,
    landmarks: &[[f32; 2]; 5],
    size: u32,
) -> (RgbImage, [[f32; 2]; 5]) {
    let k = size as f32 / 512.0;
    let dst = FFHQ_TEMPLATE_512.map(|p| [p[0] * k, p[1] * k]);
    let m = umeyama(landmarks, &dst);
    let moved = landmarks.map(|p| {
        let q = m.apply([f64::from(p[0]), f64::from(p[1])]);
        [q[0] as f32, q[1] as f32]
    });
    (warp_affine_filled(img, &m, size, size, FFHQ_BORDER), moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_matches_direct_bilinear() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 256) as u8])
        });
        let m = Similarity {
            a: 1.3,
            b: -0.4,
            tx: -5.0,
            ty: 12.0,
        };
        let out = warp_affine(&img, &m, 50, 50);
        let inv = m.inverse();
        for (x, y) in [(0u32, 0u32), (10, 20), (25, 25), (49, 3), (30, 44)] {
            let p = inv.apply([f64::from(x), f64::from(y)]);
            let (fx, fy) = (p[0].floor(), p[1].floor());
            let (ax, ay) = (p[0] - fx, p[1] - fy);
            let mut want = [0f64; 3];
            for (dy, wy) in [(0i64, 1.0 - ay), (1, ay)] {
                for (dx, wx) in [(0i64, 1.0 - ax), (1, ax)] {
                    let (sx, sy) = (fx as i64 + dx, fy as i64 + dy);
                    if sx >= 0 && sy >= 0 && sx < 40 && sy < 30 {
                        let v = img.get_pixel(sx as u32, sy as u32).0;
                        for k in 0..3 {
                            want[k] += wx * wy * f64::from(v[k]);
                        }
                    }
                }
            }
            let got = out.get_pixel(x, y).0;
            for k in 0..3 {
                assert!(
                    (f64::from(got[k]) - want[k]).abs() <= 1.0,
                    "({x},{y}) {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn the_ffhq_crop_puts_the_landmarks_on_the_template_and_fills_outside() {
        let img = RgbImage::from_pixel(200, 200, image::Rgb([10, 200, 30]));
        // A face of the template's shape, half size, shifted into the photo's corner.
        let lms = FFHQ_TEMPLATE_512.map(|p| [p[0] * 0.25 - 20.0, p[1] * 0.25 - 30.0]);
        let (crop, moved) = align_face_ffhq(&img, &lms, 512);
        for (got, want) in moved.iter().zip(FFHQ_TEMPLATE_512) {
            assert!((got[0] - want[0]).abs() < 1e-2 && (got[1] - want[1]).abs() < 1e-2);
        }
        // The photo's corner lands inside the crop; above-left of it is outside the photo.
        assert_eq!(crop.get_pixel(0, 0).0, FFHQ_BORDER);
        assert_eq!(crop.get_pixel(300, 300).0, [10, 200, 30]);
    }

    #[test]
    fn umeyama_recovers_a_similarity() {
        let truth = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 5.0,
            ty: -7.0,
        };
        let src = ARCFACE_TEMPLATE;
        let dst = src.map(|p| {
            let q = truth.apply([f64::from(p[0]), f64::from(p[1])]);
            [q[0] as f32, q[1] as f32]
        });
        let m = umeyama(&src, &dst);
        assert!((m.a - 0.8).abs() < 1e-4 && (m.b - 0.3).abs() < 1e-4);
        assert!((m.tx - 5.0).abs() < 1e-3 && (m.ty + 7.0).abs() < 1e-3);
        let back = m.inverse().apply(m.apply([10.0, 20.0]));
        assert!((back[0] - 10.0).abs() < 1e-9 && (back[1] - 20.0).abs() < 1e-9);
    }
}
