//! The InstantID face-keypoint image (`draw_kps`), reproduced with OpenCV's drawing rules: a black
//! canvas; each limb `[0,2] [1,2] [3,2] [4,2]` as a filled `ellipse2Poly` polygon (half-length and
//! stick width 4, angle in whole degrees, 1-degree steps) via `fillConvexPoly` in the colour of
//! its first point; the canvas multiplied by 0.6 (truncated to u8); then a filled radius-10
//! circle (OpenCV's 8-connected `Circle`) at each point in its colour.

use image::RgbImage;

/// The five keypoint colours, in landmark order.
pub const COLOURS: [[u8; 3]; 5] = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [255, 0, 255],
];
const LIMBS: [[usize; 2]; 4] = [[0, 2], [1, 2], [3, 2], [4, 2]];
const STICK_WIDTH: i32 = 4;
const RADIUS: i32 = 10;

/// Draws the keypoint image for five landmarks (left eye, right eye, nose, left mouth, right
/// mouth) on a `w x h` black canvas.
pub fn keypoint_image(w: u32, h: u32, kps: &[[f32; 2]; 5]) -> RgbImage {
    let mut canvas = Canvas {
        w: w as i32,
        h: h as i32,
        px: vec![0u8; w as usize * h as usize * 3],
    };
    // Keep hostile coordinates (NaN, huge) from making the drawing loops long.
    let bound = |v: f32, n: u32| {
        let m = 4.0 * n as f32 + 64.0;
        if v.is_finite() { v.clamp(-m, m) } else { 0.0 }
    };
    let kps: [[f32; 2]; 5] = kps.map(|p| [bound(p[0], w), bound(p[1], h)]);
    for limb in LIMBS {
        let (a, b) = (kps[limb[0]], kps[limb[1]]);
        let (x0, x1) = (f64::from(a[0]), f64::from(b[0]));
        let (y0, y1) = (f64::from(a[1]), f64::from(b[1]));
        let length = ((x0 - x1).powi(2) + (y0 - y1).powi(2)).sqrt();
        let angle = (y0 - y1).atan2(x0 - x1).to_degrees();
        let centre = [((x0 + x1) / 2.0) as i64, ((y0 + y1) / 2.0) as i64];
        let poly = ellipse2poly(
            centre,
            [(length / 2.0) as i64, i64::from(STICK_WIDTH)],
            angle as i64,
        );
        fill_convex_poly(&mut canvas, &poly, COLOURS[limb[0]]);
    }
    let dim = (255.0f64 * 0.6) as u8; // what `(canvas * 0.6).astype(np.uint8)` gives for 255
    for v in &mut canvas.px {
        *v = if *v == 255 {
            dim
        } else {
            (f64::from(*v) * 0.6) as u8
        };
    }
    for (i, kp) in kps.iter().enumerate() {
        let c = [kp[0] as i64, kp[1] as i64];
        circle_filled(&mut canvas, c, RADIUS, COLOURS[i]);
    }
    RgbImage::from_raw(w, h, canvas.px).unwrap_or_else(|| RgbImage::new(w, h))
}

struct Canvas {
    w: i32,
    h: i32,
    px: Vec<u8>,
}

impl Canvas {
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && x < i64::from(self.w) && y < i64::from(self.h) {
            let i = (y as usize * self.w as usize + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Horizontal run `x1..=x2` on row `y`, clipped.
    fn hline(&mut self, y: i64, x1: i64, x2: i64, c: [u8; 3]) {
        if y < 0 || y >= i64::from(self.h) {
            return;
        }
        let x1 = x1.max(0);
        let x2 = x2.min(i64::from(self.w) - 1);
        for x in x1..=x2 {
            self.put(x, y, c);
        }
    }
}

/// OpenCV's `SinTable` entry: sin of a whole degree, as a float.
fn sin_deg(deg: i64) -> f64 {
    f64::from((deg as f64).to_radians().sin() as f32)
}

/// `cv::ellipse2Poly(center, axes, angle, 0, 360, 1)` with integer output, consecutive duplicates dropped.
fn ellipse2poly(centre: [i64; 2], axes: [i64; 2], angle: i64) -> Vec<[i64; 2]> {
    let mut angle = angle;
    while angle < 0 {
        angle += 360;
    }
    while angle > 360 {
        angle -= 360;
    }
    let alpha = sin_deg(90 - angle); // cos
    let beta = sin_deg(angle); // sin
    let mut pts: Vec<[i64; 2]> = Vec::with_capacity(361);
    for i in 0..=360i64 {
        let x = axes[0] as f64 * sin_deg(90 - i);
        let y = axes[1] as f64 * sin_deg(i);
        let px = centre[0] as f64 + x * alpha - y * beta;
        let py = centre[1] as f64 + x * beta + y * alpha;
        let p = [px.round_ties_even() as i64, py.round_ties_even() as i64];
        if pts.last() != Some(&p) {
            pts.push(p);
        }
    }
    if pts.len() == 1 {
        pts.push(centre);
    }
    pts
}

/// OpenCV's 8-connected `Line` (a Bresenham `LineIterator`, left to right).
fn line8(canvas: &mut Canvas, p0: [i64; 2], p1: [i64; 2], c: [u8; 3]) {
    let (mut a, mut b) = (p0, p1);
    if b[0] < a[0] {
        std::mem::swap(&mut a, &mut b);
    }
    let dx = b[0] - a[0];
    let dy = (b[1] - a[1]).abs();
    let sy = if b[1] < a[1] { -1 } else { 1 };
    let steep = dy > dx;
    let (major, minor) = if steep { (dy, dx) } else { (dx, dy) };
    let mut err = major - 2 * minor;
    let (mut x, mut y) = (a[0], a[1]);
    for _ in 0..=major {
        canvas.put(x, y, c);
        let diag = err < 0;
        err += -2 * minor + if diag { 2 * major } else { 0 };
        if steep {
            y += sy;
            if diag {
                x += 1;
            }
        } else {
            x += 1;
            if diag {
                y += sy;
            }
        }
    }
}

/// OpenCV's `FillConvexPoly` for 8-connected lines and no fractional bits: the outline drawn as
/// lines, then scanlines between two edges walked in 16.16 fixed point.
fn fill_convex_poly(canvas: &mut Canvas, v: &[[i64; 2]], c: [u8; 3]) {
    const XY_SHIFT: i64 = 16;
    const XY_ONE: i64 = 1 << XY_SHIFT;
    let npts = v.len();
    if npts == 0 {
        return;
    }
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (v[0][0], v[0][0], v[0][1], v[0][1]);
    let mut imin = 0;
    let mut p0 = v[npts - 1];
    for (i, &p) in v.iter().enumerate() {
        if p[1] < ymin {
            ymin = p[1];
            imin = i;
        }
        ymax = ymax.max(p[1]);
        xmax = xmax.max(p[0]);
        xmin = xmin.min(p[0]);
        line8(canvas, p0, p, c);
        p0 = p;
    }
    if npts < 3
        || xmax < 0
        || ymax < 0
        || xmin >= i64::from(canvas.w)
        || ymin >= i64::from(canvas.h)
    {
        return;
    }
    let ymax = ymax.min(i64::from(canvas.h) - 1);
    #[derive(Clone, Copy)]
    struct Edge {
        idx: usize,
        di: usize,
        x: i64,
        dx: i64,
        ye: i64,
    }
    let mut edge = [
        Edge {
            idx: imin,
            di: 1,
            x: -XY_ONE,
            dx: 0,
            ye: ymin,
        },
        Edge {
            idx: imin,
            di: npts - 1,
            x: -XY_ONE,
            dx: 0,
            ye: ymin,
        },
    ];
    let mut edges = npts as i64;
    let delta = XY_ONE >> 1;
    let mut y = ymin;
    loop {
        for e in &mut edge {
            if y >= e.ye {
                let mut idx0 = e.idx;
                let mut idx = (idx0 + e.di) % npts;
                loop {
                    edges -= 1;
                    if edges < 0 {
                        break;
                    }
                    let ty = v[idx][1];
                    if ty > y {
                        let xs = v[idx0][0] << XY_SHIFT;
                        let xe = v[idx][0] << XY_SHIFT;
                        e.ye = ty;
                        e.dx = ((xe - xs) * 2 + (ty - y)) / (2 * (ty - y));
                        e.x = xs;
                        e.idx = idx;
                        break;
                    }
                    idx0 = idx;
                    idx = (idx + e.di) % npts;
                }
            }
        }
        if edges < 0 {
            break;
        }
        if y >= 0 {
            let (l, r) = if edge[0].x > edge[1].x {
                (1, 0)
            } else {
                (0, 1)
            };
            let xx1 = (edge[l].x + delta) >> XY_SHIFT;
            let xx2 = (edge[r].x + delta) >> XY_SHIFT;
            if xx2 >= 0 && xx1 < i64::from(canvas.w) {
                canvas.hline(y, xx1, xx2, c);
            }
        }
        edge[0].x += edge[0].dx;
        edge[1].x += edge[1].dx;
        y += 1;
        if y > ymax {
            break;
        }
    }
}

/// OpenCV's filled `Circle` (thickness -1, 8-connected, no shift).
fn circle_filled(canvas: &mut Canvas, centre: [i64; 2], radius: i32, c: [u8; 3]) {
    let r = i64::from(radius);
    let (mut err, mut dx, mut dy, mut plus, mut minus) = (0i64, r, 0i64, 1i64, (r << 1) - 1);
    while dx >= dy {
        let (y11, y12, y21, y22) = (
            centre[1] - dy,
            centre[1] + dy,
            centre[1] - dx,
            centre[1] + dx,
        );
        let (x11, x12, x21, x22) = (
            centre[0] - dx,
            centre[0] + dx,
            centre[0] - dy,
            centre[0] + dy,
        );
        canvas.hline(y11, x11, x12, c);
        canvas.hline(y12, x11, x12, c);
        canvas.hline(y21, x21, x22, c);
        canvas.hline(y22, x21, x22, c);
        dy += 1;
        err += plus;
        plus += 2;
        let mask = if err <= 0 { 0 } else { -1 };
        err -= minus & mask;
        dx += mask;
        minus -= mask & 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_has_expected_extent() {
        let img = keypoint_image(64, 64, &[[32.0, 32.0]; 5]);
        // The last circle (magenta) covers the centre and reaches 10 px each way.
        assert_eq!(img.get_pixel(32, 32).0, [255, 0, 255]);
        assert_eq!(img.get_pixel(42, 32).0, [255, 0, 255]);
        assert_eq!(img.get_pixel(43, 32).0, [0, 0, 0]);
    }

    #[test]
    fn off_canvas_points_do_not_panic() {
        let img = keypoint_image(
            16,
            16,
            &[
                [-100.0, 5.0],
                [1e6, -3.0],
                [8.0, 8.0],
                [f32::NAN, 2.0],
                [20.0, 20.0],
            ],
        );
        assert_eq!(img.dimensions(), (16, 16));
    }
}
