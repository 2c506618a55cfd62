//! Every canvas operation against a reference implementation (OpenCV, Pillow or NumPy), on
//! real photos made small: the golden files in `tests/goldens/` are written by
//! `tools/canvas-reference/make_goldens.py` (`make canvas-goldens`); this test needs no Python.
//!
//! Each case must stay within its operation's tolerance, in `0..=255` over every channel of
//! every pixel: the largest absolute difference and the mean absolute difference
//! ([`TOLERANCES`]; docs/style-guide.md lists the same numbers).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use likeness_imaging::{BlendMode, Rgba, canvas};

/// The most an operation may differ from a reference implementation, in `0..=255`: the
/// operation, the reference (a case's `ref`), the largest and the mean absolute difference, and
/// why there is any.
const TOLERANCES: &[(&str, &str, u8, f64, &str)] = &[
    ("filled", "numpy", 0, 0.0, "exact"),
    ("noise", "numpy", 1, 0.01, "float32 both; exact in practice"),
    (
        "resize",
        "pillow",
        0,
        0.0,
        "the same fixed-point scheme; exact",
    ),
    (
        "blur",
        "opencv",
        2,
        0.5,
        "below sigma 3 OpenCV's 8-bit fixed point rounds differently (1); above, three box blurs",
    ),
    (
        "smooth",
        "opencv",
        1,
        0.01,
        "float32 vs float64; exact in practice",
    ),
    ("posterize", "numpy", 0, 0.0, "exact"),
    (
        "quantize",
        "numpy",
        0,
        0.0,
        "integer Floyd-Steinberg; exact",
    ),
    (
        "edges",
        "opencv",
        2,
        0.35,
        "OpenCV's float kernel reaches 4 sigma, ours 3; three box blurs from sigma 3",
    ),
    (
        "adjust",
        "numpy",
        1,
        0.01,
        "float32 vs float64; exact in practice",
    ),
    (
        "blend",
        "numpy",
        1,
        0.01,
        "float32 vs float64; exact in practice",
    ),
    (
        "blend",
        "pillow",
        1,
        0.35,
        "ImageChops truncates where the W3C formulas round",
    ),
    ("composite", "pillow", 0, 0.0, "exact"),
    (
        "ellipse-mask",
        "numpy",
        1,
        0.01,
        "float32 vs float64; exact in practice",
    ),
];

/// k-means may end in a different local optimum than OpenCV's best of ten: its total squared
/// error may exceed OpenCV's by this factor at most.
const PALETTE_SSE_RATIO: f64 = 1.08;

fn goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens")
}

fn load(name: &str) -> Rgba {
    let path = goldens().join(format!("{name}.png"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    // make_goldens.py writes every image as RGBA.
    assert_eq!(info.color_type, png::ColorType::Rgba, "{name}.png");
    Rgba::from_raw(info.width, info.height, buf).unwrap()
}

/// One line of the manifest.
struct Case {
    name: String,
    op: String,
    input: String,
    params: HashMap<String, String>,
}

impl Case {
    fn get<T: std::str::FromStr>(&self, key: &str) -> T {
        let value = self
            .params
            .get(key)
            .unwrap_or_else(|| panic!("{}: no {key}", self.name));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad {key} {value}", self.name))
    }

    fn floats(&self, key: &str) -> Vec<f32> {
        self.get::<String>(key)
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect()
    }

    fn colours(&self, key: &str) -> Vec<[u8; 4]> {
        self.get::<String>(key)
            .split(';')
            .map(|c| {
                let v: Vec<u8> = c.split(',').map(|v| v.parse().unwrap()).collect();
                [v[0], v[1], v[2], v.get(3).copied().unwrap_or(255)]
            })
            .collect()
    }
}

fn cases() -> Vec<Case> {
    let manifest = std::fs::read_to_string(goldens().join("manifest.txt")).unwrap();
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next().unwrap().to_string();
            let op = fields.next().unwrap().to_string();
            let input = fields.next().unwrap().to_string();
            let params = fields
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            Case {
                name,
                op,
                input,
                params,
            }
        })
        .collect()
}

fn mode(name: &str) -> BlendMode {
    match name {
        "normal" => BlendMode::Normal,
        "multiply" => BlendMode::Multiply,
        "screen" => BlendMode::Screen,
        "overlay" => BlendMode::Overlay,
        "soft-light" => BlendMode::SoftLight,
        other => panic!("unknown blend mode {other}"),
    }
}

/// What our implementation makes for `case`.
fn run(case: &Case) -> Rgba {
    let input = || load(&case.input);
    match case.op.as_str() {
        "filled" => {
            let c = case.colours("rgba")[0];
            canvas::filled(case.get("width"), case.get("height"), c).unwrap()
        }
        "noise" => canvas::noise(
            case.get("width"),
            case.get("height"),
            case.get("scale"),
            case.get("seed"),
        )
        .unwrap(),
        "resize" => canvas::resize(
            &input(),
            case.get("width"),
            case.get("height"),
            case.get("nearest"),
        )
        .unwrap(),
        "blur" => canvas::blur(&input(), case.get("sigma")),
        "smooth" => canvas::smooth(&input(), case.get("radius"), case.get("epsilon")),
        "posterize" => canvas::posterize(&input(), case.get("levels")),
        "quantize" => canvas::quantize(&input(), &case.colours("palette"), case.get("dither")),
        "edges" => canvas::edges(&input(), case.get("sigma")),
        "adjust" => canvas::adjust(
            &input(),
            case.get("brightness"),
            case.get("contrast"),
            case.get("saturation"),
        ),
        "blend" => canvas::blend(
            &input(),
            &load(&case.get::<String>("top")),
            mode(&case.get::<String>("mode")),
            case.get("opacity"),
        )
        .unwrap(),
        "composite" => canvas::composite(
            &input(),
            &load(&case.get::<String>("top")),
            &load(&case.get::<String>("mask")),
        )
        .unwrap(),
        "ellipse-mask" => {
            let b = case.floats("box");
            canvas::ellipse_mask(&input(), [b[0], b[1], b[2], b[3]], case.get("feather"))
        }
        other => panic!("{}: unknown op {other}", case.name),
    }
}

/// The largest and the mean absolute difference over every byte.
fn difference(ours: &Rgba, reference: &Rgba) -> (u8, f64) {
    let max = ours
        .data
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let sum: u64 = ours
        .data
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| a.abs_diff(*b) as u64)
        .sum();
    (max, sum as f64 / ours.data.len().max(1) as f64)
}

/// Total squared RGB distance of every pixel to its nearest palette colour.
fn sse(image: &Rgba, palette: &[[u8; 4]]) -> f64 {
    image
        .data
        .chunks_exact(4)
        .map(|p| {
            palette
                .iter()
                .map(|c| {
                    (0..3)
                        .map(|i| (p[i] as f64 - c[i] as f64).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::MAX, f64::min)
        })
        .sum()
}

#[test]
fn every_operation_matches_its_reference() {
    let cases = cases();
    let mut covered: Vec<(&str, &str)> = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        if case.op == "palette" {
            let count: u32 = case.get("count");
            let colours = canvas::palette(&load(&case.input), count);
            assert_eq!(colours.len(), count as usize, "{}", case.name);
            let ours = sse(&load(&case.input), &colours);
            let reference: f64 = case.get("sse");
            let ratio = ours / reference;
            println!(
                "{:<24} sse {ours:.0} vs OpenCV {reference:.0} ({ratio:.3}x)",
                case.name
            );
            if ratio > PALETTE_SSE_RATIO {
                failures.push(format!("{}: {ratio:.3}x OpenCV's error", case.name));
            }
            covered.push(("palette", "opencv"));
            continue;
        }
        let reference_name: String = case.get("ref");
        let &(op, reference_name, max_allowed, mean_allowed, _) = TOLERANCES
            .iter()
            .find(|t| t.0 == case.op && t.1 == reference_name)
            .unwrap_or_else(|| panic!("no tolerance for {} vs {reference_name}", case.op));
        let ours = run(case);
        let reference = load(&case.name);
        assert_eq!(
            (ours.width, ours.height),
            (reference.width, reference.height),
            "{}: size",
            case.name
        );
        let (max, mean) = difference(&ours, &reference);
        println!(
            "{:<24} vs {reference_name:<7} max {max:>3}  mean {mean:.4}",
            case.name
        );
        if max > max_allowed || mean > mean_allowed {
            failures.push(format!(
                "{}: max {max} (allowed {max_allowed}), mean {mean:.4} (allowed {mean_allowed})",
                case.name
            ));
        }
        covered.push((op, reference_name));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for &(op, reference, ..) in TOLERANCES
        .iter()
        .chain([("palette", "opencv", 0, 0.0, "")].iter())
    {
        assert!(
            covered.contains(&(op, reference)),
            "no golden case for {op} vs {reference}"
        );
    }
}
