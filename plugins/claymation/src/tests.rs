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
    let info = Claymation::describe();
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
        Some("claymation.wasm")
    );
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["caption", "seed", "shine"]);
}

#[test]
fn plan_prefers_pulid() {
    let plan = Claymation::plan(
        portrait(1200, 900),
        all_capabilities(),
        opts(&[("seed", "7")]),
    )
    .unwrap();
    assert_eq!(plan.method, IdentityMethod::Pulid);
    assert_eq!(plan.fallback, IdentityMethod::Controlnet);
    assert_eq!(plan.reference_face, Some(0));
    assert!(plan.control_maps.is_empty());
    assert!(
        plan.prompt
            .starts_with("claymation figure of a person, plasticine")
    );
    assert_eq!(
        (plan.steps, plan.guidance, plan.identity_weight),
        (4, 1.2, 0.9)
    );
    assert_eq!((plan.size.width, plan.size.height), (1280, 1024));
    assert_eq!(plan.seed, Some(7));
}

#[test]
fn plan_without_diffusion_is_none() {
    let plan = Claymation::plan(portrait(512, 512), no_capabilities(), Vec::new()).unwrap();
    assert_eq!(plan.method, IdentityMethod::None);
    assert_eq!(plan.steps, 0);
    assert!(plan.reason.contains("claymation look"));
}

#[test]
fn plan_rejects_bad_options() {
    for bad in [
        &[("palette", "nes")][..],
        &[("shine", "glossy")],
        &[("shine", "-0.1")],
    ] {
        match Claymation::plan(portrait(512, 512), all_capabilities(), opts(bad)) {
            Err(StyleError::InvalidOptions(m)) => assert!(m.contains(bad[0].0), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

fn plan_for(method: IdentityMethod) -> Plan {
    let mut plan = Claymation::plan(portrait(64, 48), all_capabilities(), Vec::new()).unwrap();
    plan.method = method;
    plan
}

#[test]
fn post_process_keeps_the_size() {
    for method in [IdentityMethod::None, IdentityMethod::Pulid] {
        for (w, h) in [(64, 48), (1, 1), (200, 3)] {
            let out = Claymation::post_process(
                photo(w, h).into_image(),
                portrait(w, h),
                plan_for(method),
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
    match Claymation::post_process(
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
