//! Tests of the filters that styles have used since 0.1 (the canvas operations are tested
//! against reference implementations in `tests/reference.rs`).

use crate::*;

fn gradient(w: u32, h: u32) -> Rgba {
    let mut img = Rgba::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 4) as usize;
            img.data[i] = (x * 255 / (w - 1).max(1)) as u8;
            img.data[i + 1] = (y * 255 / (h - 1).max(1)) as u8;
            img.data[i + 2] = ((x + y) % 256) as u8;
            img.data[i + 3] = 200;
        }
    }
    img
}

#[test]
fn box_blur_keeps_constants_and_means() {
    let mut p = Plane::new(17, 9, 0.25);
    assert!(p.box_blur(4).data.iter().all(|v| (v - 0.25).abs() < 1e-6));
    // A single bright pixel spreads evenly over the window.
    p.data.iter_mut().for_each(|v| *v = 0.0);
    p.data[4 * 17 + 8] = 9.0;
    let b = p.box_blur(1);
    assert!((b.get(8, 4) - 1.0).abs() < 1e-6);
    assert!((b.get(7, 3) - 1.0).abs() < 1e-6);
    assert!(b.get(6, 4).abs() < 1e-6);
    // Radii larger than the plane clamp to the edge values.
    let b = p.box_blur(100);
    assert!(b.data.iter().all(|v| v.is_finite()));
}

#[test]
fn box_blur_matches_naive() {
    let img = gradient(23, 11);
    let l = img.luma();
    for (rx, ry) in [(3i64, 2i64), (1, 0), (0, 1), (11, 5), (12, 6), (30, 40)] {
        let fast = l.box_blur_xy(rx as u32, ry as u32);
        let n = ((2 * rx + 1) * (2 * ry + 1)) as f32;
        for y in 0..11i64 {
            for x in 0..23i64 {
                let mut s = 0.0;
                for dy in -ry..=ry {
                    for dx in -rx..=rx {
                        s += l.get((x + dx).clamp(0, 22) as u32, (y + dy).clamp(0, 10) as u32);
                    }
                }
                let got = fast.get(x as u32, y as u32);
                assert!(
                    (got - s / n).abs() < 1e-5,
                    "r {rx},{ry} at {x},{y}: {got} vs {}",
                    s / n
                );
            }
        }
    }
}

#[test]
fn gaussian_blur_is_normalised_and_ordered() {
    let mut p = Plane::new(81, 81, 0.0);
    p.data[40 * 81 + 40] = 1.0;
    for sigma in [0.5, 1.0, 1.5, 2.5, 4.0, 8.0] {
        let b = p.gaussian_blur(sigma);
        let total: f32 = b.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-3, "{sigma}: {total}");
    }
    // A wider blur spreads a point further: the centre gets lower.
    let c = |s: f32| p.gaussian_blur(s).get(40, 40);
    assert!(c(0.8) > c(1.2) && c(1.2) > c(2.0) && c(2.0) > c(4.0));
}

#[test]
fn sobel_finds_a_step() {
    let mut p = Plane::new(8, 4, 0.0);
    for y in 0..4 {
        for x in 4..8 {
            p.data[y * 8 + x] = 1.0;
        }
    }
    let e = p.sobel();
    assert!((e.get(3, 1) - 1.0).abs() < 1e-6);
    assert!((e.get(4, 1) - 1.0).abs() < 1e-6);
    assert_eq!(e.get(0, 1), 0.0);
    assert_eq!(e.get(7, 2), 0.0);
}

#[test]
fn guided_filter_smooths_noise_and_keeps_steps() {
    let mut p = Plane::new(40, 10, 0.0);
    for y in 0..10 {
        for x in 0..40 {
            let noise = if (x + y) % 2 == 0 { 0.02 } else { -0.02 };
            p.data[y * 40 + x] = if x < 20 { 0.2 } else { 0.8 } + noise;
        }
    }
    let q = p.guided_filter(&p, 3, 0.01);
    // A separate but equal guide takes the general path and gives the same result.
    let general = p.guided_filter(&p.clone(), 3, 0.01);
    for (a, b) in q.data.iter().zip(&general.data) {
        assert!((a - b).abs() < 1e-5);
    }
    assert!((q.get(5, 5) - 0.2).abs() < 0.01);
    assert!((q.get(35, 5) - 0.8).abs() < 0.01);
    assert!(q.get(19, 5) < 0.3 && q.get(20, 5) > 0.7);
}

#[test]
fn posterize_uses_the_levels() {
    let mut img = gradient(64, 4);
    img.posterize(3);
    for p in img.data.chunks_exact(4) {
        for c in &p[..3] {
            assert!([0, 128, 255].contains(c), "{c}");
        }
        assert_eq!(p[3], 200);
    }
}

#[test]
fn quantize_maps_to_the_nearest_palette_colour() {
    let palette = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]];
    let mut img = Rgba::new(5, 1);
    let colours = [
        [10, 10, 10],
        [240, 250, 230],
        [200, 40, 30],
        [20, 30, 180],
        [255, 0, 0],
    ];
    for (p, c) in img.data.chunks_exact_mut(4).zip(colours) {
        p[..3].copy_from_slice(&c);
    }
    img.quantize(&palette);
    let got: Vec<[u8; 3]> = img
        .data
        .chunks_exact(4)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    assert_eq!(
        got,
        vec![
            [0, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [0, 0, 255],
            [255, 0, 0]
        ]
    );
    // Every palette colour maps to itself, dithered or not.
    let mut img = gradient(32, 32);
    img.quantize_dithered(&palette, 1.0);
    for p in img.data.chunks_exact(4) {
        assert!(palette.contains(&[p[0], p[1], p[2]]));
        assert_eq!(p[3], 200);
    }
}

#[test]
fn pixelate_makes_flat_blocks() {
    let mut img = gradient(30, 21);
    img.pixelate(8);
    assert_eq!(
        (img.width, img.height, img.data.len()),
        (30, 21, 30 * 21 * 4)
    );
    for y in 0..21 {
        for x in 0..30 {
            assert_eq!(img.pixel(x, y), img.pixel(x / 8 * 8, y / 8 * 8));
        }
    }
    // The first block's red is the rounded mean of the ramp's first 8 values.
    let sum: u32 = (0..8).map(|x| x * 255 / 29).sum();
    assert_eq!(img.pixel(0, 0)[0] as u32, (sum + 4) / 8);
    // The last, partial block (x 24..30, y 16..21) averages what it covers.
    let green: u32 = (16..21).map(|y| y * 255 / 20).sum();
    assert_eq!(img.pixel(29, 20)[1] as u32, (green * 6 + 15) / 30);
}

#[test]
fn saturate_blend_multiply() {
    let mut img = Rgba::new(1, 1);
    img.data[..3].copy_from_slice(&[200, 100, 50]);
    let mut grey = img.clone();
    grey.saturate(0.0);
    let l = luma_u8(200, 100, 50);
    assert_eq!(&grey.data[..3], &[l, l, l]);
    let mut vivid = img.clone();
    vivid.saturate(1.5);
    assert!(vivid.data[0] > 200 && vivid.data[2] < 50);
    let mut b = img.clone();
    b.blend(&grey, 1.0);
    assert_eq!(&b.data[..3], &[l, l, l]);
    let mut m = img.clone();
    let mut white = Rgba::new(1, 1);
    white.data[..3].copy_from_slice(&[255, 255, 255]);
    m.multiply(&white);
    assert_eq!(m, img);
}

#[test]
fn kuwahara_and_smoothing_keep_size_and_alpha() {
    let img = gradient(37, 29);
    for out in [
        img.kuwahara(4, 1.0),
        img.guided_smooth(3, 0.01),
        img.gaussian_blur(2.0),
    ] {
        assert_eq!((out.width, out.height), (37, 29));
        assert!(out.data.chunks_exact(4).all(|p| p[3] == 200));
    }
}

#[test]
fn displace_shifts_and_clamps() {
    let img = gradient(20, 10);
    let zero = Plane::new(20, 10, 0.0);
    assert_eq!(img.displace(&zero, &zero), img);
    let one = Plane::new(20, 10, 1.0);
    let shifted = img.displace(&one, &zero);
    assert_eq!(shifted.pixel(3, 4), img.pixel(4, 4));
    assert_eq!(shifted.pixel(19, 4), img.pixel(19, 4));
    let half = Plane::new(20, 10, 0.5);
    let between = img.displace(&zero, &half);
    let (a, b) = (img.pixel(5, 2)[1] as i32, img.pixel(5, 3)[1] as i32);
    assert!((between.pixel(5, 2)[1] as i32 - (a + b) / 2).abs() <= 1);
}

#[test]
fn crop_and_bounds() {
    let img = gradient(20, 10);
    let c = img.crop(5, 2, 4, 3);
    assert_eq!((c.width, c.height), (4, 3));
    assert_eq!(c.pixel(0, 0), img.pixel(5, 2));
    assert_eq!(c.pixel(3, 2), img.pixel(8, 4));
    let edge = img.crop(18, 8, 10, 10);
    assert_eq!((edge.width, edge.height), (2, 2));
    let mut p = Plane::new(10, 8, 0.0);
    assert_eq!(p.nonzero_bounds(), None);
    p.data[2 * 10 + 7] = 0.5;
    p.data[5 * 10 + 3] = 1.0;
    assert_eq!(p.nonzero_bounds(), Some((3, 2, 8, 6)));
}

#[test]
fn pgm_round_trip() {
    let mut p = Plane::new(5, 3, 0.0);
    for (i, v) in p.data.iter_mut().enumerate() {
        *v = i as f32 / 14.0;
    }
    let bytes = p.to_pgm();
    let q = Plane::from_pgm(&bytes).unwrap();
    assert_eq!((q.width, q.height), (5, 3));
    for (a, b) in p.data.iter().zip(&q.data) {
        assert!((a - b).abs() < 0.003);
    }
    let commented = b"P5\n# made by hand\n2 1\n# max\n255\n\x00\xff";
    assert_eq!(Plane::from_pgm(commented).unwrap().data, vec![0.0, 1.0]);
    assert!(Plane::from_pgm(b"P2\n1 1\n255\n0").is_err());
    assert!(Plane::from_pgm(b"P5\n2 2\n255\n\x00").is_err());
}

#[test]
fn resize_and_downsample() {
    let img = gradient(10, 10);
    let empty = Rgba::new(0, 0);
    assert_eq!(empty.resize(3, 3).data.len(), 36);
    assert_eq!(empty.downsample(4).data.len(), 0);
    assert_eq!(img.resize(0, 5).data.len(), 0);
    assert_eq!(empty.kuwahara(3, 1.0).data.len(), 0);
    assert_eq!(empty.guided_smooth(3, 0.01).data.len(), 0);
    let big = img.resize(20, 15);
    assert_eq!(big.data.len(), 20 * 15 * 4);
    let small = img.downsample(4);
    assert_eq!((small.width, small.height), (3, 3));
    let up = small.upscale_nearest(4, 10, 10);
    assert_eq!(up.data.len(), 400);
    let p = img.luma().resize(5, 5);
    assert_eq!(p.data.len(), 25);
}
