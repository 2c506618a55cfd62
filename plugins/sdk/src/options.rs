//! A style's parameters, and typed access to a request's options.
//!
//! A style declares its parameters once, as [`ParamSpec`]s built here (a kind with its
//! bounds and a default), and returns them from `describe`. The host checks every request
//! against them and applies the defaults, so the options a style gets are complete and valid:
//! [`Values`] only reads them, it never parses.
//!
//! ```
//! use likeness_sdk::options::{self, Values};
//! use likeness_sdk::Value;
//! let params = [options::caption(), options::seed(), options::integer("pixel-size", "Art pixel size.", 8, 2, 64)];
//! let got = vec![("caption".to_string(), Value::Text("a cat".into())), ("pixel-size".to_string(), Value::Integer(12))];
//! let values = Values::new(&got);
//! assert_eq!(values.int("pixel-size"), Some(12));
//! assert_eq!(values.caption(), "a cat");
//! assert_eq!(values.seed(), None);
//! # let _ = params;
//! ```

use crate::bindings::likeness::style::types::{IntegerRange, NumberRange};
use crate::prompt::{MAX_TEXT_CHARS, sanitize};
use crate::{Options, ParamKind, ParamSpec, Value};

/// The name of the caption parameter every style takes.
pub const CAPTION: &str = "caption";
/// The default caption.
pub const DEFAULT_CAPTION: &str = "a person";
/// The name of the seed parameter every style takes.
pub const SEED: &str = "seed";

fn spec(name: &str, description: &str, kind: ParamKind, default: Option<Value>) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        description: description.to_string(),
        kind,
        default_value: default,
    }
}

/// A free-text parameter of at most `max_chars` characters.
pub fn text(name: &str, description: &str, default: &str, max_chars: u32) -> ParamSpec {
    spec(
        name,
        description,
        ParamKind::Text(max_chars),
        Some(Value::Text(default.into())),
    )
}

/// A whole-number parameter within `min..=max`.
pub fn integer(name: &str, description: &str, default: i64, min: i64, max: i64) -> ParamSpec {
    let kind = ParamKind::Integer(IntegerRange { min, max });
    spec(name, description, kind, Some(Value::Integer(default)))
}

/// A number parameter within `min..=max`.
pub fn number(name: &str, description: &str, default: f64, min: f64, max: f64) -> ParamSpec {
    let kind = ParamKind::Number(NumberRange { min, max });
    spec(name, description, kind, Some(Value::Number(default)))
}

/// A yes/no parameter.
pub fn boolean(name: &str, description: &str, default: bool) -> ParamSpec {
    spec(
        name,
        description,
        ParamKind::Boolean,
        Some(Value::Boolean(default)),
    )
}

/// A parameter whose value is one of `choices`.
pub fn choice(name: &str, description: &str, default: &str, choices: &[&str]) -> ParamSpec {
    let kind = ParamKind::Choice(choices.iter().map(|c| c.to_string()).collect());
    spec(name, description, kind, Some(Value::Text(default.into())))
}

/// The `caption` parameter every style takes: what the picture shows, default "a person".
pub fn caption() -> ParamSpec {
    text(
        CAPTION,
        "What the picture shows, in a few words; goes into the prompt.",
        DEFAULT_CAPTION,
        MAX_TEXT_CHARS as u32,
    )
}

/// The `seed` parameter every style takes: the noise seed, unset by default (the host
/// chooses).
pub fn seed() -> ParamSpec {
    let kind = ParamKind::Integer(IntegerRange {
        min: 0,
        max: i64::MAX,
    });
    spec(
        SEED,
        "Noise seed (0 to 9223372036854775807) for a repeatable result; unset lets the server choose.",
        kind,
        None,
    )
}

/// The options a style got, read by name. Missing or differently typed values read as unset.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a>(&'a Options);

impl<'a> Values<'a> {
    /// Reads `options`.
    pub fn new(options: &'a Options) -> Values<'a> {
        Values(options)
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A text or choice value; `""` when unset.
    pub fn text(&self, name: &str) -> &'a str {
        match self.get(name) {
            Some(Value::Text(s)) => s,
            _ => "",
        }
    }

    /// An integer value.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    /// A number value (integers convert).
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(Value::Number(x)) => Some(*x),
            Some(Value::Integer(n)) => Some(*n as f64),
            _ => None,
        }
    }

    /// A boolean value; `false` when unset.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Boolean(true)))
    }

    /// The caption, cleaned for a prompt ([`sanitize`]), or [`DEFAULT_CAPTION`] when empty.
    pub fn caption(&self) -> String {
        match sanitize(self.text(CAPTION), MAX_TEXT_CHARS) {
            clean if clean.is_empty() => DEFAULT_CAPTION.to_string(),
            clean => clean,
        }
    }

    /// The seed, `None` when the host should choose.
    pub fn seed(&self) -> Option<u64> {
        self.int(SEED).and_then(|n| u64::try_from(n).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_typed_options() {
        let options: Options = vec![
            (
                "caption".into(),
                Value::Text(" a woman\nwith glasses ".into()),
            ),
            ("seed".into(), Value::Integer(42)),
            ("strength".into(), Value::Number(0.25)),
            ("outline".into(), Value::Boolean(true)),
        ];
        let values = Values::new(&options);
        assert_eq!(values.caption(), "a woman with glasses");
        assert_eq!(values.seed(), Some(42));
        assert_eq!(values.float("strength"), Some(0.25));
        assert_eq!(values.float("seed"), Some(42.0));
        assert!(values.bool("outline"));
        assert_eq!(values.int("missing"), None);
        assert_eq!(Values::new(&Vec::new()).caption(), DEFAULT_CAPTION);
    }

    #[test]
    fn specs_carry_their_bounds_and_defaults() {
        let p = integer("pixel-size", "Art pixel size.", 8, 2, 64);
        assert_eq!(p.kind, ParamKind::Integer(IntegerRange { min: 2, max: 64 }));
        assert_eq!(p.default_value, Some(Value::Integer(8)));
        assert_eq!(seed().default_value, None);
        assert_eq!(caption().kind, ParamKind::Text(MAX_TEXT_CHARS as u32));
    }
}
