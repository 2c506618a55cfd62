//! A deliberately misbehaving style, for the sandbox tests, written against contract 0.2
//! (`wit/style.wit`) with wit-bindgen alone (no SDK).
//!
//! The request option `attack` picks the misbehaviour: `loop`, `alloc`, `recurse`, `trap`,
//! `read-file`, `read-env`, `remember`, `wrong-size`, `short-buffer`, `print`, `log-spam`,
//! `clock` (reports the clocks' finest step and resolution), or a lying plan (`huge-prompt`,
//! `huge-negative`, `huge-reason`, `empty-reason`, `many-controls`, `bad-control`,
//! `nan-weight`, `inf-guidance`, `zero-size`, `huge-size` lie in a ControlNet method's
//! settings; `bad-fallback`, `bad-face`, `bad-gate` in the plan itself). Without it the style
//! behaves (so that it passes the registry's validation). `sleep-ms` makes a call last that long through WASI's
//! clock (without burning CPU); `burn` does that many million rounds of fixed arithmetic first.
//!
//! `describe` takes no options: its behaviour comes from the marker [`DESCRIBE`], which tests
//! rewrite in the binary (`describe:sleeps:0000030000` sleeps 30 s, `describe:bigtxt:…` returns
//! a huge description, `describe:params:…` a huge parameter list).

use std::sync::Mutex;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
    generate_all,
});

use exports::likeness::style::style::Guest;
use likeness::style::canvas::Image;
use likeness::style::log::{Level, log};
use likeness::style::types::{
    Analysis, Capabilities, ControlKind, ControlMap, Diffusion, IdentityGate, IntegerRange, Method,
    Options, ParamKind, ParamSpec, Plan, Size, StyleError, StyleInfo, Value,
};

/// The version this build reports. Tests make a second version of the component by
/// rewriting the marker `generation-a` in the binary to `generation-b`.
const VERSION: &str = "0.1.0-generation-a";

/// What `describe` does; rewritten in the binary by tests (same length).
static DESCRIBE: &str = "describe:behave:0000000000";

/// Whether `plan` traps when the option `n` is odd (`on!`), for the canary tests: a candidate
/// that fails half of its requests yet passes the registry's dry runs. Tests switch it on by
/// rewriting the marker in the binary.
const TRAP_ODD_N: &str = "trap-odd-n:off";

/// Whatever an earlier request left behind (the isolation test checks that none survives).
static REMEMBERED: Mutex<String> = Mutex::new(String::new());

/// The text option `key`, or an integer written out.
fn option(options: &Options, key: &str) -> Option<String> {
    options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| match v {
            Value::Text(text) => text.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Number(x) => x.to_string(),
            Value::Boolean(b) => b.to_string(),
        })
}

/// The honest plan: no neural network, the reason carries what the call learned.
fn plan_with_reason(reason: String) -> Plan {
    Plan {
        method: Method::None,
        fallbacks: Vec::new(),
        reference_faces: Vec::new(),
        identity_gate: None,
        reason,
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps every frame and call (no tail call, no loop); small frames, so the wasm
    // call stack overflows before the shadow stack in linear memory does.
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + depth
}

/// `millions` million rounds of arithmetic the optimiser cannot skip.
fn burn(millions: u64) -> u64 {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..millions * 1_000_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 33;
    }
    std::hint::black_box(x)
}

/// The finest nonzero step seen over many readings of `now` (nanoseconds), or 0 if it never
/// moved.
fn finest_step(now: impl Fn() -> u128) -> u128 {
    let mut finest = 0;
    let mut last = now();
    for _ in 0..200_000 {
        let t = now();
        if t > last && (finest == 0 || t - last < finest) {
            finest = t - last;
        }
        last = t;
    }
    finest
}

/// A clock's resolution as WASI reports it, in nanoseconds.
fn resolution(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_getres(clock, &mut ts) };
    // `tv_nsec` is a C long: 32 bits on wasm32, 64 natively.
    #[allow(clippy::unnecessary_cast)]
    let nanos = ts.tv_nsec as i64;
    ts.tv_sec * 1_000_000_000 + nanos
}

/// Reports the monotonic and wall clocks' finest step and resolution.
fn clocks() -> String {
    let origin = std::time::Instant::now();
    let monotonic = finest_step(|| origin.elapsed().as_nanos());
    let wall = finest_step(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    format!(
        "monotonic step {monotonic} resolution {} wall step {wall} resolution {}",
        resolution(libc::CLOCK_MONOTONIC),
        resolution(libc::CLOCK_REALTIME)
    )
}

/// Runs the attack named by the options; returns what it learned, if it returns at all.
fn attack(options: &Options) -> Result<String, StyleError> {
    if let Some(ms) = option(options, "sleep-ms").and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if let Some(millions) = option(options, "burn").and_then(|n| n.parse().ok()) {
        return Ok(format!("burned {}", burn(millions) % 10));
    }
    match option(options, "attack").unwrap_or_default().as_str() {
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
                Err(StyleError::Internal(Some("file access denied".into())))
            } else {
                Ok(format!("read {}", leaked.join(", ")))
            }
        }
        "read-env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            let args: Vec<String> = std::env::args().collect();
            if vars.is_empty() && args.is_empty() {
                Err(StyleError::Internal(Some("environment denied".into())))
            } else {
                Ok(format!("env {vars:?} args {args:?}"))
            }
        }
        "remember" => {
            let mut remembered = REMEMBERED.lock().unwrap();
            let before = remembered.clone();
            *remembered = option(options, "secret").unwrap_or_default();
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
                log(Level::Error, &long);
            }
            Ok("logged".into())
        }
        "clock" => Ok(clocks()),
        other => Ok(format!("no such attack '{other}'")),
    }
}

/// The plan the `attack` option asks for: a lie about one field, or the honest plan.
fn lying_plan(options: &Options, reason: String) -> Plan {
    let mut plan = plan_with_reason(reason);
    let map = ControlMap {
        kind: ControlKind::Canny,
        weight: 0.5,
        start: 0.0,
        end: 1.0,
    };
    let mut d = Diffusion {
        prompt: "a portrait".into(),
        negative_prompt: String::new(),
        control_maps: vec![map],
        identity_weight: 0.0,
        steps: 20,
        guidance: 5.0,
        size: None,
        seed: None,
    };
    let mut diffusion = true;
    match option(options, "attack").unwrap_or_default().as_str() {
        "huge-prompt" => d.prompt = "p".repeat(1 << 20),
        "huge-negative" => d.negative_prompt = "n".repeat(1 << 20),
        "many-controls" => d.control_maps = vec![map; 100_000],
        "bad-control" => {
            d.control_maps = vec![ControlMap {
                start: 0.9,
                end: 0.1,
                ..map
            }]
        }
        "nan-weight" => d.identity_weight = f32::NAN,
        "inf-guidance" => d.guidance = f32::INFINITY,
        "zero-size" => {
            d.size = Some(Size {
                width: 0,
                height: 0,
            })
        }
        "huge-size" => {
            d.size = Some(Size {
                width: 1_000_000,
                height: 1024,
            })
        }
        other => {
            diffusion = false;
            match other {
                "huge-reason" => plan.reason = "r".repeat(1 << 20),
                "empty-reason" => plan.reason = " ".into(),
                "bad-fallback" => plan.fallbacks = vec![Method::InstantId(d.clone())],
                "bad-face" => plan.reference_faces = vec![7],
                "bad-gate" => {
                    plan.identity_gate = Some(IdentityGate {
                        threshold: f32::NAN,
                        attempts: 1,
                    })
                }
                _ => {}
            }
        }
    }
    if diffusion {
        plan.method = Method::Controlnet(d);
    }
    plan
}

/// The options the attacks read; none has a default.
fn params() -> Vec<ParamSpec> {
    let integer = |name: &str, max: i64| ParamSpec {
        name: name.into(),
        description: String::new(),
        kind: ParamKind::Integer(IntegerRange { min: 0, max }),
        default_value: None,
    };
    let text = |name: &str| ParamSpec {
        name: name.into(),
        description: String::new(),
        kind: ParamKind::Text(1024),
        default_value: None,
    };
    vec![
        text("attack"),
        text("secret"),
        integer("sleep-ms", 600_000),
        integer("burn", 1_000_000),
        integer("n", i64::MAX),
    ]
}

/// What `describe` returns, as [`DESCRIBE`] says.
fn describe() -> StyleInfo {
    let marker = std::hint::black_box(DESCRIBE);
    let mut parts = marker.split(':').skip(1);
    let (mode, number) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut info = StyleInfo {
        id: "hostile".into(),
        name: "Hostile".into(),
        version: VERSION.into(),
        description: "Misbehaves on request; for sandbox tests only.".into(),
        params: params(),
    };
    match mode {
        "sleeps" => {
            let ms = number.parse().unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        "bigtxt" => info.description = "d".repeat(20 << 20),
        "params" => {
            info.params = (0..20_000)
                .map(|i| ParamSpec {
                    name: format!("p{i}"),
                    description: String::new(),
                    kind: ParamKind::Boolean,
                    default_value: Some(Value::Boolean(false)),
                })
                .collect()
        }
        _ => {}
    }
    info
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> StyleInfo {
        describe()
    }

    fn choose_plan(
        _analysis: Analysis,
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
        Ok(lying_plan(&options, learned))
    }

    fn post_process(
        image: Image,
        _analysis: Analysis,
        _plan: Plan,
        options: Options,
    ) -> Result<Image, StyleError> {
        let (width, height) = (image.width(), image.height());
        match option(&options, "attack").as_deref() {
            Some("wrong-size") => {
                let rgba = vec![0; (width as usize + 1) * height as usize * 4];
                Ok(Image::new(width + 1, height, &rgba))
            }
            // The host's constructor refuses a buffer that does not fit (a trap).
            Some("short-buffer") => {
                let rgba = image.read(None);
                Ok(Image::new(width, height, &rgba[..rgba.len() / 2]))
            }
            _ => {
                attack(&options)?;
                Ok(image)
            }
        }
    }
}

export!(Hostile);
