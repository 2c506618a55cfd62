//! Deterministic random numbers and smooth value noise, for textures (paper, pigment, clay).
//!
//! Everything here depends only on its arguments, so a style renders the same picture for the
//! same photo and seed, natively and in WebAssembly.

use crate::Plane;

/// A small, fast pseudo-random generator (SplitMix64). Not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random number in `0.0..1.0`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

/// A plane of independent uniform random values in `0.0..1.0`.
pub fn white_noise(width: u32, height: u32, seed: u64) -> Plane {
    let mut rng = Rng::new(seed);
    let mut plane = Plane::new(width, height, 0.0);
    for v in &mut plane.data {
        *v = rng.next_f32();
    }
    plane
}

/// For each output coordinate: the lattice cell index, the next index and the smoothed
/// position between them.
fn lattice_axis(len: u32, cells: usize, cell: f32, wrap: bool) -> Vec<(usize, usize, f32)> {
    (0..len)
        .map(|i| {
            let f = i as f32 / cell;
            let i0 = f.floor() as usize;
            let t = f - i0 as f32;
            let t = t * t * (3.0 - 2.0 * t);
            if wrap {
                (i0 % cells, (i0 + 1) % cells, t)
            } else {
                (i0.min(cells - 1), (i0 + 1).min(cells - 1), t)
            }
        })
        .collect()
}

/// Smooth value noise in `0.0..1.0` with features about `cell` pixels apart: random values on
/// a lattice, interpolated with a smoothstep. With `wrap`, the lattice is periodic over the
/// plane, so the plane tiles seamlessly (the cell is adjusted to divide the size evenly).
pub fn value_noise(width: u32, height: u32, cell: f32, seed: u64, wrap: bool) -> Plane {
    let mut plane = Plane::new(width, height, 0.0);
    Lattice::new(width, height, cell, seed, wrap).mix_into(&mut plane, |out, v| *out = v);
    plane
}

/// The random lattice of a [`value_noise`], each of its rows already interpolated along x.
struct Lattice {
    /// Each lattice row at every output x.
    across: Vec<f32>,
    /// For each output row: the two lattice rows and the smoothed position between them.
    ys: Vec<(usize, usize, f32)>,
}

impl Lattice {
    /// The lattice of `value_noise(width, height, cell, seed, wrap)`.
    fn new(width: u32, height: u32, cell: f32, seed: u64, wrap: bool) -> Self {
        let cell = cell.max(1.0);
        let (cx, cy, cell_x, cell_y) = if wrap {
            let cx = ((width as f32 / cell).round() as usize).max(1);
            let cy = ((height as f32 / cell).round() as usize).max(1);
            (cx, cy, width as f32 / cx as f32, height as f32 / cy as f32)
        } else {
            let cx = (width as f32 / cell).ceil() as usize + 2;
            let cy = (height as f32 / cell).ceil() as usize + 2;
            (cx, cy, cell, cell)
        };
        let mut rng = Rng::new(seed);
        let lattice: Vec<f32> = (0..cx * cy).map(|_| rng.next_f32()).collect();
        let xs = lattice_axis(width, cx, cell_x, wrap);
        // Each lattice row interpolated along x once; an output row then mixes two of them, a
        // loop without lookups that vectorises.
        let across = lattice
            .chunks_exact(cx)
            .flat_map(|r| xs.iter().map(|&(x0, x1, tx)| r[x0] + (r[x1] - r[x0]) * tx))
            .collect();
        let ys = lattice_axis(height, cy, cell_y, wrap);
        Lattice { across, ys }
    }

    /// Calls `f(value, noise)` for every value of `plane` (the noise's size) with the noise
    /// there.
    fn mix_into(&self, plane: &mut Plane, f: impl Fn(&mut f32, f32)) {
        let w = (plane.width as usize).max(1);
        for (y, row) in plane.data.chunks_exact_mut(w).enumerate() {
            self.mix_row(y, row, &f);
        }
    }

    /// Calls `f(value, noise)` for every value of `row`, row `y` of the noise, with the noise
    /// there: `a + (b - a) * ty` of the two lattice rows around it.
    #[inline(always)]
    fn mix_row(&self, y: usize, row: &mut [f32], f: impl Fn(&mut f32, f32)) {
        let (w, (y0, y1, ty)) = (row.len(), self.ys[y]);
        let (a, b) = (&self.across[y0 * w..][..w], &self.across[y1 * w..][..w]);
        for ((out, &a), &b) in row.iter_mut().zip(a).zip(b) {
            f(out, a + (b - a) * ty);
        }
    }
}

/// Fractal noise: `octaves` layers of [`value_noise`], each half the cell size and half the
/// amplitude of the one before, normalised to `0.0..=1.0` in range.
pub fn fractal_noise(
    width: u32,
    height: u32,
    cell: f32,
    octaves: u32,
    seed: u64,
    wrap: bool,
) -> Plane {
    let mut amplitude = 1.0;
    let mut cell = cell;
    let layers: Vec<(Lattice, f32)> = (0..octaves.max(1))
        .map(|octave| {
            let seed = seed.wrapping_add(octave as u64 * 7919);
            let layer = (Lattice::new(width, height, cell, seed, wrap), amplitude);
            amplitude *= 0.5;
            cell = (cell * 0.5).max(1.0);
            layer
        })
        .collect();
    // Row by row, each layer added in turn while the row is in the cache, without a plane of
    // its own.
    let mut sum = Plane::new(width, height, 0.0);
    for (y, row) in sum
        .data
        .chunks_exact_mut((width as usize).max(1))
        .enumerate()
    {
        for (lattice, amplitude) in &layers {
            lattice.mix_row(y, row, |s, v| *s += v * amplitude);
        }
    }
    sum.normalize();
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            let x = a.next_f32();
            assert_eq!(x, b.next_f32());
            assert!((0.0..1.0).contains(&x));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn value_noise_is_smooth_and_in_range() {
        let n = value_noise(100, 80, 16.0, 3, false);
        assert_eq!(n.data.len(), 8000);
        assert!(n.data.iter().all(|v| (0.0..=1.0).contains(v)));
        for y in 0..80 {
            for x in 1..100 {
                assert!((n.get(x, y) - n.get(x - 1, y)).abs() < 0.2);
            }
        }
    }

    #[test]
    fn wrapped_noise_tiles() {
        let n = value_noise(64, 64, 16.0, 9, true);
        // The step across the seam is as small as any step inside.
        for y in 0..64 {
            assert!((n.get(63, y) - n.get(0, y)).abs() < 0.2);
            assert!((n.get(y, 63) - n.get(y, 0)).abs() < 0.2);
        }
        let f = fractal_noise(64, 64, 32.0, 4, 1, true);
        let (lo, hi) = f.min_max();
        assert_eq!((lo, hi), (0.0, 1.0));
    }
}
