//! Soft masks drawn from geometry.

use crate::Plane;

/// A `width` x `height` mask of the ellipse inscribed in `bbox` (`[x1, y1, x2, y2]`, pixels,
/// origin top-left): 1 inside, 0 outside, and a smoothstep ramp `feather` pixels wide centred
/// on the outline (a hard edge, sampled at pixel centres, when `feather` is 0). The distance to
/// the outline is the first-order estimate `(rho - 1) / |grad rho|` of the normalised radius
/// `rho`: exact for circles and along the axes. A box with no area, or any coordinate that is
/// not finite, gives an empty (all 0) mask.
pub fn ellipse_mask(width: u32, height: u32, bbox: [f32; 4], feather: f32) -> Plane {
    let mut mask = Plane::new(width, height, 0.0);
    let [x1, y1, x2, y2] = bbox;
    let (ax, ay) = ((x2 - x1) * 0.5, (y2 - y1) * 0.5);
    if !(bbox.iter().all(|v| v.is_finite()) && ax > 0.0 && ay > 0.0) {
        return mask;
    }
    let feather = if feather.is_finite() {
        feather.max(0.0)
    } else {
        0.0
    };
    let (cx, cy) = (x1 + ax, y1 + ay);
    let reach = feather * 0.5 + 1.0;
    let span = |lo: f32, hi: f32, len: u32| {
        let lo = (lo - reach).floor().clamp(0.0, len as f32) as usize;
        let hi = (hi + reach).ceil().clamp(0.0, len as f32) as usize;
        lo..hi
    };
    let (xs, ys) = (span(x1, x2, width), span(y1, y2, height));
    let (ax2, ay2) = (ax * ax, ay * ay);
    let w = width as usize;
    for y in ys {
        let dy = y as f32 + 0.5 - cy;
        let row = &mut mask.data[y * w..][..w];
        for x in xs.clone() {
            let dx = x as f32 + 0.5 - cx;
            let rho = (dx * dx / ax2 + dy * dy / ay2).sqrt();
            let grad = ((dx / ax2) * (dx / ax2) + (dy / ay2) * (dy / ay2)).sqrt();
            // Signed distance to the outline in pixels, negative inside.
            let s = if grad > 0.0 {
                (rho - 1.0) * rho / grad
            } else {
                f32::NEG_INFINITY
            };
            row[x] = if feather > 0.0 {
                let t = (0.5 - s / feather).clamp(0.0, 1.0);
                t * t * (3.0 - 2.0 * t)
            } else if s <= 0.0 {
                1.0
            } else {
                0.0
            };
        }
    }
    mask
}
