use super::*;
use likeness_sdk::testing::{
    assert_describe_matches_manifest, assert_plans_transfer, photo, plan, portrait,
};
use likeness_sdk::{MethodKind, Options};

/// `post-process` as the component runs it, on the style's own pixels.
fn post_process(
    image: Image,
    analysis: likeness_sdk::Analysis,
    plan: Plan,
    options: Options,
) -> Result<Image, StyleError> {
    Watercolor::render(image, &analysis, &plan, &Values::new(&options))
}

#[test]
fn describe_matches_the_manifest() {
    assert_describe_matches_manifest::<Watercolor>(
        include_str!("../style.toml"),
        &["caption", "seed", "paper"],
    );
}

/// The committed paper texture.
fn paper() -> Plane {
    load_paper(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/paper.pgm")).unwrap()
}

/// The procedural cold-press paper of `assets/paper.pgm`: 256 x 256, tiling seamlessly. A
/// large cloudy variation, a medium tooth and a fine grain, mostly light with dark pits.
fn generate_paper_texture() -> Plane {
    const SIDE: u32 = 256;
    let coarse = noise::fractal_noise(SIDE, SIDE, 64.0, 4, 11, true);
    let tooth = noise::fractal_noise(SIDE, SIDE, 8.0, 3, 23, true);
    let grain = noise::value_noise(SIDE, SIDE, 2.0, 37, true);
    let mut paper = coarse.clone();
    for ((p, &t), &g) in paper.data.iter_mut().zip(&tooth.data).zip(&grain.data) {
        *p = 0.25 * *p + 0.5 * t + 0.25 * g;
    }
    paper.normalize();
    // Mostly high surface with narrower pits: skew the distribution up.
    paper.map(|v| 1.0 - (1.0 - v) * (1.0 - v));
    paper
}

/// Rewrites `assets/paper.pgm` (`cargo test -p style-watercolor -- --ignored generate_paper`).
#[test]
#[ignore]
fn generate_paper() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/paper.pgm");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/assets")).unwrap();
    std::fs::write(path, generate_paper_texture().to_pgm()).unwrap();
}

#[test]
fn committed_paper_is_the_generated_one() {
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/paper.pgm")).unwrap();
    assert!(
        committed == generate_paper_texture().to_pgm(),
        "run the ignored generate_paper test"
    );
    let p = paper();
    assert_eq!((p.width, p.height), (256, 256));
    let mean = p.mean();
    assert!((0.4..0.9).contains(&mean), "{mean}");
}

#[test]
fn painting_keeps_the_size() {
    let texture = paper();
    for (w, h) in [(300, 200), (1, 1), (2, 500)] {
        let input = photo(w, h);
        let out = paint(&input, &portrait(w, h), &texture, 0.6, 3);
        assert_eq!(
            (out.width, out.height, out.data.len()),
            (w, h, (w * h * 4) as usize)
        );
        let mut papered = input.clone();
        apply_paper(&mut papered, &texture, 1.0);
        assert_eq!((papered.width, papered.height), (w, h));
    }
}

#[test]
fn paper_shows_on_white() {
    // Bare white paper gets the texture's relief, within a few percent of white.
    let mut white = Rgba::new(300, 300);
    white.data.iter_mut().for_each(|v| *v = 255);
    apply_paper(&mut white, &paper(), 1.0);
    let values: Vec<u8> = white.data.chunks_exact(4).map(|p| p[1]).collect();
    let (lo, hi) = (*values.iter().min().unwrap(), *values.iter().max().unwrap());
    assert!(lo >= 200 && hi == 255 && lo < 245, "{lo}..{hi}");
    // Strength 0 leaves it alone.
    let mut plain = Rgba::new(10, 10);
    plain.data.iter_mut().for_each(|v| *v = 200);
    let before = plain.clone();
    apply_paper(&mut plain, &paper(), 0.0);
    assert_eq!(plain, before);
}

#[test]
fn missing_paper_is_an_internal_error_naming_it() {
    match load_paper("/no/such/assets/paper.pgm") {
        Err(StyleError::Internal(Some(m))) => {
            assert!(m.contains("/no/such/assets/paper.pgm"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Natively there is no /assets: post-process reports the asset.
    if !std::path::Path::new(PAPER_PATH).exists() {
        match post_process(
            photo(8, 8).into_image(),
            portrait(8, 8),
            plan(MethodKind::None),
            Vec::new(),
        ) {
            Err(StyleError::Internal(Some(m))) => assert!(m.contains(PAPER_PATH), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn post_process_rejects_a_bad_buffer_first() {
    let bad = Image {
        width: 3,
        height: 3,
        rgba: vec![0; 3],
    };
    match post_process(bad, portrait(3, 3), plan(MethodKind::InstantId), Vec::new()) {
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
    let texture = paper();
    let input = photo(640, 640);
    let (out, peak) =
        likeness_sdk::testing::peak_heap(|| paint(&input, &portrait(640, 640), &texture, 0.6, 1));
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

/// Renders the previews (`cargo test --release -p style-watercolor -- --ignored --nocapture preview`).
#[test]
#[ignore]
fn preview() {
    let texture = paper();
    let paths =
        likeness_sdk::preview::render_previews(ID, |p, a| paint(p, a, &texture, 0.6, 0)).unwrap();
    println!("{paths:#?}");
}

/// Renders the previews of the finish over style-transfer renditions given as the inputs
/// (`LIKENESS_PREVIEW_INPUTS`; `cargo test --release -p style-watercolor -- --ignored --nocapture`).
#[test]
#[ignore]
fn preview_transfer() {
    let texture = paper();
    let paths = likeness_sdk::preview::render_previews("watercolor-transfer", |p, _| {
        finish_transfer(p, &texture, 0.6, 0)
    })
    .unwrap();
    println!("{paths:#?}");
}

#[test]
fn without_diffusion_the_transfer_networks_draw_the_look() {
    let t = assert_plans_transfer::<Watercolor>();
    assert_eq!(t.working_side, Some(768));
}

#[test]
fn a_transfer_is_laid_on_paper_with_bare_margins() {
    let input = photo(200, 160);
    let out = finish_transfer(&input, &paper(), 0.6, 3);
    assert_eq!((out.width, out.height), (200, 160));
    let light = |p: [u8; 4]| p[0] as u32 + p[1] as u32 + p[2] as u32;
    // The corner is bare paper (near white), the middle keeps the rendition's colour.
    assert!(light(out.pixel(0, 0)) > 3 * 200, "{:?}", out.pixel(0, 0));
    let (a, b) = (out.pixel(100, 80), input.pixel(100, 80));
    assert!(
        a.iter().zip(b).take(3).all(|(x, y)| x.abs_diff(y) < 40),
        "{a:?} {b:?}"
    );
}
