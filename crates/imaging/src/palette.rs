//! Palettes: the nearest colour, quantisation (plain, ordered dithering, Floyd-Steinberg error
//! diffusion) and the colours that best represent an image (k-means).

use crate::Rgba;
use crate::noise::Rng;

/// Most pixels k-means looks at; larger images are sampled evenly.
const KMEANS_SAMPLES: usize = 16 * 1024;
/// Most Lloyd iterations per k-means run.
const KMEANS_ITERATIONS: usize = 24;
/// k-means runs from different seeds; the most compact wins.
const KMEANS_RUNS: u64 = 3;

/// A palette colour, red, green, blue.
pub type Color = [u8; 3];

/// The nearest colour of `palette` to (`r`, `g`, `b`) by the "redmean" weighted distance (a
/// cheap approximation of perceived difference); its index.
#[inline]
pub fn nearest_color(palette: &[Color], r: i32, g: i32, b: i32) -> usize {
    let mut best = 0;
    let mut best_d = i64::MAX;
    for (i, c) in palette.iter().enumerate() {
        let rmean = (r + c[0] as i32) / 2;
        let dr = (r - c[0] as i32) as i64;
        let dg = (g - c[1] as i32) as i64;
        let db = (b - c[2] as i32) as i64;
        let d = (((512 + rmean as i64) * dr * dr) >> 8)
            + 4 * dg * dg
            + (((767 - rmean as i64) * db * db) >> 8);
        if d < best_d {
            best_d = d;
            best = i;
        }
    }
    best
}

/// The 4 x 4 Bayer matrix, values 0..16.
const BAYER4: [[u8; 4]; 4] = [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]];

impl Rgba {
    /// Replaces every colour by the nearest colour of `palette` ([`nearest_color`]); repeated
    /// colours are looked up once. An empty palette leaves the image as it is.
    pub fn quantize(&mut self, palette: &[Color]) {
        self.quantize_dithered(palette, 0.0);
    }

    /// Like [`Rgba::quantize`], with ordered (4 x 4 Bayer) dithering of `strength` (0: none;
    /// 1: a spread of about a quarter of the full range, enough for 4-colour palettes) to render
    /// gradients with few colours.
    pub fn quantize_dithered(&mut self, palette: &[Color], strength: f32) {
        if palette.is_empty() {
            return;
        }
        let spread = (strength.max(0.0) * 64.0) as i32;
        let w = self.width as usize;
        let mut cache = NearestCache::new(palette);
        for (i, p) in self.data.chunks_exact_mut(4).enumerate() {
            let offset = if spread == 0 {
                0
            } else {
                let (x, y) = (i % w, i / w);
                (BAYER4[y & 3][x & 3] as i32 * 2 - 15) * spread / 32
            };
            let key = [
                p[0] as i32 + offset,
                p[1] as i32 + offset,
                p[2] as i32 + offset,
            ];
            p[..3].copy_from_slice(&palette[cache.nearest(key)]);
        }
    }

    /// Replaces every colour by the nearest colour of `palette` ([`nearest_color`]), diffusing
    /// each pixel's error to its unvisited neighbours (Floyd-Steinberg: 7/16 right, 3/16 below
    /// left, 5/16 below, 1/16 below right; rows left to right, integer arithmetic, so the result
    /// is exact and the same everywhere). An empty palette leaves the image as it is.
    pub fn quantize_diffused(&mut self, palette: &[Color]) {
        if palette.is_empty() || self.data.is_empty() {
            return;
        }
        let w = self.width as usize;
        let mut cache = NearestCache::new(palette);
        // Errors for this row and the next, one pixel of padding on each side.
        let mut here = vec![[0i32; 3]; w + 2];
        let mut below = vec![[0i32; 3]; w + 2];
        for row in self.data.chunks_exact_mut(w * 4) {
            for (x, p) in row.chunks_exact_mut(4).enumerate() {
                let mut v = [0i32; 3];
                for c in 0..3 {
                    v[c] = (p[c] as i32 + here[x + 1][c]).clamp(0, 255);
                }
                let chosen = palette[cache.nearest(v)];
                p[..3].copy_from_slice(&chosen);
                for c in 0..3 {
                    let e = v[c] - chosen[c] as i32;
                    here[x + 2][c] += (e * 7 + 8) >> 4;
                    below[x][c] += (e * 3 + 8) >> 4;
                    below[x + 1][c] += (e * 5 + 8) >> 4;
                    below[x + 2][c] += (e + 8) >> 4;
                }
            }
            std::mem::swap(&mut here, &mut below);
            below.iter_mut().for_each(|e| *e = [0; 3]);
        }
    }

    /// Up to `count` colours that best represent the image: k-means in RGB (squared Euclidean
    /// distance) over its pixels with alpha of at least 128 (all pixels when none is), sampled
    /// evenly down to 16,384, from k-means++ seeds; the most compact of three deterministic
    /// runs, most used colour first. Fewer colours when the image has fewer distinct ones.
    pub fn kmeans_palette(&self, count: usize) -> Vec<Color> {
        let visible = self.data.chunks_exact(4).filter(|p| p[3] >= 128).count();
        let pixels = self
            .data
            .chunks_exact(4)
            .filter(|p| visible == 0 || p[3] >= 128);
        let total = if visible == 0 {
            self.pixel_count()
        } else {
            visible
        };
        let stride = total.div_ceil(KMEANS_SAMPLES).max(1);
        let samples: Vec<[f32; 3]> = pixels
            .step_by(stride)
            .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
            .collect();
        let mut distinct: Vec<[u8; 3]> = samples
            .iter()
            .map(|s| [s[0] as u8, s[1] as u8, s[2] as u8])
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        if count == 0 || samples.is_empty() {
            return Vec::new();
        }
        if distinct.len() <= count {
            return by_use(
                &samples,
                distinct.iter().map(|c| c.map(f32::from)).collect(),
            );
        }
        let best = (0..KMEANS_RUNS)
            .map(|run| kmeans(&samples, count, run))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(centres, _)| centres)
            .unwrap_or_default();
        by_use(&samples, best)
    }
}

/// Slots of the [`NearestCache`] (a power of two).
const CACHE_SLOTS: usize = 1 << 14;

/// [`nearest_color`] memoised in a direct-mapped table: photos repeat colours, and a lookup
/// over a large palette costs a distance per palette colour. Exact (a slot holds its key).
struct NearestCache<'a> {
    palette: &'a [Color],
    slots: Vec<([i32; 3], u32)>,
}

impl<'a> NearestCache<'a> {
    fn new(palette: &'a [Color]) -> Self {
        NearestCache {
            palette,
            // No colour is `[-1_000_000; 3]`, so the empty slots never match.
            slots: vec![([-1_000_000; 3], 0); CACHE_SLOTS],
        }
    }

    #[inline]
    fn nearest(&mut self, key: [i32; 3]) -> usize {
        let hash = (key[0] as u32)
            .wrapping_mul(0x9e37_79b1)
            .wrapping_add((key[1] as u32).wrapping_mul(0x85eb_ca77))
            .wrapping_add((key[2] as u32).wrapping_mul(0xc2b2_ae3d));
        let slot = &mut self.slots[(hash >> 18) as usize & (CACHE_SLOTS - 1)];
        if slot.0 != key {
            *slot = (
                key,
                nearest_color(self.palette, key[0], key[1], key[2]) as u32,
            );
        }
        slot.1 as usize
    }
}

/// Squared Euclidean distance in RGB.
#[inline]
fn distance2(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let (dr, dg, db) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dr * dr + dg * dg + db * db
}

/// The index of the centre nearest to `p`, and its squared distance.
#[inline]
fn nearest_centre(centres: &[[f32; 3]], p: &[f32; 3]) -> (usize, f32) {
    let mut best = (0, f32::MAX);
    for (i, c) in centres.iter().enumerate() {
        let d = distance2(p, c);
        if d < best.1 {
            best = (i, d);
        }
    }
    best
}

/// One k-means run of `k` centres from k-means++ seeds drawn with `seed`: the centres and their
/// total squared distance to the samples.
fn kmeans(samples: &[[f32; 3]], k: usize, seed: u64) -> (Vec<[f32; 3]>, f32) {
    let mut rng = Rng::new(0x6b6d_6561_6e73 ^ seed);
    let n = samples.len();
    let mut centres = vec![samples[(rng.next_u64() % n as u64) as usize]];
    let mut nearest: Vec<f32> = samples.iter().map(|s| distance2(s, &centres[0])).collect();
    while centres.len() < k {
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let mut target = rng.next_f32() as f64 * total;
        let mut pick = n - 1;
        for (i, &d) in nearest.iter().enumerate() {
            target -= d as f64;
            if target < 0.0 {
                pick = i;
                break;
            }
        }
        let centre = samples[pick];
        for (d, s) in nearest.iter_mut().zip(samples) {
            *d = d.min(distance2(s, &centre));
        }
        centres.push(centre);
    }
    let mut assignment = vec![usize::MAX; n];
    let mut sse = 0.0f64;
    for _ in 0..KMEANS_ITERATIONS {
        let mut changed = false;
        let mut sums = vec![[0.0f64; 4]; k];
        sse = 0.0;
        let mut worst = (0, -1.0f32);
        for (i, s) in samples.iter().enumerate() {
            let (c, d) = nearest_centre(&centres, s);
            changed |= assignment[i] != c;
            assignment[i] = c;
            sse += d as f64;
            if d > worst.1 {
                worst = (i, d);
            }
            let sum = &mut sums[c];
            sum[0] += s[0] as f64;
            sum[1] += s[1] as f64;
            sum[2] += s[2] as f64;
            sum[3] += 1.0;
        }
        if !changed {
            break;
        }
        for (centre, sum) in centres.iter_mut().zip(&sums) {
            if sum[3] > 0.0 {
                *centre = [0, 1, 2].map(|c| (sum[c] / sum[3]) as f32);
            } else {
                // An empty cluster takes the sample worst served so far.
                *centre = samples[worst.0];
                worst.1 = -1.0;
            }
        }
    }
    (centres, sse as f32)
}

/// `centres` rounded to colours, the one serving most samples first (ties: the smaller colour).
fn by_use(samples: &[[f32; 3]], centres: Vec<[f32; 3]>) -> Vec<Color> {
    let mut uses = vec![0usize; centres.len()];
    for s in samples {
        uses[nearest_centre(&centres, s).0] += 1;
    }
    let mut colours: Vec<(usize, Color)> = uses
        .into_iter()
        .zip(&centres)
        .map(|(n, c)| (n, c.map(|v| (v + 0.5).clamp(0.0, 255.0) as u8)))
        .collect();
    colours.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<Color> = Vec::with_capacity(colours.len());
    for (_, c) in colours {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}
