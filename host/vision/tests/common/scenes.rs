//! Scenes made from the test photos (a collage of six faces, a 1920x1080 group of four), shared
//! by likeness-vision's face tests, the host's plan-detection test and the host_overhead bench
//! (the last two through `#[path]`), so that all three look at the same pictures.
#![allow(dead_code)]

use image::{RgbImage, imageops};
use likeness_vision::ingest;

/// The test photos with one face each, in the order the scenes use them.
pub const FACES: [&str; 5] = [
    "astronaut.png",
    "obama.jpg",
    "biden.jpg",
    "camera.png",
    "obama2.jpg",
];

/// The test photos, with and without faces.
pub const PHOTOS: [&str; 8] = [
    "astronaut.png",
    "biden.jpg",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "obama.jpg",
    "obama2.jpg",
    "rocket.jpg",
];

/// `img` scaled to fit a `side` square.
pub fn fit(img: &RgbImage, side: u32) -> RgbImage {
    let scale = side as f32 / img.width().max(img.height()) as f32;
    let w = (img.width() as f32 * scale).round().max(1.0) as u32;
    let h = (img.height() as f32 * scale).round().max(1.0) as u32;
    ingest::resize(img, w, h)
}

/// A grey canvas with `tiles` (image, side of its square, x, y) pasted on it.
pub fn canvas(w: u32, h: u32, tiles: &[(&RgbImage, u32, i64, i64)]) -> RgbImage {
    let mut out = RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
    for (img, side, x, y) in tiles {
        imageops::replace(&mut out, &fit(img, *side), *x, *y);
    }
    out
}

/// Six faces on 512 px squares, three by two (1536x1024): `faces` (the [`FACES`]) in turn.
pub fn collage_of_six(faces: &[RgbImage]) -> RgbImage {
    let tiles: Vec<(&RgbImage, u32, i64, i64)> = (0..6)
        .map(|i| {
            (
                &faces[i % faces.len()],
                512,
                (i as i64 % 3) * 512,
                (i as i64 / 3) * 512,
            )
        })
        .collect();
    canvas(1536, 1024, &tiles)
}

/// The first four of `faces` in a row on a 1920x1080 canvas, each fitted to 420 px: small
/// faces (the largest about 0.5% of the photo) that make a group.
pub fn group_of_four(faces: &[RgbImage]) -> RgbImage {
    let tiles: Vec<(&RgbImage, u32, i64, i64)> = (0..4)
        .map(|i| (&faces[i], 420, 60 + i as i64 * 460, 330))
        .collect();
    canvas(1920, 1080, &tiles)
}

/// Every test photo, then the collage of six and the group of four, by name, loaded by `photo`.
pub fn photos_and_scenes(photo: impl Fn(&str) -> RgbImage) -> Vec<(String, RgbImage)> {
    let faces = FACES.map(&photo);
    let mut cases: Vec<(String, RgbImage)> =
        PHOTOS.iter().map(|n| (n.to_string(), photo(n))).collect();
    cases.push(("collage of 6".into(), collage_of_six(&faces)));
    cases.push(("group 1920x1080".into(), group_of_four(&faces)));
    cases
}
