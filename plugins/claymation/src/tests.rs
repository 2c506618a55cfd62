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
    Claymation::render(image, &analysis, &plan, &Values::new(&options))
}

#[test]
fn describe_matches_the_manifest() {
    assert_describe_matches_manifest::<Claymation>(
        include_str!("../style.toml"),
        &["caption", "seed", "shine"],
    );
}

#[test]
fn post_process_keeps_the_size() {
    for method in [
        MethodKind::None,
        MethodKind::StyleTransfer,
        MethodKind::Pulid,
    ] {
        for (w, h) in [(64, 48), (1, 1), (200, 3)] {
            let out = post_process(
                photo(w, h).into_image(),
                portrait(w, h),
                plan(method),
                opts(&[("shine", "1")]),
            )
            .unwrap();
            assert_eq!(
                (out.width, out.height, out.rgba.len()),
                (w, h, (w * h * 4) as usize)
            );
        }
    }
}

#[test]
fn sculpting_removes_fine_texture() {
    // A mid-grey photo with strong pixel noise comes out much smoother.
    let mut input = photo(96, 96);
    let mut rng = likeness_sdk::noise::Rng::new(5);
    for p in input.data.chunks_exact_mut(4) {
        let n = (rng.next_f32() * 40.0) as u8;
        for c in &mut p[..3] {
            *c = 100 + n;
        }
    }
    let roughness = |img: &Rgba| -> u32 {
        (1..96)
            .map(|x| img.pixel(x, 50)[1].abs_diff(img.pixel(x - 1, 50)[1]) as u32)
            .sum()
    };
    let analysis = portrait(96, 96);
    let out = sculpt(&input, &analysis, 0.5, 1);
    assert!(
        roughness(&out) * 5 < roughness(&input),
        "{} {}",
        roughness(&out),
        roughness(&input)
    );
    // Deterministic for a seed.
    assert_eq!(out, sculpt(&input, &analysis, 0.5, 1));
}

#[test]
fn post_process_rejects_a_bad_buffer() {
    let bad = Image {
        width: 0,
        height: 10,
        rgba: Vec::new(),
    };
    match post_process(bad, portrait(10, 10), plan(MethodKind::None), Vec::new()) {
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
    let (out, peak) =
        likeness_sdk::testing::peak_heap(|| sculpt(&input, &portrait(640, 640), 0.5, 1));
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

/// Renders the previews (`cargo test --release -p style-claymation -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview() {
    let paths = likeness_sdk::preview::render_previews(ID, |p, a| sculpt(p, a, 0.5, 0)).unwrap();
    println!("{paths:#?}");
}

/// Renders the previews of the finish over style-transfer renditions given as the inputs
/// (`LIKENESS_PREVIEW_INPUTS`; `cargo test --release -p style-claymation -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview_transfer() {
    let paths =
        likeness_sdk::preview::render_previews("claymation-transfer", |p, a| sculpt(p, a, 0.5, 0))
            .unwrap();
    println!("{paths:#?}");
}

#[test]
fn without_diffusion_the_transfer_networks_draw_the_look() {
    let t = assert_plans_transfer::<Claymation>();
    // Broad strokes: a low working side.
    assert_eq!(t.working_side, Some(512));
}
