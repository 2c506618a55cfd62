//! The pack contract at load: a good pack loads and reports its capabilities; each broken pack
//! fails with one sentence naming the file and the problem.

mod common;

use common::{drop_table, edit_manifest};

use std::path::Path;

use likeness_diffusion::{ControlKind, DiffusionEngine, EngineOptions, Method, PackError, Role};

fn load(dir: &Path) -> Result<std::sync::Arc<DiffusionEngine>, PackError> {
    DiffusionEngine::load(dir, common::runtime(), EngineOptions::default())
}

#[test]
fn tiny_pack_loads_with_every_capability() {
    let engine = common::engine("fp32");
    let caps = engine.capabilities();
    assert_eq!(
        caps.methods,
        vec![Method::InstantId, Method::Pulid, Method::Controlnet]
    );
    assert_eq!(
        caps.control_maps,
        vec![
            ControlKind::Canny,
            ControlKind::Depth,
            ControlKind::FaceKeypoints
        ]
    );
    assert_eq!(engine.pack().down_residuals, 3);
    engine.preload().expect("every session builds");
}

#[test]
fn capabilities_follow_the_roles_present() {
    let dir = common::copy_pack("no-identitynet");
    edit_manifest(&dir, |t| {
        drop_table(&drop_table(&t, "identitynet"), "pulid_id_encoder")
    });
    let engine = load(&dir).expect("a pack without IdentityNet and PuLID still loads");
    let caps = engine.capabilities();
    assert_eq!(caps.methods, vec![Method::Controlnet]);
    assert_eq!(
        caps.control_maps,
        vec![ControlKind::Canny, ControlKind::Depth]
    );
}

#[test]
fn pulid_needs_the_eva_clip_graph_but_not_face_parsing() {
    let dir = common::copy_pack("no-eva");
    edit_manifest(&dir, |t| drop_table(&t, "pulid_eva_clip"));
    let engine = load(&dir).expect("a pack without EVA02-CLIP still loads");
    assert_eq!(
        engine.capabilities().methods,
        vec![Method::InstantId, Method::Controlnet]
    );
    let dir = common::copy_pack("no-parsing");
    edit_manifest(&dir, |t| drop_table(&t, "face_parsing"));
    let engine = load(&dir).expect("a pack without face parsing loads");
    assert!(engine.capabilities().methods.contains(&Method::Pulid));
}

#[test]
fn missing_role_is_named() {
    let dir = common::copy_pack("missing-role");
    edit_manifest(&dir, |t| drop_table(&t, "vae_decoder"));
    let err = load(&dir).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, PackError::MissingRole { .. }), "{err:?}");
    assert!(
        msg.contains("pack.toml") && msg.contains("[graphs.vae_decoder]"),
        "{msg}"
    );
}

#[test]
fn wrong_checksum_names_the_file() {
    let dir = common::copy_pack("checksum");
    let file = dir.join("controlnet_canny.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let err = load(&dir).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, PackError::Checksum { .. }), "{err:?}");
    assert!(
        msg.contains("controlnet_canny.onnx") && msg.contains("SHA-256"),
        "{msg}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let dir = common::copy_pack("missing-file");
    std::fs::remove_file(dir.join("tokenizer/merges.txt")).unwrap();
    let msg = load(&dir).unwrap_err().to_string();
    println!("{msg}");
    assert!(
        msg.contains("merges.txt") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn mismatched_graph_input_names_are_named() {
    // A graph with other input names: the VAE encoder put in the decoder's place (checksum fixed).
    let dir = common::copy_pack("signature");
    std::fs::copy(dir.join("vae_encoder.onnx"), dir.join("vae_decoder.onnx")).unwrap();
    let sha = likeness_diffusion::pack::sha256_file(&dir.join("vae_decoder.onnx")).unwrap();
    edit_manifest(&dir, |t| {
        let start = t.find("[graphs.vae_decoder]").unwrap();
        let line = t[start..].find("sha256 = \"").unwrap() + start + 10;
        format!("{}{sha}{}", &t[..line], &t[line + 64..])
    });
    let err = load(&dir).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, PackError::Signature { .. }), "{err:?}");
    assert!(
        msg.contains("vae_decoder.onnx") && msg.contains("latent_sample"),
        "{msg}"
    );

    // pack.toml declaring a name the graph does not have.
    let dir = common::copy_pack("declared-names");
    edit_manifest(&dir, |t| {
        t.replacen("\"time_ids\"]", "\"add_time_ids\"]", 1)
    });
    let msg = load(&dir).unwrap_err().to_string();
    println!("{msg}");
    assert!(
        msg.contains("add_time_ids") && msg.contains(".onnx"),
        "{msg}"
    );
}

#[test]
fn fp16_declared_for_an_fp32_graph_is_refused() {
    let dir = common::copy_pack("dtype");
    edit_manifest(&dir, |t| {
        t.replacen("dtype = \"fp32\"", "dtype = \"fp16\"", 1)
    });
    let msg = load(&dir).unwrap_err().to_string();
    println!("{msg}");
    assert!(
        msg.contains("fp32") && msg.contains("fp16") && msg.contains(".onnx"),
        "{msg}"
    );
}

#[test]
fn unknown_role_and_bad_manifest_are_named() {
    let dir = common::copy_pack("unknown-role");
    edit_manifest(&dir, |t| {
        t.replacen("[graphs.controlnet_depth]", "[graphs.controlnet_deph]", 1)
    });
    let msg = load(&dir).unwrap_err().to_string();
    println!("{msg}");
    assert!(
        msg.contains("pack.toml") && msg.contains("controlnet_deph"),
        "{msg}"
    );

    let dir = common::copy_pack("bad-toml");
    edit_manifest(&dir, |t| t.replacen("[latent]", "[latent\n", 1));
    let msg = load(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("pack.toml") && msg.contains("not a valid pack manifest"),
        "{msg}"
    );

    let msg = load(Path::new("/nonexistent/pack"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("pack.toml"), "{msg}");
}

#[test]
fn roles_round_trip() {
    for role in Role::ALL {
        assert!(!role.key().is_empty());
    }
}
