use super::*;
use likeness_sdk::testing::{all_capabilities, manifest_value, no_capabilities, photo, portrait};

fn opts(pairs: &[(&str, &str)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn describe_matches_the_manifest() {
    let info = Anime::describe();
    let manifest = include_str!("../style.toml");
    assert_eq!(
        manifest_value(manifest, "id").as_deref(),
        Some(info.id.as_str())
    );
    assert_eq!(
        manifest_value(manifest, "name").as_deref(),
        Some(info.name.as_str())
    );
    assert_eq!(
        manifest_value(manifest, "version").as_deref(),
        Some(info.version.as_str())
    );
    assert_eq!(
        manifest_value(manifest, "description").as_deref(),
        Some(info.description.as_str())
    );
    assert_eq!(
        manifest_value(manifest, "component").as_deref(),
        Some("anime.wasm")
    );
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["caption", "seed", "line-strength"]);
    assert_eq!(info.params[2].default_value, "0.7");
}

#[test]
fn plan_prefers_instantid() {
    let plan = Anime::plan(
        portrait(800, 1000),
        all_capabilities(),
        opts(&[("caption", "a woman\nwith glasses"), ("seed", "42")]),
    )
    .unwrap();
    assert_eq!(plan.method, IdentityMethod::InstantId);
    assert_eq!(plan.fallback, IdentityMethod::Controlnet);
    assert_eq!(plan.reference_face, Some(0));
    assert!(
        plan.prompt
            .starts_with("anime artwork illustrating a woman with glasses, anime style")
    );
    assert!(!plan.negative_prompt.is_empty());
    assert_eq!(
        (plan.steps, plan.guidance, plan.identity_weight),
        (30, 5.0, 0.8)
    );
    assert_eq!((plan.size.width, plan.size.height), (1024, 1280));
    assert_eq!(plan.seed, Some(42));
}

#[test]
fn plan_without_diffusion_is_none() {
    let plan = Anime::plan(portrait(512, 512), no_capabilities(), Vec::new()).unwrap();
    assert_eq!(plan.method, IdentityMethod::None);
    assert_eq!((plan.steps, plan.guidance), (0, 0.0));
    assert_eq!(plan.seed, None);
    assert!(plan.reason.contains("anime look"));
}

#[test]
fn plan_rejects_bad_options() {
    for bad in [
        &[("colour", "red")][..],
        &[("line-strength", "2")],
        &[("seed", "x")],
    ] {
        match Anime::plan(portrait(512, 512), all_capabilities(), opts(bad)) {
            Err(StyleError::InvalidOptions(m)) => assert!(m.contains(bad[0].0), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

fn plan_for(method: IdentityMethod) -> Plan {
    let mut plan = Anime::plan(portrait(64, 48), all_capabilities(), Vec::new()).unwrap();
    plan.method = method;
    plan
}

#[test]
fn post_process_keeps_the_size() {
    for method in [IdentityMethod::None, IdentityMethod::InstantId] {
        for (w, h) in [(64, 48), (1, 1), (3, 200)] {
            let out = Anime::post_process(
                photo(w, h).into_image(),
                portrait(w, h),
                plan_for(method),
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
    match Anime::post_process(
        bad,
        portrait(10, 10),
        plan_for(IdentityMethod::None),
        Vec::new(),
    ) {
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
