//! Seeded Gaussian noise. The same `(seed, stream)` gives the same numbers on every machine:
//! SplitMix64 seeds a xoshiro256++ generator, Box-Muller turns pairs of uniforms into normals.
//! Stream 0 is the initial latent noise; stream `k + 1` is Euler-ancestral's noise at step `k`.

/// `len` standard-normal f32 values for `seed` and `stream`.
pub fn gaussian(seed: u64, stream: u64, len: usize) -> Vec<f32> {
    let mut rng = Xoshiro::new(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17));
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        // u1 in (0, 1], u2 in [0, 1).
        let u1 = 1.0 - rng.next_f64();
        let u2 = rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(len);
    out
}

struct Xoshiro([u64; 4]);

impl Xoshiro {
    fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Xoshiro([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_standard() {
        let a = gaussian(42, 0, 10_001);
        assert_eq!(a, gaussian(42, 0, 10_001));
        assert_ne!(a[..8], gaussian(42, 1, 8)[..]);
        assert_ne!(a[..8], gaussian(43, 0, 8)[..]);
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / a.len() as f64;
        let var = a
            .iter()
            .map(|v| (f64::from(*v) - mean).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}
