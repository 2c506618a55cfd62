//! Pack verification: a tampered or missing file is an error sentence naming the file.

mod common;

use std::path::Path;

use likeness_vision::{check_packs, fetch, packs};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn installed_packs_verify_and_tampering_is_named() {
    let _ = common::vision(); // fetches the packs
    let models = common::models_dir();
    let status = check_packs(&models).expect("check");
    for name in ["mtcnn", "blazeface", "faceplugin"] {
        let s = status
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing: {status:?}"));
        assert!(s.problem.is_none(), "{name}: {:?}", s.problem);
    }
    let faceplugin = packs::read_manifest(&models.join("faceplugin")).expect("manifest");
    assert!(
        faceplugin.licence.contains("undocumented"),
        "{}",
        faceplugin.licence
    );

    // Tamper with a copy.
    let tmp = std::env::temp_dir().join(format!("likeness-packs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(&models.join("mtcnn"), &tmp.join("mtcnn"));
    let mut bytes = std::fs::read(tmp.join("mtcnn/rnet.onnx")).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(tmp.join("mtcnn/rnet.onnx"), &bytes).unwrap();
    let err = packs::load_pack(&tmp.join("mtcnn"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rnet.onnx") && err.contains("SHA-256"),
        "{err}"
    );
    std::fs::remove_file(tmp.join("mtcnn/onet.onnx")).unwrap();
    let status = check_packs(&tmp).expect("check");
    assert!(
        status[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains(".onnx")),
        "{status:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn fetch_is_idempotent() {
    let _ = common::vision();
    let report = fetch::fetch_default_packs(&common::models_dir()).expect("fetch");
    assert!(
        report.fetched.is_empty(),
        "fetched again: {:?}",
        report.fetched
    );
    assert!(report.present.len() >= 9, "{:?}", report.present);
    assert!(fetch::runtime_library_path(&common::models_dir()).is_file());
}
