//! The canvas operations on 1024 x 1024 and 2048 x 2048 photos: the best and the median of
//! five runs of each, single-threaded, as the host runs them for a style. Prints a table.
//!
//! `cargo bench -p likeness-imaging --bench canvas_ops`

use std::path::Path;
use std::time::{Duration, Instant};

use likeness_imaging::{BlendMode, Rgba, canvas};

const RUNS: usize = 5;

/// The golden test photo (a real one, 160 x 120), Lanczos-resized to `side` x `side`.
fn photo(side: u32) -> Rgba {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/photo-large.png");
    let mut decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let small = Rgba::from_raw(info.width, info.height, buf).unwrap();
    canvas::resize(&small, side, side, false).unwrap()
}

/// Best and median of [`RUNS`] runs of `op`.
fn time<T>(op: impl Fn() -> T) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(op());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[RUNS / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let sides = [1024u32, 2048];
    let photos: Vec<Rgba> = sides.iter().map(|&s| photo(s)).collect();
    let layers: Vec<Rgba> = photos
        .iter()
        .map(|p| canvas::adjust(p, 0.0, 1.0, 0.0))
        .collect();
    let masks: Vec<Rgba> = sides
        .iter()
        .map(|&s| canvas::noise(s, s, 64.0, 3).unwrap())
        .collect();
    let palette16: Vec<[u8; 4]> = canvas::palette(&photos[0], 16);
    type Op<'a> = (&'a str, Box<dyn Fn(usize) -> usize + 'a>);
    let ops: Vec<Op> = vec![
        (
            "filled",
            Box::new(|i| {
                canvas::filled(sides[i], sides[i], [9, 9, 9, 255])
                    .unwrap()
                    .data
                    .len()
            }),
        ),
        (
            "noise scale 32",
            Box::new(|i| {
                canvas::noise(sides[i], sides[i], 32.0, 1)
                    .unwrap()
                    .data
                    .len()
            }),
        ),
        (
            "resize lanczos to 1/2",
            Box::new(|i| {
                let s = sides[i] / 2;
                canvas::resize(&photos[i], s, s, false).unwrap().data.len()
            }),
        ),
        (
            "resize lanczos to 3/2",
            Box::new(|i| {
                let s = sides[i] * 3 / 2;
                canvas::resize(&photos[i], s, s, false).unwrap().data.len()
            }),
        ),
        (
            "resize nearest to 1/2",
            Box::new(|i| {
                let s = sides[i] / 2;
                canvas::resize(&photos[i], s, s, true).unwrap().data.len()
            }),
        ),
        (
            "blur sigma 2",
            Box::new(|i| canvas::blur(&photos[i], 2.0).data.len()),
        ),
        (
            "blur sigma 12",
            Box::new(|i| canvas::blur(&photos[i], 12.0).data.len()),
        ),
        (
            "smooth r 8 eps 0.01",
            Box::new(|i| canvas::smooth(&photos[i], 8, 0.01).data.len()),
        ),
        (
            "posterize 5",
            Box::new(|i| canvas::posterize(&photos[i], 5).data.len()),
        ),
        (
            "quantize 16",
            Box::new(|i| canvas::quantize(&photos[i], &palette16, false).data.len()),
        ),
        (
            "quantize 16 dithered",
            Box::new(|i| canvas::quantize(&photos[i], &palette16, true).data.len()),
        ),
        (
            "palette 16 (k-means)",
            Box::new(|i| canvas::palette(&photos[i], 16).len()),
        ),
        (
            "edges sigma 1.5",
            Box::new(|i| canvas::edges(&photos[i], 1.5).data.len()),
        ),
        (
            "adjust",
            Box::new(|i| canvas::adjust(&photos[i], 0.05, 1.2, 1.3).data.len()),
        ),
        (
            "blend soft-light",
            Box::new(|i| {
                canvas::blend(&photos[i], &layers[i], BlendMode::SoftLight, 0.8)
                    .unwrap()
                    .data
                    .len()
            }),
        ),
        (
            "composite",
            Box::new(|i| {
                canvas::composite(&photos[i], &layers[i], &masks[i])
                    .unwrap()
                    .data
                    .len()
            }),
        ),
        (
            "ellipse mask feather 40",
            Box::new(|i| {
                let s = sides[i] as f32;
                canvas::ellipse_mask(&photos[i], [0.2 * s, 0.1 * s, 0.8 * s, 0.9 * s], 40.0)
                    .data
                    .len()
            }),
        ),
    ];
    println!(
        "canvas operations, best / median of {RUNS} runs, ms (one thread, {})",
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    println!(
        "| {:<24} | {:>17} | {:>17} |",
        "operation", "1024 x 1024", "2048 x 2048"
    );
    println!("|{:-<26}|{:->19}|{:->19}|", "", "", "");
    for (name, op) in &ops {
        let cells: Vec<String> = (0..sides.len())
            .map(|i| {
                let (best, median) = time(|| op(i));
                format!("{} / {}", ms(best), ms(median))
            })
            .collect();
        println!("| {name:<24} | {:>17} | {:>17} |", cells[0], cells[1]);
    }
}
