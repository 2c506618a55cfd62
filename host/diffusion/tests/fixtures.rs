//! Schedulers and the tokenizer against fixtures made by the scripts in tools/tiny-pack/
//! (scheduler_fixtures.py: diffusers' scheduler maths in NumPy; tokenizer_fixtures.py:
//! transformers' CLIPTokenizer on the tiny pack's vocabulary).

mod common;

use likeness_diffusion::scheduler::{
    BetaSchedule, Prediction, SamplerKind, Schedule, SchedulerConfig, Spacing,
};
use likeness_diffusion::tokenizer::ClipTokenizer;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-3)
}

#[test]
fn schedulers_match_the_diffusers_tables() {
    let fx = fixture("schedulers.json");
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let kind = match case["kind"].as_str().unwrap() {
            "euler" => SamplerKind::Euler,
            "euler-ancestral" => SamplerKind::EulerAncestral,
            _ => SamplerKind::DpmPp2m,
        };
        let spacing = match case["spacing"].as_str().unwrap() {
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            _ => Spacing::Linspace,
        };
        let steps = case["steps"].as_u64().unwrap() as usize;
        let config = SchedulerConfig {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction: Prediction::Epsilon,
            spacing,
            steps_offset: 1,
            kind,
        };
        let label = format!("{} {} {steps}", kind.name(), case["spacing"]);
        let s = Schedule::new(config, steps).unwrap();
        // (serde_json's default float parsing may be 1 ulp off: compare to 1e-12.)
        let timesteps = floats(&case["timesteps"]);
        assert_eq!(s.timesteps.len(), timesteps.len(), "{label}: timesteps");
        for (a, b) in s.timesteps.iter().zip(&timesteps) {
            assert!(close(*a, *b, 1e-12), "{label}: timestep {a} vs {b}");
        }
        let sigmas = floats(&case["sigmas"]);
        assert_eq!(s.sigmas.len(), sigmas.len(), "{label}");
        for (a, b) in s.sigmas.iter().zip(&sigmas) {
            assert!(close(*a, *b, 1e-9), "{label}: sigma {a} vs {b}");
        }
        assert!(
            close(
                s.init_noise_sigma(),
                case["init_noise_sigma"].as_f64().unwrap(),
                1e-9
            ),
            "{label}"
        );
        // The same trajectory as the fixture's (fake model outputs and noises, as in the script).
        let mut sampler = s.sampler();
        let mut x: Vec<f32> = (0..6)
            .map(|k| ((k as f64).sin() * s.init_noise_sigma()) as f32)
            .collect();
        for (i, expected) in case["trajectory"].as_array().unwrap().iter().enumerate() {
            let eps: Vec<f32> = (0..6)
                .map(|k| ((k as f64) * (i as f64 + 1.0) * 0.7).cos() as f32)
                .collect();
            let noise: Vec<f32> = (0..6)
                .map(|k| ((k as f64) * (i as f64 + 2.0) * 1.3).sin() as f32)
                .collect();
            x = sampler.step(&eps, i, &x, Some(&noise));
            for (a, b) in x.iter().zip(floats(expected)) {
                assert!(
                    close(f64::from(*a), b, 1e-5),
                    "{label}: step {i}: {a} vs {b}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 72);
}

#[test]
fn tokenizer_matches_transformers_clip_tokenizer() {
    let fx = fixture("tokens.json");
    let pack = common::tiny_pack("fp32");
    let vocab = pack.join("tokenizer/vocab.json");
    let merges = pack.join("tokenizer/merges.txt");
    let sha = likeness_diffusion::pack::sha256_file(&vocab).unwrap();
    assert_eq!(
        sha,
        fx["vocab_sha256"].as_str().unwrap(),
        "the tiny pack's vocabulary changed: regenerate the fixture with tools/tiny-pack/tokenizer_fixtures.py"
    );
    let t1 = ClipTokenizer::load(&vocab, &merges, 77, "<|endoftext|>").unwrap();
    let t2 = ClipTokenizer::load(&vocab, &merges, 77, "!").unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let ids2: Vec<i64> = case["ids_2"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(t1.encode(text), ids, "{text:?}");
        assert_eq!(t2.encode(text), ids2, "{text:?} (pad !)");
    }
}

#[test]
fn broken_tokenizer_files_are_named() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken-tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vocab.json"), "{\"a\": 1}").unwrap();
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    let err =
        ClipTokenizer::load(&dir.join("vocab.json"), &dir.join("merges.txt"), 77, "!").unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
    std::fs::write(dir.join("vocab.json"), "not json").unwrap();
    let err =
        ClipTokenizer::load(&dir.join("vocab.json"), &dir.join("merges.txt"), 77, "!").unwrap_err();
    assert!(err.to_string().contains("not a JSON"), "{err}");
}
