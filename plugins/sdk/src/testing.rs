//! Ready-made inputs for native tests of styles (an analysis with one clear face, plans for
//! each kind of method, the options a host gives, a synthetic photo), a reader for the flat
//! `style.toml` fields and the one check every style's `describe` must pass. Built for the
//! SDK's own tests and with the `preview` feature.

use crate::image::Rgba;
use crate::{
    Analysis, Capabilities, ControlKind, ControlMap, Diffusion, Face, Landmarks, Method,
    MethodKind, Options, ParamSpec, Plan, Point, Rect, Style, Transfer, TransferCapabilities,
    Value,
};

/// An analysis of a `width` x `height` photo with one clear, dominant face in the middle
/// (a third of the short side wide).
pub fn portrait(width: u32, height: u32) -> Analysis {
    let side = width.min(height) as f32 / 3.0;
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let p = |x: f32, y: f32| Point {
        x: cx + x * side,
        y: cy + y * side,
    };
    Analysis {
        width,
        height,
        faces: vec![Face {
            bbox: Rect {
                x1: cx - side / 2.0,
                y1: cy - side / 2.0,
                x2: cx + side / 2.0,
                y2: cy + side / 2.0,
            },
            score: 0.95,
            landmarks: Landmarks {
                left_eye: p(-0.2, -0.1),
                right_eye: p(0.2, -0.1),
                nose: p(0.0, 0.05),
                mouth_left: p(-0.15, 0.25),
                mouth_right: p(0.15, 0.25),
            },
            share: side * side / (width as f32 * height as f32),
            dominant: true,
        }],
    }
}

/// A plan running `method` (a diffusion method gets typical settings), as the host would
/// pass it to `post-process`.
pub fn plan(method: MethodKind) -> Plan {
    let settings = Diffusion {
        prompt: "a portrait".into(),
        negative_prompt: String::new(),
        control_maps: vec![ControlMap {
            kind: ControlKind::Canny,
            weight: 0.5,
            start: 0.0,
            end: 0.9,
        }],
        identity_weight: 0.8,
        steps: 30,
        guidance: 5.0,
        size: None,
        seed: Some(1),
    };
    let method = match method {
        MethodKind::InstantId => Method::InstantId(settings),
        MethodKind::Pulid => Method::Pulid(settings),
        MethodKind::Controlnet => Method::Controlnet(settings),
        MethodKind::StyleTransfer => Method::StyleTransfer(Transfer {
            learned_styles: vec![("style-00".into(), 1.0)],
            style_picture: None,
            strength: 0.8,
            working_side: Some(768),
            face_preservation: 0.5,
        }),
        MethodKind::None => Method::None,
    };
    Plan {
        method,
        fallbacks: vec![Method::None],
        reference_faces: Vec::new(),
        identity_gate: None,
        reason: "A test plan.".into(),
    }
}

/// The capabilities of a host without a diffusion pack: method `none`, and with `transfer`
/// also `style-transfer` with 26 learned styles (`style-00` to `style-25`), style pictures
/// and a largest working side of 1024.
pub fn capabilities(transfer: bool) -> Capabilities {
    let mut methods = vec![MethodKind::None];
    if transfer {
        methods.push(MethodKind::StyleTransfer);
    }
    Capabilities {
        methods,
        control_maps: Vec::new(),
        diffusion_sizes: None,
        transfer: transfer.then(|| TransferCapabilities {
            learned_styles: (0..26).map(|i| format!("style-{i:02}")).collect(),
            style_pictures: true,
            max_side: 1024,
        }),
    }
}

/// The options a host gives a style with `params` for a request that set `pairs`: the
/// defaults, with `pairs` in place of theirs (values are trusted: the host checks them).
pub fn options(params: &[ParamSpec], pairs: &[(&str, Value)]) -> Options {
    params
        .iter()
        .filter_map(|p| {
            let given = pairs.iter().find(|(name, _)| *name == p.name);
            let value = given.map(|(_, v)| v.clone()).or(p.default_value.clone())?;
            Some((p.name.clone(), value))
        })
        .collect()
}

/// [`options`] from text values, each read as its parameter's kind (a test's shorthand for
/// what the host's check makes of a request).
pub fn options_from_text(params: &[ParamSpec], pairs: &[(&str, &str)]) -> Options {
    use crate::ParamKind as K;
    let typed: Vec<(&str, Value)> = pairs
        .iter()
        .filter_map(|(name, text)| {
            let spec = params.iter().find(|p| p.name == *name)?;
            let value = match spec.kind {
                K::Integer(_) => Value::Integer(text.parse().ok()?),
                K::Number(_) => Value::Number(text.parse().ok()?),
                K::Boolean => Value::Boolean(text.parse().ok()?),
                K::Text(_) | K::Choice(_) => Value::Text(text.to_string()),
            };
            Some((*name, value))
        })
        .collect();
    options(params, &typed)
}

/// Checks `S`'s `describe` against its `style.toml` (`manifest`, the file's text): id, name,
/// version and description agree, the component is `<id>.wasm`, the parameters are `names`
/// in order, and each default is a value of its parameter's kind.
pub fn assert_describe_matches_manifest<S: Style>(manifest: &str, names: &[&str]) {
    let info = crate::style::describe::<S>();
    for (key, said) in [
        ("id", &info.id),
        ("name", &info.name),
        ("version", &info.version),
        ("description", &info.description),
    ] {
        assert_eq!(
            manifest_value(manifest, key).as_deref(),
            Some(said.as_str()),
            "{key}"
        );
    }
    assert_eq!(
        manifest_value(manifest, "component"),
        Some(format!("{}.wasm", info.id))
    );
    let declared: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(declared, names);
    for p in &info.params {
        use crate::ParamKind as K;
        let ok = match (&p.kind, &p.default_value) {
            (_, None) => true,
            (K::Text(max), Some(Value::Text(t))) => t.chars().count() <= *max as usize,
            (K::Integer(r), Some(Value::Integer(n))) => (r.min..=r.max).contains(n),
            (K::Number(r), Some(Value::Number(x))) => (r.min..=r.max).contains(x),
            (K::Boolean, Some(Value::Boolean(_))) => true,
            (K::Choice(c), Some(Value::Text(t))) => c.contains(t),
            _ => false,
        };
        assert!(ok, "the default of {} is not a {:?} value", p.name, p.kind);
    }
}

/// Checks `S`'s plan on a host without a diffusion pack (the default plan there is `none`):
/// with style transfer offered it is `style-transfer` of a look the host can draw (settings
/// in range, an identity gate, falling back to `none`), without it the default plan stays.
/// Returns the transfer settings for the style's own checks.
pub fn assert_plans_transfer<S: Style>() -> Transfer {
    let look = S::TRANSFER.expect("the style declares a transfer look");
    let default = plan(MethodKind::None);
    assert_eq!(
        crate::transfer::with_transfer(default.clone(), &capabilities(false), S::SPEC.id, &look),
        default,
        "without the transfer networks the default plan stays"
    );
    let planned = crate::transfer::with_transfer(default, &capabilities(true), S::SPEC.id, &look);
    let Method::StyleTransfer(settings) = planned.method else {
        panic!("no style transfer planned: {planned:?}");
    };
    assert_eq!(planned.fallbacks, vec![Method::None]);
    let gate = planned.identity_gate.expect("a transfer plan has a gate");
    assert!(gate.threshold > 0.0 && gate.threshold < 1.0, "{gate:?}");
    assert!(planned.reason.contains(S::SPEC.id), "{}", planned.reason);
    let unit = 0.0..=1.0;
    assert!(unit.contains(&settings.strength) && unit.contains(&settings.face_preservation));
    assert!(settings.style_picture.is_some() || !settings.learned_styles.is_empty());
    for (name, weight) in &settings.learned_styles {
        assert!(
            name.starts_with("style-") && unit.contains(weight),
            "{name} {weight}"
        );
    }
    settings
}

/// A synthetic photo: a warm gradient background, a skin-toned disc and some stripes.
pub fn photo(width: u32, height: u32) -> Rgba {
    let mut img = Rgba::new(width, height);
    let (cx, cy, r) = (
        width as f32 / 2.0,
        height as f32 / 2.0,
        width.min(height) as f32 / 4.0,
    );
    for y in 0..height {
        for x in 0..width {
            let i = ((y * width + x) * 4) as usize;
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let c = if dx * dx + dy * dy < r * r {
                [224, 172, 140]
            } else if (x / 7) % 3 == 0 {
                [40, 60, 120]
            } else {
                [(x * 255 / width) as u8, 120, (y * 255 / height) as u8]
            };
            img.data[i..i + 3].copy_from_slice(&c);
        }
    }
    img
}

/// The string value of `key` in a flat TOML manifest (`key = "value"` lines), for checking
/// a style's `style.toml` against its `describe`.
pub fn manifest_value(toml: &str, key: &str) -> Option<String> {
    toml.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = v.strip_prefix('"')?;
        Some(v[..v.find('"')?].to_string())
    })
}

/// A global allocator that counts, per thread, the bytes live on the heap, so that tests can
/// check a style's peak memory against the host's limit (256 MiB by default):
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: likeness_sdk::testing::CountingAlloc = likeness_sdk::testing::CountingAlloc;
/// let (_, peak) = likeness_sdk::testing::peak_heap(|| render(&photo));
/// ```
pub struct CountingAlloc;

thread_local! {
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size(), 0);
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(0, layout.size());
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the most heap bytes it had live at once on this
/// thread (beyond what was live before). Only meaningful with [`CountingAlloc`] installed.
pub fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let result = f();
    let peak = PEAK.with(|p| p.get());
    (result, peak.saturating_sub(base))
}
