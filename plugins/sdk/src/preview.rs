//! PNG loading and saving for native previews and tests of styles (feature `preview`; never
//! part of a component: the host decodes and encodes images).

use crate::image::Rgba;
use crate::{Analysis, Face, Landmarks, Point, Rect};
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::Path;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reads an 8- or 16-bit PNG of any colour type as RGBA.
pub fn load_png(path: impl AsRef<Path>) -> io::Result<Rgba> {
    let mut decoder = png::Decoder::new(BufReader::new(File::open(path)?));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(invalid)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| invalid("PNG too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(invalid)?;
    buf.truncate(info.buffer_size());
    let n = info.width as usize * info.height as usize;
    let data = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => return Err(invalid("indexed PNG was not expanded")),
    };
    debug_assert_eq!(data.len(), n * 4);
    Rgba::from_raw(info.width, info.height, data).map_err(|e| invalid(format!("{e:?}")))
}

/// Writes `image` as an RGBA PNG.
pub fn save_png(path: impl AsRef<Path>, image: &Rgba) -> io::Result<()> {
    let mut encoder = png::Encoder::new(
        BufWriter::new(File::create(path)?),
        image.width,
        image.height,
    );
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(invalid)?;
    writer.write_image_data(&image.data).map_err(invalid)?;
    writer.finish().map_err(invalid)
}

/// Renders every preview photo with `render` and writes the results as PNGs, for looking at a
/// style natively: each photo of `LIKENESS_PREVIEW_INPUTS` (comma-separated PNG paths; default
/// `/tmp/astronaut.png,/tmp/chelsea.png`, missing files skipped) at its own size and scaled to
/// 1024 x 1024, into `LIKENESS_PREVIEW_DIR` (default `/tmp/likeness-preview`) as
/// `<style>-<photo>.png` and `<style>-<photo>-1024.png`. Prints the best of three timings at
/// 1024 x 1024 and returns the paths written.
///
/// `render` gets the photo and an analysis of it: the faces listed in `<photo>.faces` next to
/// the photo when there is one (a line `x1 y1 x2 y2` per face box, in the photo's pixels);
/// else for scikit-image's `astronaut.png` (the default portrait) one face with a
/// hand-measured box, for other photos no faces.
pub fn render_previews(
    style: &str,
    render: impl Fn(&Rgba, &Analysis) -> Rgba,
) -> io::Result<Vec<String>> {
    let inputs = std::env::var("LIKENESS_PREVIEW_INPUTS")
        .unwrap_or_else(|_| "/tmp/astronaut.png,/tmp/chelsea.png".to_string());
    let dir = std::env::var("LIKENESS_PREVIEW_DIR")
        .unwrap_or_else(|_| "/tmp/likeness-preview".to_string());
    std::fs::create_dir_all(&dir)?;
    let mut written = Vec::new();
    for input in inputs.split(',').filter(|s| !s.is_empty()) {
        let Ok(photo) = load_png(input) else {
            eprintln!("preview: skipping {input} (missing or unreadable)");
            continue;
        };
        let stem = Path::new(input)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("photo");
        let boxes = std::fs::read_to_string(format!("{input}.faces")).ok();
        let analysis = |width, height| match &boxes {
            Some(text) => listed_faces(text, (photo.width, photo.height), (width, height)),
            None => preview_analysis(stem, width, height),
        };
        let out = render(&photo, &analysis(photo.width, photo.height));
        assert_eq!((out.width, out.height), (photo.width, photo.height));
        let path = format!("{dir}/{style}-{stem}.png");
        save_png(&path, &out)?;
        written.push(path);

        let big = photo.resize(1024, 1024);
        let analysis = analysis(1024, 1024);
        let mut best = f64::MAX;
        let mut out = big.clone();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            out = render(&big, &analysis);
            best = best.min(start.elapsed().as_secs_f64() * 1000.0);
        }
        println!("preview: {style} on {stem} at 1024 x 1024: {best:.1} ms");
        let path = format!("{dir}/{style}-{stem}-1024.png");
        save_png(&path, &out)?;
        written.push(path);
    }
    Ok(written)
}

/// The faces of a `.faces` listing of a photo of size `from`, at size `to`, the largest first
/// and dominant, with landmarks placed where a frontal face has them.
fn listed_faces(text: &str, from: (u32, u32), to: (u32, u32)) -> Analysis {
    let (sx, sy) = (to.0 as f32 / from.0 as f32, to.1 as f32 / from.1 as f32);
    let mut boxes: Vec<Rect> = text
        .lines()
        .filter_map(|line| {
            let v: Vec<f32> = line
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect();
            (v.len() == 4).then(|| Rect {
                x1: v[0] * sx,
                y1: v[1] * sy,
                x2: v[2] * sx,
                y2: v[3] * sy,
            })
        })
        .collect();
    let area = |r: &Rect| (r.x2 - r.x1) * (r.y2 - r.y1);
    boxes.sort_by(|a, b| area(b).total_cmp(&area(a)));
    let faces = boxes
        .into_iter()
        .enumerate()
        .map(|(i, bbox)| {
            let (w, h) = (bbox.x2 - bbox.x1, bbox.y2 - bbox.y1);
            let p = |x: f32, y: f32| Point {
                x: bbox.x1 + x * w,
                y: bbox.y1 + y * h,
            };
            Face {
                share: w * h / (to.0 as f32 * to.1 as f32),
                score: 0.99,
                landmarks: Landmarks {
                    left_eye: p(0.3, 0.4),
                    right_eye: p(0.7, 0.4),
                    nose: p(0.5, 0.6),
                    mouth_left: p(0.33, 0.77),
                    mouth_right: p(0.67, 0.77),
                },
                dominant: i == 0,
                bbox,
            }
        })
        .collect();
    Analysis {
        width: to.0,
        height: to.1,
        faces,
    }
}

/// The analysis of a preview photo at `width` x `height`: the face of `astronaut.png`
/// (measured by hand at 512 x 512), or no faces.
fn preview_analysis(stem: &str, width: u32, height: u32) -> Analysis {
    let mut faces = Vec::new();
    if stem == "astronaut" {
        let (sx, sy) = (width as f32 / 512.0, height as f32 / 512.0);
        let p = |x: f32, y: f32| Point {
            x: x * sx,
            y: y * sy,
        };
        let bbox = Rect {
            x1: 172.0 * sx,
            y1: 62.0 * sy,
            x2: 276.0 * sx,
            y2: 186.0 * sy,
        };
        faces.push(Face {
            share: (bbox.x2 - bbox.x1) * (bbox.y2 - bbox.y1) / (width as f32 * height as f32),
            bbox,
            score: 0.99,
            landmarks: Landmarks {
                left_eye: p(200.0, 112.0),
                right_eye: p(246.0, 112.0),
                nose: p(224.0, 128.0),
                mouth_left: p(205.0, 148.0),
                mouth_right: p(242.0, 148.0),
            },
            dominant: true,
        });
    }
    Analysis {
        width,
        height,
        faces,
    }
}
