//! PuLID's identity features on the tiny pack: the aligned face through face parsing (or the
//! landmark ellipse), whitening and EVA02-CLIP, into `id_cond` and `id_vit_hidden` of the sizes
//! `[pulid]` states, which the engine then generates from.

mod common;

use likeness_diffusion::pulid::{self, FACE_SIZE};
use likeness_diffusion::{CancelToken, EngineOptions, GenerationInput, Image, Method};

/// facexlib's template: where the aligned crop puts the five landmarks.
const TEMPLATE: [[f32; 2]; 5] = [
    [192.98138, 239.94708],
    [318.90277, 240.1936],
    [256.63416, 314.01935],
    [201.26117, 371.41043],
    [313.08905, 371.15118],
];

/// A face-like test crop: a warm oval on a blue background.
fn face() -> Image {
    let n = FACE_SIZE as usize;
    let mut data = Vec::with_capacity(n * n * 3);
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = ((x as f32 - 256.0) / 140.0, (y as f32 - 290.0) / 190.0);
            let inside = dx * dx + dy * dy <= 1.0;
            let shade = ((x * 7 + y * 3) % 64) as u8;
            data.extend(if inside {
                [200 + shade / 2, 150 + shade, 120]
            } else {
                [30, 60 + shade, 200]
            });
        }
    }
    Image::rgb(FACE_SIZE, FACE_SIZE, data).unwrap()
}

#[test]
fn the_landmark_ellipse_covers_the_face_and_not_the_corners() {
    let mask = pulid::landmark_mask(FACE_SIZE, &TEMPLATE);
    let at = |x: usize, y: usize| mask[y * FACE_SIZE as usize + x];
    for p in TEMPLATE {
        assert!(
            at(p[0] as usize, p[1] as usize),
            "landmark {p:?} is outside"
        );
    }
    assert!(
        at(256, 120) && at(140, 290) && at(256, 470),
        "forehead, cheek, chin"
    );
    assert!(!at(5, 5) && !at(506, 506) && !at(60, 290) && !at(256, 505));
    let kept = mask.iter().filter(|k| **k).count() as f64 / mask.len() as f64;
    assert!((0.25..0.45).contains(&kept), "{kept}");
}

#[test]
fn whitening_is_grey_inside_and_white_outside() {
    let face = face();
    let keep = pulid::landmark_mask(FACE_SIZE, &TEMPLATE);
    let t = pulid::whitened(&face, &keep);
    let plane = (FACE_SIZE * FACE_SIZE) as usize;
    assert_eq!(t.shape, vec![1, 3, FACE_SIZE as usize, FACE_SIZE as usize]);
    let i = 290 * FACE_SIZE as usize + 256;
    let px = &face.data[i * 3..i * 3 + 3];
    let grey = 0.299 * f32::from(px[0]) / 255.0
        + 0.587 * f32::from(px[1]) / 255.0
        + 0.114 * f32::from(px[2]) / 255.0;
    for c in 0..3 {
        assert_eq!(t.data[c * plane + i], grey);
        assert_eq!(t.data[c * plane], 1.0);
    }
}

#[test]
fn features_have_the_packs_sizes_and_follow_the_mask() {
    let engine = common::engine("fp32");
    let cfg = engine.pack().manifest.pulid.clone().unwrap();
    let embedding: Vec<f32> = (0..512)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 2.0)
        .collect();
    let parsed = engine
        .pulid_features(&face(), &TEMPLATE, &embedding)
        .unwrap();
    assert_eq!(parsed.id_cond.len(), cfg.id_cond_dim);
    assert_eq!(
        parsed.id_vit_hidden.len(),
        cfg.vit_hidden_shape.iter().product::<usize>()
    );
    assert_eq!(
        &parsed.id_cond[..512],
        &embedding[..],
        "the raw embedding leads"
    );
    let class = &parsed.id_cond[512..];
    let norm = class.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "the class token is L2-normalised: {norm}"
    );

    // Without face parsing the ellipse whitens instead: other features, same sizes.
    let dir = common::copy_pack("pulid-no-parsing");
    common::edit_manifest(&dir, |t| common::drop_table(&t, "face_parsing"));
    let substitute = likeness_diffusion::DiffusionEngine::load(
        &dir,
        common::runtime(),
        EngineOptions::default(),
    )
    .unwrap();
    let ellipse = substitute
        .pulid_features(&face(), &TEMPLATE, &embedding)
        .unwrap();
    assert_eq!(ellipse.id_cond.len(), parsed.id_cond.len());
    assert_ne!(ellipse.id_vit_hidden, parsed.id_vit_hidden);

    // The features generate: PuLID on the engine.
    let mut input = GenerationInput::new(Method::Pulid, "a portrait", 2, 1.2, 7);
    input.pulid = Some(parsed);
    let image = engine
        .generate(&input, &|_, _| {}, &CancelToken::new())
        .unwrap();
    assert!(image.width > 0 && image.height > 0);

    // A crop of the wrong size is refused with a sentence.
    let small = Image::rgb(112, 112, vec![0; 112 * 112 * 3]).unwrap();
    let err = engine
        .pulid_features(&small, &TEMPLATE, &embedding)
        .unwrap_err();
    assert!(err.to_string().contains("512x512"), "{err}");
}
