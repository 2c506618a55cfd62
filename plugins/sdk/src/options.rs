//! A style's parameters and the validation of a request's options.
//!
//! A style declares its parameters once, as a list of [`Param`]s (the WIT [`ParamSpec`] plus an
//! optional numeric range), returns their specs from `describe` with [`specs`], and checks each
//! request's options with [`parse`]. The [`Values`] it returns answer typed questions with the
//! declared defaults filled in.
//!
//! ```
//! use likeness_sdk::options::{Param, parse};
//! let params = [
//!     Param::caption(),
//!     Param::seed(),
//!     Param::integer("pixel-size", "Size of one art pixel, in image pixels.", "8").int_range(2, 64),
//! ];
//! let options = vec![("pixel-size".to_string(), "12".to_string())];
//! let values = parse(&params, &options).unwrap();
//! assert_eq!(values.int("pixel-size"), Some(12));
//! assert_eq!(values.text("caption"), "a person");
//! assert_eq!(values.seed(), None);
//! ```
//!
//! Empty values: an empty string for an integer, number, boolean or choice, and a text that is
//! empty after cleaning, count as "not set" (the default applies). Each key may appear once.

use crate::prompt::{MAX_TEXT_CHARS, sanitize};
use crate::{Options, ParamKind, ParamSpec, StyleError};

/// The name of the caption parameter every style takes.
pub const CAPTION: &str = "caption";
/// The default caption.
pub const DEFAULT_CAPTION: &str = "a person";
/// The name of the seed parameter every style takes.
pub const SEED: &str = "seed";

/// One parameter of a style: its WIT spec and, for integers and numbers, the allowed range.
#[derive(Debug, Clone)]
pub struct Param {
    /// What `describe` reports.
    pub spec: ParamSpec,
    /// Inclusive bounds for an integer parameter.
    pub int_bounds: Option<(i128, i128)>,
    /// Inclusive bounds for a number parameter.
    pub float_bounds: Option<(f64, f64)>,
}

impl Param {
    fn new(name: &str, description: &str, kind: ParamKind, default: &str) -> Self {
        Param {
            spec: ParamSpec {
                name: name.to_string(),
                description: description.to_string(),
                kind,
                default_value: default.to_string(),
                choices: Vec::new(),
            },
            int_bounds: None,
            float_bounds: None,
        }
    }

    /// A free-text parameter (cleaned and capped like prompt text).
    pub fn text(name: &str, description: &str, default: &str) -> Self {
        Self::new(name, description, ParamKind::Text, default)
    }

    /// A whole-number parameter (64-bit signed unless [`Param::int_range`] says otherwise);
    /// `default` may be `""` for "unset".
    pub fn integer(name: &str, description: &str, default: &str) -> Self {
        let mut p = Self::new(name, description, ParamKind::Integer, default);
        p.int_bounds = Some((i64::MIN as i128, i64::MAX as i128));
        p
    }

    /// A finite decimal-number parameter; `default` may be `""` for "unset".
    pub fn number(name: &str, description: &str, default: &str) -> Self {
        Self::new(name, description, ParamKind::Number, default)
    }

    /// A yes/no parameter; accepts `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`.
    pub fn boolean(name: &str, description: &str, default: bool) -> Self {
        Self::new(
            name,
            description,
            ParamKind::Boolean,
            if default { "true" } else { "false" },
        )
    }

    /// A parameter whose value is one of `choices` (exact match).
    pub fn choice(name: &str, description: &str, default: &str, choices: &[&str]) -> Self {
        let mut p = Self::new(name, description, ParamKind::Choice, default);
        p.spec.choices = choices.iter().map(|c| c.to_string()).collect();
        p
    }

    /// Limits an integer parameter to `min..=max`.
    pub fn int_range(mut self, min: i128, max: i128) -> Self {
        self.int_bounds = Some((min, max));
        self
    }

    /// Limits a number parameter to `min..=max`.
    pub fn float_range(mut self, min: f64, max: f64) -> Self {
        self.float_bounds = Some((min, max));
        self
    }

    /// The `caption` parameter every style takes: what the picture shows, default "a person".
    pub fn caption() -> Self {
        Self::text(
            CAPTION,
            "What the picture shows, in a few words; goes into the prompt.",
            DEFAULT_CAPTION,
        )
    }

    /// The `seed` parameter every style takes: the noise seed, unset by default (the host
    /// chooses).
    pub fn seed() -> Self {
        Self::integer(
            SEED,
            "Noise seed (0 to 18446744073709551615) for a repeatable result; unset lets the server choose.",
            "",
        )
        .int_range(0, u64::MAX as i128)
    }

    /// What the parameter accepts, for error messages.
    fn allowed(&self) -> String {
        match self.spec.kind {
            ParamKind::Text => "text".to_string(),
            ParamKind::Integer => match self.int_bounds {
                Some((lo, hi)) => format!("a whole number from {lo} to {hi}"),
                None => "a whole number".to_string(),
            },
            ParamKind::Number => match self.float_bounds {
                Some((lo, hi)) => format!("a number from {lo} to {hi}"),
                None => "a number".to_string(),
            },
            ParamKind::Boolean => "true or false".to_string(),
            ParamKind::Choice => format!("one of {}", self.spec.choices.join(", ")),
        }
    }

    /// Checks and normalises one value; `None` when the value counts as unset.
    fn check(&self, value: &str) -> Result<Option<Value>, String> {
        let trimmed = value.trim();
        if self.spec.kind != ParamKind::Text && trimmed.is_empty() {
            return Ok(None);
        }
        match self.spec.kind {
            ParamKind::Text => {
                let clean = sanitize(value, MAX_TEXT_CHARS);
                Ok((!clean.is_empty()).then_some(Value::Text(clean)))
            }
            ParamKind::Integer => {
                let n: i128 = trimmed
                    .strip_prefix('+')
                    .unwrap_or(trimmed)
                    .parse()
                    .map_err(|_| self.allowed())?;
                match self.int_bounds {
                    Some((lo, hi)) if n < lo || n > hi => Err(self.allowed()),
                    _ => Ok(Some(Value::Int(n))),
                }
            }
            ParamKind::Number => {
                let x: f64 = trimmed.parse().map_err(|_| self.allowed())?;
                if !x.is_finite() {
                    return Err(self.allowed());
                }
                match self.float_bounds {
                    Some((lo, hi)) if x < lo || x > hi => Err(self.allowed()),
                    _ => Ok(Some(Value::Float(x))),
                }
            }
            ParamKind::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Some(Value::Bool(true))),
                "false" | "no" | "off" | "0" => Ok(Some(Value::Bool(false))),
                _ => Err(self.allowed()),
            },
            ParamKind::Choice => match self.spec.choices.iter().find(|c| *c == trimmed) {
                Some(c) => Ok(Some(Value::Text(c.clone()))),
                None => Err(self.allowed()),
            },
        }
    }
}

/// The WIT specs of `params`, for `describe`.
pub fn specs(params: &[Param]) -> Vec<ParamSpec> {
    params.iter().map(|p| p.spec.clone()).collect()
}

/// A checked, typed option value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Int(i128),
    Float(f64),
    Bool(bool),
}

/// The request's options checked against the style's parameters, defaults filled in.
#[derive(Debug, Clone)]
pub struct Values {
    /// For each parameter, in declaration order: its name, its value (`None`: unset) and
    /// whether the client set it.
    entries: Vec<(String, Option<Value>, bool)>,
}

/// Shortens a client's value for an error message.
fn quote(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > 40 {
        format!("{}...", clean.chars().take(40).collect::<String>())
    } else {
        clean
    }
}

/// Checks `options` against `params`: every key must name a parameter, appear once, and carry
/// a value of the parameter's kind and range. Errors are [`StyleError::InvalidOptions`] with a
/// sentence naming the option, the value and what is allowed.
pub fn parse(params: &[Param], options: &Options) -> Result<Values, StyleError> {
    let mut given: Vec<Option<Option<Value>>> = vec![None; params.len()];
    for (key, value) in options {
        let Some(index) = params.iter().position(|p| p.spec.name == *key) else {
            let names: Vec<&str> = params.iter().map(|p| p.spec.name.as_str()).collect();
            return Err(StyleError::InvalidOptions(format!(
                "unknown option '{}'; this style takes: {}",
                quote(key),
                names.join(", ")
            )));
        };
        if given[index].is_some() {
            return Err(StyleError::InvalidOptions(format!(
                "option '{key}' is given twice"
            )));
        }
        let checked = params[index].check(value).map_err(|allowed| {
            StyleError::InvalidOptions(format!(
                "option '{key}' must be {allowed}, not '{}'",
                quote(value)
            ))
        })?;
        given[index] = Some(checked);
    }
    let mut entries = Vec::with_capacity(params.len());
    for (param, given) in params.iter().zip(given) {
        let set = matches!(given, Some(Some(_)));
        let value = match given.flatten() {
            Some(v) => Some(v),
            // A default that does not check is a bug in the style; treat it as unset.
            None => param.check(&param.spec.default_value).ok().flatten(),
        };
        entries.push((param.spec.name.clone(), value, set));
    }
    Ok(Values { entries })
}

impl Values {
    fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, v, _)| v.as_ref())
    }

    /// Whether the client set `name` (to a non-empty value).
    pub fn is_set(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _, set)| n == name && *set)
    }

    /// A text or choice value; `""` when unset or not a text parameter.
    pub fn text(&self, name: &str) -> &str {
        match self.get(name) {
            Some(Value::Text(s)) => s,
            _ => "",
        }
    }

    /// An integer value; `None` when unset, out of `i64`'s range or not an integer parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Int(n)) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// A non-negative integer value; `None` when unset, negative or not an integer parameter.
    pub fn uint(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// A number value (integers convert); `None` when unset or not numeric.
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(Value::Float(x)) => Some(*x),
            Some(Value::Int(n)) => Some(*n as f64),
            _ => None,
        }
    }

    /// A boolean value; `false` when unset or not a boolean parameter.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Bool(true)))
    }

    /// The caption (cleaned), or [`DEFAULT_CAPTION`].
    pub fn caption(&self) -> &str {
        match self.text(CAPTION) {
            "" => DEFAULT_CAPTION,
            c => c,
        }
    }

    /// The seed, `None` when the host should choose.
    pub fn seed(&self) -> Option<u64> {
        self.uint(SEED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<Param> {
        vec![
            Param::caption(),
            Param::seed(),
            Param::integer("pixel-size", "Art pixel size.", "8").int_range(2, 64),
            Param::number("strength", "Line strength.", "0.5").float_range(0.0, 1.0),
            Param::boolean("outline", "Draw outlines.", true),
            Param::choice("palette", "Palette.", "pico8", &["pico8", "gameboy", "nes"]),
        ]
    }

    fn opts(pairs: &[(&str, &str)]) -> Options {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        match parse(&params(), &opts(pairs)) {
            Err(StyleError::InvalidOptions(m)) => m,
            Err(other) => panic!("wrong error kind: {other:?}"),
            Ok(_) => panic!("accepted {pairs:?}"),
        }
    }

    #[test]
    fn defaults_fill_in() {
        let v = parse(&params(), &opts(&[])).unwrap();
        assert_eq!(v.caption(), "a person");
        assert_eq!(v.text("caption"), "a person");
        assert_eq!(v.seed(), None);
        assert_eq!(v.int("pixel-size"), Some(8));
        assert_eq!(v.float("strength"), Some(0.5));
        assert!(v.bool("outline"));
        assert_eq!(v.text("palette"), "pico8");
        assert!(!v.is_set("palette"));
        assert_eq!(v.int("no-such"), None);
    }

    #[test]
    fn values_parse() {
        let v = parse(
            &params(),
            &opts(&[
                ("caption", " a woman\nin a red hat "),
                ("seed", "18446744073709551615"),
                ("pixel-size", " +64 "),
                ("strength", "1e-1"),
                ("outline", "No"),
                ("palette", "gameboy"),
            ]),
        )
        .unwrap();
        assert_eq!(v.caption(), "a woman in a red hat");
        assert_eq!(v.seed(), Some(u64::MAX));
        assert_eq!(v.int("pixel-size"), Some(64));
        assert_eq!(v.float("strength"), Some(0.1));
        assert!(!v.bool("outline"));
        assert_eq!(v.text("palette"), "gameboy");
        assert!(v.is_set("palette"));
    }

    #[test]
    fn empty_values_mean_default() {
        let v = parse(
            &params(),
            &opts(&[("seed", ""), ("pixel-size", " "), ("caption", "\n")]),
        )
        .unwrap();
        assert_eq!(v.seed(), None);
        assert_eq!(v.int("pixel-size"), Some(8));
        assert_eq!(v.caption(), "a person");
        assert!(!v.is_set("seed"));
    }

    #[test]
    fn unknown_option_lists_the_parameters() {
        assert_eq!(
            error(&[("colour", "red")]),
            "unknown option 'colour'; this style takes: caption, seed, pixel-size, strength, outline, palette"
        );
    }

    #[test]
    fn bad_values_name_option_value_and_allowed() {
        assert_eq!(
            error(&[("pixel-size", "big")]),
            "option 'pixel-size' must be a whole number from 2 to 64, not 'big'"
        );
        assert_eq!(
            error(&[("pixel-size", "1")]),
            "option 'pixel-size' must be a whole number from 2 to 64, not '1'"
        );
        assert!(error(&[("pixel-size", "65")]).contains("not '65'"));
        assert!(error(&[("pixel-size", "8.5")]).contains("whole number"));
        assert!(error(&[("seed", "-1")]).contains("option 'seed'"));
        assert!(error(&[("seed", "18446744073709551616")]).contains("option 'seed'"));
        assert_eq!(
            error(&[("strength", "NaN")]),
            "option 'strength' must be a number from 0 to 1, not 'NaN'"
        );
        assert!(error(&[("strength", "1.5")]).contains("from 0 to 1"));
        assert_eq!(
            error(&[("outline", "maybe")]),
            "option 'outline' must be true or false, not 'maybe'"
        );
        assert_eq!(
            error(&[("palette", "c64")]),
            "option 'palette' must be one of pico8, gameboy, nes, not 'c64'"
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert_eq!(
            error(&[("seed", "1"), ("seed", "2")]),
            "option 'seed' is given twice"
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(10_000);
        let m = error(&[("palette", &long)]);
        assert!(m.len() < 200, "{m}");
    }

    #[test]
    fn specs_match_params() {
        let s = specs(&params());
        assert_eq!(s.len(), 6);
        assert_eq!(s[1].name, "seed");
        assert_eq!(s[1].default_value, "");
        assert_eq!(s[1].kind, ParamKind::Integer);
        assert_eq!(s[5].choices, vec!["pico8", "gameboy", "nes"]);
        assert_eq!(s[4].default_value, "true");
    }
}
