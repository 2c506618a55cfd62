use super::*;
use likeness_sdk::testing::{
    assert_describe_matches_manifest, assert_plans_transfer, options_from_text, photo, plan,
    portrait,
};
use likeness_sdk::{MethodKind, Options};

fn opts(pairs: &[(&str, &str)]) -> Options {
    options_from_text(&params(), pairs)
}

/// `post-process` as the component runs it, on the style's own pixels.
fn post_process(
    image: Image,
    analysis: likeness_sdk::Analysis,
    plan: Plan,
    options: Options,
) -> Result<Image, StyleError> {
    PixelArt::render(image, &analysis, &plan, &Values::new(&options))
}

#[test]
fn describe_matches_the_manifest() {
    assert_describe_matches_manifest::<PixelArt>(
        include_str!("../style.toml"),
        &["caption", "seed", "pixel-size", "palette"],
    );
}

fn colours(image: &Image) -> Vec<Color> {
    let mut seen: Vec<Color> = Vec::new();
    for p in image.rgba.chunks_exact(4) {
        let c = [p[0], p[1], p[2]];
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    seen
}

#[test]
fn output_is_on_the_palette_and_the_grid() {
    for (name, style) in &PALETTES {
        for method in [MethodKind::None, MethodKind::Pulid] {
            let out = post_process(
                photo(100, 70).into_image(),
                portrait(100, 70),
                plan(method),
                opts(&[("palette", name), ("pixel-size", "6")]),
            )
            .unwrap();
            assert_eq!(
                (out.width, out.height, out.rgba.len()),
                (100, 70, 100 * 70 * 4)
            );
            let used = colours(&out);
            assert!(
                used.iter().all(|c| style.colors.contains(c)),
                "{name}: {used:?}"
            );
            assert!(used.len() >= 2, "{name}: {used:?}");
            let rgba = Rgba::from_image(out).unwrap();
            for y in 0..70 {
                for x in 0..100 {
                    assert_eq!(rgba.pixel(x, y), rgba.pixel(x / 6 * 6, y / 6 * 6));
                }
            }
        }
    }
}

#[test]
fn palette_colours_map_to_themselves() {
    // An image already made of palette colours in 8 x 8 blocks comes back unchanged.
    let mut image = Rgba::new(16 * 8, 8);
    for (i, p) in image.data.chunks_exact_mut(4).enumerate() {
        let c = PICO8[(i % 128) / 8];
        p[..3].copy_from_slice(&c);
    }
    let mut quantised = image.clone();
    quantised.quantize(&PICO8);
    assert_eq!(quantised, image);
    // Pure mid-grey goes to PICO-8's grey-ish neighbours, never to a saturated colour.
    let mut grey = Rgba::new(1, 1);
    grey.data[..3].copy_from_slice(&[128, 128, 128]);
    grey.quantize(&PICO8);
    assert!(
        [[0x5f, 0x57, 0x4f], [0x83, 0x76, 0x9c], [0xc2, 0xc3, 0xc7]].contains(&[
            grey.data[0],
            grey.data[1],
            grey.data[2]
        ])
    );
}

#[test]
fn gameboy_follows_brightness() {
    let mut ramp = Rgba::new(256, 8);
    for (i, p) in ramp.data.chunks_exact_mut(4).enumerate() {
        let v = (i % 256) as u8;
        p[..3].copy_from_slice(&[v, v, v]);
    }
    let out = pixelize(&ramp, 8, "gameboy", false);
    assert_eq!(out.pixel(0, 0), [0x0f, 0x38, 0x0f, 255]);
    assert_eq!(out.pixel(255, 0), [0x9b, 0xbc, 0x0f, 255]);
    assert_eq!(colours(&out.into_image()).len(), 4);
}

#[test]
fn post_process_rejects_a_bad_buffer() {
    let bad = Image {
        width: 4,
        height: 4,
        rgba: vec![0; 65],
    };
    match post_process(bad, portrait(4, 4), plan(MethodKind::Pulid), Vec::new()) {
        Err(StyleError::UnusableInput(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[global_allocator]
static ALLOC: likeness_sdk::testing::CountingAlloc = likeness_sdk::testing::CountingAlloc;

/// The peak heap at 640 x 640, times 4, must leave room under the host's default 256 MiB for a
/// 1280 x 1280 image (the largest the host sends), the allocator's slack and the bindings' copies.
#[test]
fn peak_memory_fits_the_default_limit() {
    let input = photo(640, 640);
    let (out, peak) = likeness_sdk::testing::peak_heap(|| pixelize(&input, 8, "nes", true));
    assert_eq!(out.data.len(), 640 * 640 * 4);
    let at_1280 = peak * 4;
    println!(
        "peak heap: {} MiB at 640 x 640, about {} MiB at 1280 x 1280",
        peak >> 20,
        at_1280 >> 20
    );
    assert!(
        at_1280 < 160 << 20,
        "about {} MiB at 1280 x 1280",
        at_1280 >> 20
    );
}

/// Renders the previews (`cargo test --release -p style-pixel-art -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview() {
    for palette in ["pico8", "gameboy", "nes", "c64"] {
        let name = format!("{ID}-{palette}");
        let paths =
            likeness_sdk::preview::render_previews(&name, |p, _| pixelize(p, 8, palette, true))
                .unwrap();
        println!("{paths:#?}");
    }
}

/// Renders the previews of the finish over style-transfer renditions given as the inputs
/// (`LIKENESS_PREVIEW_INPUTS`; `cargo test --release -p style-pixel-art -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview_transfer() {
    let paths = likeness_sdk::preview::render_previews("pixel-art-transfer", |p, a| {
        pixelize_faces(p, a, 8, "pico8")
    })
    .unwrap();
    println!("{paths:#?}");
}

#[test]
fn without_diffusion_the_transfer_networks_draw_the_look() {
    let t = assert_plans_transfer::<PixelArt>();
    assert!(t.face_preservation >= 0.5, "{t:?}");
}

#[test]
fn faces_keep_a_finer_grid_over_a_transfer() {
    // A 400 x 400 rendition of 3-pixel black and white stripes with a face 133 pixels wide:
    // 9-pixel art pixels outside (three 3-pixel ones, 133 / 40), 3-pixel ones inside the face.
    let (w, h) = (400, 400);
    let mut stripes = Rgba::new(w, h);
    for (i, p) in stripes.data.chunks_exact_mut(4).enumerate() {
        let v = if ((i as u32 % w) / 3).is_multiple_of(2) {
            0
        } else {
            255
        };
        p.copy_from_slice(&[v, v, v, 255]);
    }
    let out = post_process(
        stripes.into_image(),
        portrait(w, h),
        plan(MethodKind::StyleTransfer),
        opts(&[("pixel-size", "8")]),
    )
    .unwrap();
    assert!(colours(&out).iter().all(|c| PICO8.contains(c)));
    let rgba = Rgba::from_image(out).unwrap();
    // Far from the face: uniform 9 x 9 blocks.
    for y in 0..54 {
        for x in 0..w {
            assert_eq!(
                rgba.pixel(x, y),
                rgba.pixel(x / 9 * 9, y / 9 * 9),
                "({x}, {y})"
            );
        }
    }
    // In the middle of the face the stripes survive: neighbouring 3-pixel cells differ.
    let changes = (150..250)
        .step_by(3)
        .filter(|&x| rgba.pixel(x, 200) != rgba.pixel(x + 3, 200))
        .count();
    assert!(changes > 20, "{changes} changes across the face");
}
