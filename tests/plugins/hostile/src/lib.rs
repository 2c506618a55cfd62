//! A deliberately misbehaving style, for the sandbox tests.
//!
//! The request option `attack` picks the misbehaviour: `loop`, `alloc`, `recurse`, `trap`,
//! `read-file`, `read-env`, `remember`, `wrong-size`, `print`, `log-spam`. Without it the style
//! behaves (so that it passes the registry's validation). `sleep-ms` makes a call last that
//! long (without burning CPU), for the hot-reload tests.

use likeness_sdk::{
    Analysis, Capabilities, Guest, IdentityMethod, Image, Level, Options, Plan, Size, StyleError,
    StyleInfo, export_style, log,
};
use std::sync::Mutex;

/// The version this build reports. Tests make a second version of the component by
/// rewriting the marker `generation-a` in the binary to `generation-b`.
const VERSION: &str = "0.1.0-generation-a";

/// How long `describe` sleeps, in milliseconds after the colon. Tests make a package that is
/// slow to load by rewriting the digits in the binary.
const DESCRIBE_SLEEP: &str = "describe-sleep-ms:00000";

/// Whether `plan` traps when the option `n` is odd (`on!`), for the canary tests: a candidate
/// that fails half of its requests yet passes the registry's dry runs. Tests switch it on by
/// rewriting the marker in the binary.
const TRAP_ODD_N: &str = "trap-odd-n:off";

/// Whatever an earlier request left behind (the isolation test checks that none survives).
static REMEMBERED: Mutex<String> = Mutex::new(String::new());

fn option<'a>(options: &'a Options, key: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn plan_with_reason(analysis: &Analysis, reason: String) -> Plan {
    Plan {
        method: IdentityMethod::None,
        fallback: IdentityMethod::None,
        reference_face: None,
        prompt: String::new(),
        negative_prompt: String::new(),
        control_maps: Vec::new(),
        identity_weight: 0.0,
        steps: 0,
        guidance: 0.0,
        size: Size {
            width: analysis.width,
            height: analysis.height,
        },
        seed: None,
        reason,
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps every frame and call (no tail call, no loop); small frames, so the wasm
    // call stack overflows before the shadow stack in linear memory does.
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + depth
}

/// Runs the attack named by the options; returns what it learned, if it returns at all.
fn attack(options: &Options) -> Result<String, StyleError> {
    if let Some(ms) = option(options, "sleep-ms").and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    match option(options, "attack").unwrap_or("") {
        "" => Ok(format!("behaving {VERSION}")),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recurse" => Ok(format!("{}", recurse(0))),
        "trap" => panic!("hostile style trapped on purpose"),
        "read-file" => {
            let tries = [
                "/etc/passwd",
                "/assets/../style.toml",
                "../style.toml",
                "style.toml",
            ];
            let leaked: Vec<String> = tries
                .iter()
                .filter_map(|path| std::fs::read_to_string(path).ok().map(|_| path.to_string()))
                .collect();
            if leaked.is_empty() {
                Err(StyleError::Internal("file access denied".into()))
            } else {
                Ok(format!("read {}", leaked.join(", ")))
            }
        }
        "read-env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            let args: Vec<String> = std::env::args().collect();
            if vars.is_empty() && args.is_empty() {
                Err(StyleError::Internal("environment denied".into()))
            } else {
                Ok(format!("env {vars:?} args {args:?}"))
            }
        }
        "remember" => {
            let mut remembered = REMEMBERED.lock().unwrap();
            let before = remembered.clone();
            *remembered = option(options, "secret").unwrap_or("").to_string();
            Ok(format!("remembered before: '{before}'"))
        }
        "print" => {
            for i in 0..10_000 {
                println!("stdout line {i} from a chatty style");
                eprintln!("stderr line {i}");
            }
            Ok("printed".into())
        }
        "log-spam" => {
            let long = "x".repeat(100_000);
            for _ in 0..10_000 {
                log::log(Level::Error, &long);
            }
            Ok("logged".into())
        }
        other => Ok(format!("no such attack '{other}'")),
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> StyleInfo {
        let sleep_ms: u64 = std::hint::black_box(DESCRIBE_SLEEP)
            .rsplit(':')
            .next()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        if sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
        }
        StyleInfo {
            id: "hostile".into(),
            name: "Hostile".into(),
            version: VERSION.into(),
            description: "Misbehaves on request; for sandbox tests only.".into(),
            params: Vec::new(),
        }
    }

    fn plan(
        analysis: Analysis,
        _capabilities: Capabilities,
        options: Options,
    ) -> Result<Plan, StyleError> {
        let odd = option(&options, "n")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n % 2 == 1);
        if odd && std::hint::black_box(TRAP_ODD_N).ends_with("on!") {
            panic!("hostile candidate trapped on an odd n");
        }
        let learned = attack(&options)?;
        Ok(plan_with_reason(&analysis, learned))
    }

    fn post_process(
        image: Image,
        _analysis: Analysis,
        _plan: Plan,
        options: Options,
    ) -> Result<Image, StyleError> {
        match option(&options, "attack") {
            Some("wrong-size") => Ok(Image {
                width: image.width + 1,
                height: image.height,
                rgba: image.rgba,
            }),
            Some("short-buffer") => Ok(Image {
                width: image.width,
                height: image.height,
                rgba: image.rgba[..image.rgba.len() / 2].to_vec(),
            }),
            _ => {
                attack(&options)?;
                Ok(image)
            }
        }
    }
}

export_style!(Hostile);
