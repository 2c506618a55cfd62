//! WebAssembly SIMD128 (`core::arch::wasm32`) versions of the [`Plane`](crate::Plane) filters'
//! innermost loops that Cranelift runs slowly as the compiler leaves them: running sums
//! whose dependency chain is one add per pixel, and convolutions that store every partial sum.
//! Compiled only for `wasm32` with `simd128` (the style components' target); natively the
//! scalar loops in `plane.rs` run, and they are the reference: each function here does the same
//! floating-point operations in the same order on every value, only several values at once, so
//! its results are bit for bit the scalar ones (`tests/plans.rs` compares the styles' wasm
//! output with their native twins byte for byte).

use core::arch::wasm32::*;

/// Four `f32` from `s[i..i + 4]`, unchecked (a bounds check per load costs as much as the
/// arithmetic in Cranelift's code): each caller checks its ranges once, on entry.
///
/// # Safety
/// `i + 4 <= s.len()`.
#[inline(always)]
unsafe fn load(s: &[f32], i: usize) -> v128 {
    debug_assert!(i + 4 <= s.len());
    // SAFETY: the caller guarantees 4 readable f32 at `i`; wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr().add(i).cast()) }
}

/// Stores four `f32` to `s[i..i + 4]`, unchecked as [`load`].
///
/// # Safety
/// `i + 4 <= s.len()`.
#[inline(always)]
unsafe fn store(s: &mut [f32], i: usize, v: v128) {
    debug_assert!(i + 4 <= s.len());
    // SAFETY: the caller guarantees 4 writable f32 at `i`; wasm stores need no alignment.
    unsafe { v128_store(s.as_mut_ptr().add(i).cast(), v) }
}

/// The 4 x 4 transpose: lane `k` of row `j` becomes lane `j` of row `k`.
#[inline(always)]
fn transpose([a, b, c, d]: [v128; 4]) -> [v128; 4] {
    let ab_lo = i32x4_shuffle::<0, 4, 1, 5>(a, b);
    let ab_hi = i32x4_shuffle::<2, 6, 3, 7>(a, b);
    let cd_lo = i32x4_shuffle::<0, 4, 1, 5>(c, d);
    let cd_hi = i32x4_shuffle::<2, 6, 3, 7>(c, d);
    [
        i32x4_shuffle::<0, 1, 4, 5>(ab_lo, cd_lo),
        i32x4_shuffle::<2, 3, 6, 7>(ab_lo, cd_lo),
        i32x4_shuffle::<0, 1, 4, 5>(ab_hi, cd_hi),
        i32x4_shuffle::<2, 3, 6, 7>(ab_hi, cd_hi),
    ]
}

/// The middle of a box filter's line (`box_line_middle` in `plane.rs`) on four rows at once: for `x` in `lo..hi` (a
/// multiple of 4 long), `acc += src[x + r] as f64 - src[x - r - 1] as f64` and
/// `out[x] = (acc * inv) as f32`, with each row's running sum in `acc` (updated). The four sums
/// are independent chains in two `f64x2`, so the adds overlap instead of waiting on each other.
pub(crate) fn box_rows_middle(
    src: [&[f32]; 4],
    out: &mut [&mut [f32]; 4],
    r: usize,
    (lo, hi): (usize, usize),
    inv: f64,
    acc: &mut [f64; 4],
) {
    assert!((hi - lo) % 4 == 0 && lo > r);
    assert!(src.iter().all(|s| hi + r <= s.len()) && out.iter().all(|o| hi <= o.len()));
    let inv = f64x2_splat(inv);
    let mut acc01 = f64x2(acc[0], acc[1]);
    let mut acc23 = f64x2(acc[2], acc[3]);
    let mut x = lo;
    while x < hi {
        // SAFETY: lo <= x, x + 4 <= hi, r < lo and hi + r <= each row's length (checked
        // above): both windows lie in every row.
        let adds = transpose(src.map(|s| unsafe { load(s, x + r) }));
        let subs = transpose(src.map(|s| unsafe { load(s, x - r - 1) }));
        let mut outs = [f32x4_splat(0.0); 4];
        for k in 0..4 {
            let (add, sub) = (adds[k], subs[k]);
            let high = |v: v128| i32x4_shuffle::<2, 3, 2, 3>(v, v);
            let d01 = f64x2_sub(f64x2_promote_low_f32x4(add), f64x2_promote_low_f32x4(sub));
            let d23 = f64x2_sub(
                f64x2_promote_low_f32x4(high(add)),
                f64x2_promote_low_f32x4(high(sub)),
            );
            acc01 = f64x2_add(acc01, d01);
            acc23 = f64x2_add(acc23, d23);
            let o01 = f32x4_demote_f64x2_zero(f64x2_mul(acc01, inv));
            let o23 = f32x4_demote_f64x2_zero(f64x2_mul(acc23, inv));
            outs[k] = i32x4_shuffle::<0, 1, 4, 5>(o01, o23);
        }
        for (row, v) in out.iter_mut().zip(transpose(outs)) {
            // SAFETY: x + 4 <= hi <= the row's length (checked above).
            unsafe { store(row, x, v) };
        }
        x += 4;
    }
    *acc = [
        f64x2_extract_lane::<0>(acc01),
        f64x2_extract_lane::<1>(acc01),
        f64x2_extract_lane::<0>(acc23),
        f64x2_extract_lane::<1>(acc23),
    ];
}

/// One row of a box filter's vertical pass (`column_step` in `plane.rs`) for the leading
/// multiple of 8 of `acc`: `acc += add - sub` and `out = acc * inv`; returns how many values it
/// wrote.
pub(crate) fn column_step(
    acc: &mut [f32],
    add: &[f32],
    sub: &[f32],
    out: &mut [f32],
    inv: f32,
) -> usize {
    let n = acc.len();
    assert!(add.len() >= n && sub.len() >= n && out.len() >= n);
    let inv = f32x4_splat(inv);
    let mut x = 0;
    while x + 8 <= n {
        // SAFETY: x + 8 <= n, and every slice holds n values (checked above).
        unsafe {
            let a = f32x4_add(load(acc, x), f32x4_sub(load(add, x), load(sub, x)));
            let b = f32x4_add(
                load(acc, x + 4),
                f32x4_sub(load(add, x + 4), load(sub, x + 4)),
            );
            store(acc, x, a);
            store(acc, x + 4, b);
            store(out, x, f32x4_mul(a, inv));
            store(out, x + 4, f32x4_mul(b, inv));
        }
        x += 8;
    }
    x
}

/// How many taps [`convolve_row`] and [`weighted_rows`] add per pass over the row: their
/// partial sums go to `out` between passes. Cranelift places every load of a block before the
/// arithmetic that uses it (its loads keep their order, the pure operations sink to their first
/// use, here the store), so all the taps of one output in one block would be as many live
/// vectors as taps, more than the 16 registers; four taps for eight values are 14.
const TAPS_PER_PASS: usize = 4;

/// Runs `$pass::<G>($group, ...)` for each group of up to [`TAPS_PER_PASS`] of `$taps` in
/// order (`G` a constant, so that the loop over a group's taps unrolls), with the group's
/// position first.
macro_rules! by_groups {
    ($taps:expr, $pass:ident($($arg:expr),*)) => {
        for (i, group) in $taps.chunks(TAPS_PER_PASS).enumerate() {
            let first = i * TAPS_PER_PASS;
            match group.len() {
                4 => $pass::<4>(first, group.try_into().unwrap(), $($arg),*),
                3 => $pass::<3>(first, group.try_into().unwrap(), $($arg),*),
                2 => $pass::<2>(first, group.try_into().unwrap(), $($arg),*),
                _ => $pass::<1>(first, group.try_into().unwrap(), $($arg),*),
            }
        }
    };
}

/// `out[x] = sum over t of kernel[t] * padded[x + t]`, the sum from 0 in tap order, for the
/// leading multiple of 8 of `out`; returns how many values it wrote.
pub(crate) fn convolve_row(padded: &[f32], kernel: &[f32], out: &mut [f32]) -> usize {
    let n = out.len() / 8 * 8;
    assert!(!kernel.is_empty() && padded.len() >= n + kernel.len() - 1);
    let taps: Vec<v128> = kernel.iter().map(|&k| f32x4_splat(k)).collect();
    by_groups!(taps, convolve_pass(padded, &mut out[..n]));
    n
}

/// The taps `first..first + G` of [`convolve_row`] added into `out` (a multiple of 8 long;
/// from 0 for the first taps).
#[inline(always)]
fn convolve_pass<const G: usize>(first: usize, taps: &[v128; G], padded: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(n.is_multiple_of(8) && padded.len() + 1 >= n + first + G);
    for x in (0..n).step_by(8) {
        // SAFETY (every load and store): x + 8 <= n and first + t < first + G, so the reads end
        // by n + first + G - 1 <= padded.len() (checked above), the writes by n.
        let (mut a, mut b) = if first == 0 {
            (f32x4_splat(0.0), f32x4_splat(0.0))
        } else {
            unsafe { (load(out, x), load(out, x + 4)) }
        };
        for (t, &k) in taps.iter().enumerate() {
            let at = x + first + t;
            a = f32x4_add(a, f32x4_mul(k, unsafe { load(padded, at) }));
            b = f32x4_add(b, f32x4_mul(k, unsafe { load(padded, at + 4) }));
        }
        unsafe {
            store(out, x, a);
            store(out, x + 4, b);
        }
    }
}

/// `out[x] = sum over k of kernel[k] * rows[k][x]`, the sum from 0 in kernel order, for the
/// leading multiple of 8 of `out`, where `rows[k]` is the `w`-wide row `slots[k]` of `ring`;
/// returns how many values it wrote.
pub(crate) fn weighted_rows(
    ring: &[f32],
    w: usize,
    slots: &[usize],
    kernel: &[f32],
    out: &mut [f32],
) -> usize {
    let n = out.len().min(w) / 8 * 8;
    let taps: Vec<(v128, &[f32])> = kernel
        .iter()
        .zip(slots)
        .map(|(&k, &slot)| (f32x4_splat(k), &ring[slot * w..][..n]))
        .collect();
    by_groups!(taps, weighted_pass(&mut out[..n]));
    n
}

/// The rows `first..first + G` of [`weighted_rows`] (each with its tap, as long as `out`, a
/// multiple of 8) added into `out` (from 0 for the first rows).
#[inline(always)]
fn weighted_pass<const G: usize>(first: usize, taps: &[(v128, &[f32]); G], out: &mut [f32]) {
    let n = out.len();
    assert!(n.is_multiple_of(8) && taps.iter().all(|(_, row)| row.len() == n));
    for x in (0..n).step_by(8) {
        // SAFETY (every load and store): x + 8 <= n, the length of `out` and of every row
        // (checked above).
        let (mut a, mut b) = if first == 0 {
            (f32x4_splat(0.0), f32x4_splat(0.0))
        } else {
            unsafe { (load(out, x), load(out, x + 4)) }
        };
        for &(k, row) in taps {
            a = f32x4_add(a, f32x4_mul(k, unsafe { load(row, x) }));
            b = f32x4_add(b, f32x4_mul(k, unsafe { load(row, x + 4) }));
        }
        unsafe {
            store(out, x, a);
            store(out, x + 4, b);
        }
    }
}

/// Four RGBA pixels from `data[4 * i..4 * i + 16]`, one `u32` lane each (red in the low byte).
#[inline(always)]
fn load_pixels(data: &[u8], i: usize) -> v128 {
    let s = &data[4 * i..4 * i + 16];
    // SAFETY: `s` holds 16 readable bytes; wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// Channel `c` of the RGBA pixels of `data` divided by 255 (what `unit_lut` holds: the same
/// correctly rounded division), into the leading multiple of 4 of `out`; returns how many.
pub(crate) fn read_channel(data: &[u8], c: usize, out: &mut [f32]) -> usize {
    let (mask, by) = (u32x4_splat(0xff), f32x4_splat(255.0));
    let shift = 8 * c as u32;
    let n = out.len().min(data.len() / 4) / 4 * 4;
    for i in (0..n).step_by(4) {
        let bytes = v128_and(u32x4_shr(load_pixels(data, i), shift), mask);
        // SAFETY: i + 4 <= n <= out.len().
        unsafe { store(out, i, f32x4_div(f32x4_convert_u32x4(bytes), by)) };
    }
    n
}

/// The luma of the RGBA pixels of `data` (`luma_u8`: `(77 r + 150 g + 29 b + 128) >> 8`)
/// divided by 255, into the leading multiple of 4 of `out`; returns how many.
pub(crate) fn read_luma(data: &[u8], out: &mut [f32]) -> usize {
    let (mask, by) = (u32x4_splat(0xff), f32x4_splat(255.0));
    let n = out.len().min(data.len() / 4) / 4 * 4;
    for i in (0..n).step_by(4) {
        let px = load_pixels(data, i);
        let r = v128_and(px, mask);
        let g = v128_and(u32x4_shr(px, 8), mask);
        let b = v128_and(u32x4_shr(px, 16), mask);
        let sum = i32x4_add(
            i32x4_add(
                i32x4_mul(r, u32x4_splat(77)),
                i32x4_mul(g, u32x4_splat(150)),
            ),
            i32x4_add(i32x4_mul(b, u32x4_splat(29)), u32x4_splat(128)),
        );
        let luma = u32x4_shr(sum, 8);
        // SAFETY: i + 4 <= n <= out.len().
        unsafe { store(out, i, f32x4_div(f32x4_convert_u32x4(luma), by)) };
    }
    n
}

/// `to_byte` of the leading multiple of 4 of `values` into channel `c` of the RGBA pixels of
/// `data`: `(v * 255 + 0.5)` clamped to `0..=255` (NaN to 0) and truncated, as `as u8` does;
/// returns how many.
pub(crate) fn write_channel(values: &[f32], c: usize, data: &mut [u8]) -> usize {
    let (scale, half) = (f32x4_splat(255.0), f32x4_splat(0.5));
    let (zero, top) = (f32x4_splat(0.0), f32x4_splat(255.0));
    let shift = 8 * c as u32;
    let keep = v128_not(u32x4_shl(u32x4_splat(0xff), shift));
    let n = values.len().min(data.len() / 4) / 4 * 4;
    for i in (0..n).step_by(4) {
        // SAFETY: i + 4 <= n <= values.len().
        let v = f32x4_add(f32x4_mul(unsafe { load(values, i) }, scale), half);
        // pmax(0, v) is v when 0 < v, else 0 (NaN too); pmin(255, v) is v when v < 255.
        let v = f32x4_pmin(top, f32x4_pmax(zero, v));
        let bytes = u32x4_shl(i32x4_trunc_sat_f32x4(v), shift);
        let px = v128_or(v128_and(load_pixels(data, i), keep), bytes);
        let s = &mut data[4 * i..4 * i + 16];
        // SAFETY: `s` holds 16 writable bytes; wasm stores need no alignment.
        unsafe { v128_store(s.as_mut_ptr().cast(), px) }
    }
    n
}

/// The RGBA pixel at byte `i` of `data` as four `f32` lanes (`c as f32` of each byte).
#[inline(always)]
fn pixel_f32(data: &[u8], i: usize) -> v128 {
    let p = &data[i..i + 4];
    let px = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    f32x4_convert_u32x4(u32x4_extend_low_u16x8(u16x8_extend_low_u8x16(u32x4_splat(
        px,
    ))))
}

/// One pixel of `Rgba::displace`: the bilinear mix of the pixels at bytes `a`, `b` (the row
/// above, left and right) and `c`, `d` (below) of `src` by `tx` and `ty`, rounded (`+ 0.5`
/// and `as u8`, which saturates, NaN to 0) into the colour bytes at `o` of `out`; the same
/// operations per channel as the scalar loop, the channels as lanes.
#[inline(always)]
pub(crate) fn bilinear_pixel(
    src: &[u8],
    [a, b, c, d]: [usize; 4],
    (tx, ty): (f32, f32),
    out: &mut [u8],
    o: usize,
) {
    let (pa, pb) = (pixel_f32(src, a), pixel_f32(src, b));
    let (pc, pd) = (pixel_f32(src, c), pixel_f32(src, d));
    let (tx, ty) = (f32x4_splat(tx), f32x4_splat(ty));
    let top = f32x4_add(pa, f32x4_mul(f32x4_sub(pb, pa), tx));
    let bottom = f32x4_add(pc, f32x4_mul(f32x4_sub(pd, pc), tx));
    let v = f32x4_add(
        f32x4_add(top, f32x4_mul(f32x4_sub(bottom, top), ty)),
        f32x4_splat(0.5),
    );
    // Saturating conversions all the way down: as `as u8` does, NaN to 0.
    let words = i32x4_trunc_sat_f32x4(v);
    let shorts = i16x8_narrow_i32x4(words, words);
    let bytes = (i32x4_extract_lane::<0>(u8x16_narrow_i16x8(shorts, shorts)) as u32).to_le_bytes();
    out[o..o + 3].copy_from_slice(&bytes[..3]);
}
