//! A contract 0.2 style that drives the host's `canvas` operations, for the sandbox tests.
//! Written against `wit/style.wit` with wit-bindgen alone (no SDK), so it is exactly what a
//! component of any language sends the host.
//!
//! The option `probe` picks what `post-process` does: `every-op` (the default) runs every
//! native operation once in a fixed pipeline (tests/sandbox.rs computes the same pipeline with
//! likeness-imaging and expects the same pixels); `blur-loop` blurs forever (the CPU budget
//! must stop it); `smooth-once` smooths once, a single long native operation (with a budget
//! shorter than it, the call must fail with the timeout); `hoard` makes 4 MiB images and keeps
//! them (the memory cap must refuse one).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use exports::likeness::style::style::{Guest, StyleInfo};
use likeness::style::canvas::{BlendMode, Image, Rgba};
use likeness::style::types::{
    Analysis, Capabilities, Method, Options, ParamKind, ParamSpec, Plan, Rect, Size, StyleError,
    Value,
};

struct Probe;

fn probe(options: &Options) -> &str {
    options
        .iter()
        .find_map(|(name, value)| match (name.as_str(), value) {
            ("probe", Value::Text(text)) => Some(text.as_str()),
            _ => None,
        })
        .unwrap_or("every-op")
}

/// Every native operation once, in a fixed order; the same size as `image`.
fn every_op(image: &Image) -> Image {
    let (w, h) = (image.width(), image.height());
    let small = image.resize(
        Size {
            width: w / 2,
            height: h / 2,
        },
        false,
    );
    let back = small.resize(
        Size {
            width: w,
            height: h,
        },
        true,
    );
    let blurred = image.blur(2.5);
    let poster = image.smooth(4, 0.01).posterize(5);
    let palette = image.palette(6);
    let quantized = image.quantize(&palette, true);
    let edges = image.edges(1.0);
    let adjusted = image.adjust(0.05, 1.2, 1.1);
    let noise = Image::noise(w, h, 12.0, 42);
    let bbox = Rect {
        x1: w as f32 * 0.2,
        y1: h as f32 * 0.1,
        x2: w as f32 * 0.8,
        y2: h as f32 * 0.9,
    };
    let mask = image.ellipse_mask(bbox, 8.0);
    let layered = adjusted
        .blend(&edges, BlendMode::Multiply, 0.6)
        .and_then(|b| b.blend(&noise, BlendMode::SoftLight, 0.3))
        .expect("same sizes");
    let framed = quantized.composite(&poster, &mask).expect("same sizes");
    let glow = back
        .blend(&blurred, BlendMode::Screen, 0.5)
        .expect("same sizes");
    let red = Image::filled(
        w,
        h,
        Rgba {
            r: 255,
            g: 0,
            b: 0,
            a: 255,
        },
    );
    framed
        .composite(&layered, &glow)
        .and_then(|c| c.blend(&red, BlendMode::Overlay, 0.2))
        .and_then(|c| c.blend(&glow, BlendMode::Normal, 0.25))
        .expect("same sizes")
}

impl Guest for Probe {
    fn describe() -> StyleInfo {
        StyleInfo {
            id: "canvas-probe".into(),
            name: "canvas-probe".into(),
            version: "0.2.0".into(),
            description: "Runs the host's native image operations on request; for sandbox \
                          tests only."
                .into(),
            params: vec![ParamSpec {
                name: "probe".into(),
                description: "What post-process does.".into(),
                kind: ParamKind::Choice(vec![
                    "every-op".into(),
                    "blur-loop".into(),
                    "smooth-once".into(),
                    "hoard".into(),
                ]),
                default_value: Some(Value::Text("every-op".into())),
            }],
        }
    }

    fn choose_plan(
        _analysis: Analysis,
        _capabilities: Capabilities,
        _options: Options,
    ) -> Result<Plan, StyleError> {
        Ok(Plan {
            method: Method::None,
            fallbacks: Vec::new(),
            reference_faces: Vec::new(),
            identity_gate: None,
            reason: "The canvas probe renders with the host's image operations.".into(),
        })
    }

    fn post_process(
        image: Image,
        _analysis: Analysis,
        _plan: Plan,
        options: Options,
    ) -> Result<Image, StyleError> {
        match probe(&options) {
            "blur-loop" => {
                let mut image = image;
                loop {
                    image = image.blur(3.0);
                }
            }
            "smooth-once" => Ok(image.smooth(16, 0.01)),
            "hoard" => {
                let grey = Rgba {
                    r: 128,
                    g: 128,
                    b: 128,
                    a: 255,
                };
                let mut kept = Vec::new();
                loop {
                    kept.push(Image::filled(1024, 1024, grey));
                }
            }
            _ => Ok(every_op(&image)),
        }
    }
}

export!(Probe);
