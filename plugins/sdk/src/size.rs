//! The working size for diffusion.
//!
//! Diffusion models want both sides to be multiples of 64 and work best near a megapixel, so a
//! plan's size has its short side at [`SHORT_SIDE`] and its long side between that and
//! [`MAX_LONG_SIDE`], as close to the photo's aspect ratio as those steps allow.

use crate::Size;

/// The short side of every working size, in pixels.
pub const SHORT_SIDE: u32 = 1024;
/// The most pixels the long side may have.
pub const MAX_LONG_SIDE: u32 = 1280;
/// Both sides are multiples of this.
pub const STEP: u32 = 64;

/// The working size for a photo of `width` x `height` pixels: short side 1024, long side the
/// multiple of 64 nearest to `1024 * aspect`, limited to 1024..=1280, orientation kept. A
/// degenerate photo (a zero side) gets a square.
pub fn working_size(width: u32, height: u32) -> Size {
    if width == 0 || height == 0 {
        return Size {
            width: SHORT_SIDE,
            height: SHORT_SIDE,
        };
    }
    let (short, long) = (width.min(height) as u64, width.max(height) as u64);
    // Nearest multiple of STEP to SHORT_SIDE * long / short, in integers (ties round up).
    let steps = (2 * SHORT_SIDE as u64 * long + STEP as u64 * short) / (2 * STEP as u64 * short);
    let long_side =
        (steps.min((MAX_LONG_SIDE / STEP) as u64) as u32 * STEP).clamp(SHORT_SIDE, MAX_LONG_SIDE);
    if width >= height {
        Size {
            width: long_side,
            height: SHORT_SIDE,
        }
    } else {
        Size {
            width: SHORT_SIDE,
            height: long_side,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wh(width: u32, height: u32) -> (u32, u32) {
        let s = working_size(width, height);
        (s.width, s.height)
    }

    #[test]
    fn square_and_small_photos_get_1024() {
        assert_eq!(wh(512, 512), (1024, 1024));
        assert_eq!(wh(4000, 4000), (1024, 1024));
        assert_eq!(wh(1, 1), (1024, 1024));
        assert_eq!(wh(0, 300), (1024, 1024));
    }

    #[test]
    fn aspect_is_rounded_to_steps_of_64() {
        // 4:3 -> 1365.3 -> capped at 1280.
        assert_eq!(wh(4032, 3024), (1280, 1024));
        assert_eq!(wh(3024, 4032), (1024, 1280));
        // 1.1 -> 1126.4 -> 1152 (nearest of 1088 / 1152).
        assert_eq!(wh(1100, 1000), (1152, 1024));
        // 1.09 -> 1116.2 -> 1088.
        assert_eq!(wh(1090, 1000), (1088, 1024));
        // 1.03 -> 1054.7 -> 1024 (1056 is the midpoint, below it rounds down).
        assert_eq!(wh(1030, 1000), (1024, 1024));
        // Exactly on the midpoint 1056 rounds up.
        assert_eq!(wh(1056, 1024), (1088, 1024));
        // Extreme panoramas stay within bounds.
        assert_eq!(wh(100_000, 1), (1280, 1024));
        assert_eq!(wh(1, u32::MAX), (1024, 1280));
    }

    #[test]
    fn sides_are_multiples_of_64_and_within_bounds() {
        for w in (1..3000).step_by(37) {
            for h in (1..3000).step_by(53) {
                let s = working_size(w, h);
                assert_eq!(s.width % STEP, 0);
                assert_eq!(s.height % STEP, 0);
                assert_eq!(s.width.min(s.height), SHORT_SIDE);
                assert!(s.width.max(s.height) <= MAX_LONG_SIDE);
                if w > h {
                    assert!(s.width >= s.height);
                } else {
                    assert!(s.width <= s.height);
                }
            }
        }
    }
}
