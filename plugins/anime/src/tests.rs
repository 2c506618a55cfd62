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
    Anime::render(image, &analysis, &plan, &Values::new(&options))
}

#[test]
fn describe_matches_the_manifest() {
    assert_describe_matches_manifest::<Anime>(
        include_str!("../style.toml"),
        &["caption", "seed", "line-strength"],
    );
}

#[test]
fn post_process_keeps_the_size() {
    for method in [
        MethodKind::None,
        MethodKind::StyleTransfer,
        MethodKind::InstantId,
    ] {
        for (w, h) in [(64, 48), (1, 1), (3, 200)] {
            let out = post_process(
                photo(w, h).into_image(),
                portrait(w, h),
                plan(method),
                opts(&[("line-strength", "1")]),
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
fn cel_shading_flattens_and_inks() {
    let input = photo(128, 128);
    let out = cel_shade(&input, 1.0);
    // Inside the disc the colour is (nearly) flat.
    let a = out.pixel(64, 64);
    let b = out.pixel(70, 60);
    assert!(
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 8),
        "{a:?} {b:?}"
    );
    // Ink darkens the disc's rim and leaves its inside alone.
    let plain = cel_shade(&input, 0.0);
    let luma = |img: &Rgba, y: u32| {
        let p = img.pixel(64, y);
        p[0] as u32 + p[1] as u32 + p[2] as u32
    };
    let rim_inked: u32 = (26..38).map(|y| luma(&out, y)).sum();
    let rim_plain: u32 = (26..38).map(|y| luma(&plain, y)).sum();
    assert!(rim_inked * 10 < rim_plain * 9, "{rim_inked} {rim_plain}");
    assert_eq!(out.pixel(64, 64), plain.pixel(64, 64));
}

#[test]
fn post_process_rejects_a_bad_buffer() {
    let bad = Image {
        width: 10,
        height: 10,
        rgba: vec![0; 399],
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
    let (out, peak) = likeness_sdk::testing::peak_heap(|| cel_shade(&input, DEFAULT_LINE_STRENGTH));
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

/// Renders the previews (`cargo test --release -p style-anime -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview() {
    let paths =
        likeness_sdk::preview::render_previews(ID, |p, _| cel_shade(p, DEFAULT_LINE_STRENGTH))
            .unwrap();
    println!("{paths:#?}");
}

/// Renders the previews of the finish over style-transfer renditions given as the inputs
/// (`LIKENESS_PREVIEW_INPUTS`; `cargo test --release -p style-anime -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview_transfer() {
    let paths = likeness_sdk::preview::render_previews("anime-transfer", |p, _| {
        finish_transfer(p, DEFAULT_LINE_STRENGTH)
    })
    .unwrap();
    println!("{paths:#?}");
}

#[test]
fn without_diffusion_the_transfer_networks_draw_the_look() {
    let t = assert_plans_transfer::<Anime>();
    assert_eq!(t.learned_styles.len(), 2);
    assert_eq!(t.working_side, Some(768));
}
