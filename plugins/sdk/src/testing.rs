//! Ready-made inputs for native tests of styles (an analysis with one clear face, the
//! capabilities of a full and of an empty host, a synthetic photo) and a reader for the flat
//! `style.toml` fields. Built for the SDK's own tests and with the `preview` feature.

use crate::image::Rgba;
use crate::{Analysis, Capabilities, ControlKind, Face, IdentityMethod, Landmarks, Point, Rect};

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

/// Everything a full diffusion pack offers.
pub fn all_capabilities() -> Capabilities {
    Capabilities {
        identity_methods: vec![
            IdentityMethod::InstantId,
            IdentityMethod::Pulid,
            IdentityMethod::Controlnet,
        ],
        control_maps: vec![
            ControlKind::Canny,
            ControlKind::Depth,
            ControlKind::FaceKeypoints,
            ControlKind::Pose,
        ],
    }
}

/// A host without a diffusion pack.
pub fn no_capabilities() -> Capabilities {
    Capabilities {
        identity_methods: Vec::new(),
        control_maps: Vec::new(),
    }
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
