//! The first-party Rust styles' post-processes without diffusion (method `none`, default
//! options, seed unset), compiled natively: the twins of what their components compute in
//! wasmtime, for the wasm-against-native test (`tests/plans.rs`) and bench
//! (`host/benches/style_calls.rs`).

use std::path::Path;

use likeness_contract::{self as contract, Analysis, Face, Landmarks, Point, Rect};
use likeness_host::wasm::Image;
use likeness_sdk::image::{Plane, Rgba};

/// The first-party styles written in Rust, by id.
pub const RUST_STYLES: [&str; 4] = ["anime", "claymation", "pixel-art", "watercolor"];

/// A photo-like test card: smooth gradients, a face-sized disc and fine noise, so that the
/// filters do their full work (at 1024x1024 the disc has a radius of 220 pixels).
pub fn test_card(width: u32, height: u32) -> Image {
    let mut rgba = Vec::with_capacity((width * height * 4) as usize);
    let mut seed = 0x2545_f491_u32;
    let (cx, cy) = (width as i64 / 2, height as i64 * 420 / 1024);
    let radius = width.min(height) as i64 * 220 / 1024;
    for y in 0..height {
        for x in 0..width {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 24) as i32 - 12;
            let inside = (x as i64 - cx).pow(2) + (y as i64 - cy).pow(2) < radius * radius;
            let (r, g, b) = if inside {
                (224, 172, 138)
            } else {
                (
                    (x * 1024 / width / 4) as i32,
                    (y * 1024 / height / 4) as i32,
                    120,
                )
            };
            let px = |c: i32| (c + noise).clamp(0, 255) as u8;
            rgba.extend_from_slice(&[px(r), px(g), px(b), 255]);
        }
    }
    Image {
        width,
        height,
        rgba,
    }
}

/// One dominant face on the [`test_card`] of this size (at 1024x1024: box 300..720 x
/// 200..640).
pub fn card_analysis(width: u32, height: u32) -> Analysis {
    let (sx, sy) = (width as f32 / 1024.0, height as f32 / 1024.0);
    let p = |x: f32, y: f32| Point {
        x: x * sx,
        y: y * sy,
    };
    Analysis {
        width,
        height,
        faces: vec![Face {
            bbox: Rect {
                x1: 300.0 * sx,
                y1: 200.0 * sy,
                x2: 720.0 * sx,
                y2: 640.0 * sy,
            },
            score: 0.99,
            landmarks: Landmarks {
                left_eye: p(430.0, 380.0),
                right_eye: p(590.0, 380.0),
                nose: p(510.0, 460.0),
                mouth_left: p(450.0, 540.0),
                mouth_right: p(570.0, 540.0),
            },
            share: 0.17,
            dominant: true,
        }],
    }
}

/// The native twins, with what they read from their packages (the watercolor paper).
pub struct NativeStyles {
    paper: Plane,
}

impl NativeStyles {
    /// Loads the watercolor paper from the repository at `repo`.
    pub fn new(repo: &Path) -> Self {
        let path = repo.join("plugins/watercolor/assets/paper.pgm");
        let paper = style_watercolor::load_paper(path.to_str().unwrap()).unwrap();
        NativeStyles { paper }
    }

    /// What style `id`'s component returns from `post-process` for method `none` with its
    /// default options; the function named is the one the style's `render` calls.
    pub fn post_process(&self, id: &str, photo: &Rgba, analysis: &contract::Analysis) -> Rgba {
        let analysis = sdk_analysis(analysis);
        match id {
            "anime" => style_anime::cel_shade(photo, style_anime::DEFAULT_LINE_STRENGTH),
            "claymation" => style_claymation::sculpt(photo, &analysis, 0.5, 0),
            "pixel-art" => style_pixel_art::pixelize(photo, 8, "pico8", true),
            "watercolor" => style_watercolor::paint(photo, &analysis, &self.paper, 0.6, 0),
            _ => panic!("{id} is not a first-party Rust style"),
        }
    }

    /// The function [`NativeStyles::post_process`] runs for `id`, for tables.
    pub fn function(id: &str) -> &'static str {
        match id {
            "anime" => "style_anime::cel_shade",
            "claymation" => "style_claymation::sculpt",
            "pixel-art" => "style_pixel_art::pixelize",
            "watercolor" => "style_watercolor::paint",
            _ => panic!("{id} is not a first-party Rust style"),
        }
    }
}

/// The host's analysis as the SDK's WIT type, which the native twins take.
fn sdk_analysis(analysis: &contract::Analysis) -> likeness_sdk::Analysis {
    let point = |p: &contract::Point| likeness_sdk::Point { x: p.x, y: p.y };
    likeness_sdk::Analysis {
        width: analysis.width,
        height: analysis.height,
        faces: analysis
            .faces
            .iter()
            .map(|f| likeness_sdk::Face {
                bbox: likeness_sdk::Rect {
                    x1: f.bbox.x1,
                    y1: f.bbox.y1,
                    x2: f.bbox.x2,
                    y2: f.bbox.y2,
                },
                score: f.score,
                landmarks: likeness_sdk::Landmarks {
                    left_eye: point(&f.landmarks.left_eye),
                    right_eye: point(&f.landmarks.right_eye),
                    nose: point(&f.landmarks.nose),
                    mouth_left: point(&f.landmarks.mouth_left),
                    mouth_right: point(&f.landmarks.mouth_right),
                },
                share: f.share,
                dominant: f.dominant,
            })
            .collect(),
    }
}
