//! Checking a request's options once, in the host, against the parameter specs a style's
//! `describe()` returned: the style then gets complete, typed options and never parses text.
//!
//! Clients send options as text (a form field or JSON values written out). Each must name a
//! declared parameter, at most once, and parse as its kind within its bounds: an integer
//! (`-12`), a finite number (`0.5`), a boolean (`true`/`false`, `yes`/`no`, `on`/`off`,
//! `1`/`0`), one of a choice's values, or text of at most its length in characters. An empty
//! value counts as not set. Parameters not set get their default; one without a default is
//! left out.

use crate::types::{Options, ParamKind, ParamSpec, Value};

/// A request's options as the client sent them: names and text values, in the order sent.
pub type RawOptions = Vec<(String, String)>;

/// An option the host refuses, naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's name, as the client sent it.
    pub option: String,
    /// What is wrong, in a sentence naming the option.
    pub message: String,
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptionError {}

fn refuse(option: &str, problem: impl std::fmt::Display) -> OptionError {
    OptionError {
        option: option.to_string(),
        message: format!("option '{option}' {problem}"),
    }
}

/// Parses `text` as a value of `spec`'s kind within its bounds.
pub fn parse(spec: &ParamSpec, text: &str) -> Result<Value, OptionError> {
    let name = spec.name.as_str();
    match &spec.kind {
        ParamKind::Text(max) => {
            let chars = text.chars().count();
            if chars > *max as usize {
                return Err(refuse(
                    name,
                    format_args!("is {chars} characters long; at most {max} are allowed"),
                ));
            }
            Ok(Value::Text(text.to_string()))
        }
        ParamKind::Integer { min, max } => {
            let n: i64 = text
                .trim()
                .parse()
                .map_err(|_| refuse(name, format_args!("must be a whole number, not '{text}'")))?;
            if !(*min..=*max).contains(&n) {
                return Err(refuse(
                    name,
                    format_args!("is {n}; it must be in {min}..={max}"),
                ));
            }
            Ok(Value::Integer(n))
        }
        ParamKind::Number { min, max } => {
            let x: f64 = text
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| refuse(name, format_args!("must be a number, not '{text}'")))?;
            if !(*min..=*max).contains(&x) {
                return Err(refuse(
                    name,
                    format_args!("is {x}; it must be in {min}..={max}"),
                ));
            }
            Ok(Value::Number(x))
        }
        ParamKind::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Value::Boolean(true)),
            "false" | "no" | "off" | "0" => Ok(Value::Boolean(false)),
            _ => Err(refuse(
                name,
                format_args!("must be true or false, not '{text}'"),
            )),
        },
        ParamKind::Choice(choices) => {
            if choices.iter().any(|c| c == text) {
                Ok(Value::Text(text.to_string()))
            } else {
                Err(refuse(
                    name,
                    format_args!("is '{text}'; it must be one of: {}", choices.join(", ")),
                ))
            }
        }
    }
}

/// Whether `value` is a valid value of `spec` (kind and bounds): how a style's own defaults are
/// checked when it is loaded.
pub fn admits(spec: &ParamSpec, value: &Value) -> bool {
    match (&spec.kind, value) {
        (ParamKind::Text(max), Value::Text(text)) => text.chars().count() <= *max as usize,
        (ParamKind::Integer { min, max }, Value::Integer(n)) => (*min..=*max).contains(n),
        (ParamKind::Number { min, max }, Value::Number(x)) => {
            x.is_finite() && (*min..=*max).contains(x)
        }
        (ParamKind::Boolean, Value::Boolean(_)) => true,
        (ParamKind::Choice(choices), Value::Text(text)) => choices.contains(text),
        _ => false,
    }
}

/// The complete, typed options of a request that sent `raw`, for a style with `specs` (see the
/// module docs); the first bad option is refused.
pub fn check(specs: &[ParamSpec], raw: &[(String, String)]) -> Result<Options, OptionError> {
    let mut given: Vec<Option<Value>> = vec![None; specs.len()];
    let mut seen = vec![false; specs.len()];
    for (name, text) in raw {
        let Some(i) = specs.iter().position(|spec| spec.name == *name) else {
            let known: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
            return Err(refuse(
                name,
                if known.is_empty() {
                    "is unknown: this style takes no options".to_string()
                } else {
                    format!("is unknown; this style takes: {}", known.join(", "))
                },
            ));
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(refuse(name, "is set more than once"));
        }
        if !text.is_empty() {
            given[i] = Some(parse(&specs[i], text)?);
        }
    }
    Ok(specs
        .iter()
        .zip(given)
        .filter_map(|(spec, value)| {
            let value = value.or_else(|| spec.default_value.clone())?;
            Some((spec.name.clone(), value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: ParamKind, default_value: Option<Value>) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: String::new(),
            kind,
            default_value,
        }
    }

    fn specs() -> Vec<ParamSpec> {
        vec![
            spec(
                "caption",
                ParamKind::Text(10),
                Some(Value::Text("a person".into())),
            ),
            spec("seed", ParamKind::Integer { min: 0, max: 100 }, None),
            spec(
                "paper",
                ParamKind::Number { min: 0.0, max: 1.0 },
                Some(Value::Number(0.6)),
            ),
            spec("outline", ParamKind::Boolean, Some(Value::Boolean(true))),
            spec(
                "palette",
                ParamKind::Choice(vec!["gameboy".into(), "pico-8".into()]),
                Some(Value::Text("gameboy".into())),
            ),
        ]
    }

    fn raw(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_fill_in_and_order_follows_the_specs() {
        let options = check(&specs(), &raw(&[("palette", "pico-8"), ("seed", "7")])).unwrap();
        assert_eq!(
            options,
            vec![
                ("caption".into(), Value::Text("a person".into())),
                ("seed".into(), Value::Integer(7)),
                ("paper".into(), Value::Number(0.6)),
                ("outline".into(), Value::Boolean(true)),
                ("palette".into(), Value::Text("pico-8".into())),
            ]
        );
        // Unset without a default: left out; empty: not set.
        let options = check(&specs(), &raw(&[("seed", ""), ("outline", "off")])).unwrap();
        assert_eq!(options.len(), 4);
        assert!(options.contains(&("outline".into(), Value::Boolean(false))));
    }

    #[test]
    fn each_bad_option_is_named() {
        let bad = |pairs: &[(&str, &str)]| check(&specs(), &raw(pairs)).unwrap_err();
        let e = bad(&[("colour", "red")]);
        assert_eq!(e.option, "colour");
        assert!(
            e.message.contains("unknown") && e.message.contains("palette"),
            "{e}"
        );
        assert_eq!(bad(&[("seed", "1"), ("seed", "2")]).option, "seed");
        assert!(bad(&[("seed", "seven")]).message.contains("whole number"));
        assert!(bad(&[("seed", "101")]).message.contains("0..=100"));
        assert!(
            bad(&[("paper", "NaN")])
                .message
                .contains("must be a number")
        );
        assert!(bad(&[("paper", "1.5")]).message.contains("0..=1"));
        assert!(
            bad(&[("outline", "maybe")])
                .message
                .contains("true or false")
        );
        assert!(
            bad(&[("palette", "cga")])
                .message
                .contains("gameboy, pico-8")
        );
        assert!(
            bad(&[("caption", "a very long caption")])
                .message
                .contains("at most 10")
        );
    }

    #[test]
    fn defaults_are_checked_against_their_specs() {
        for spec in specs() {
            assert!(spec.default_value.as_ref().is_none_or(|v| admits(&spec, v)));
        }
        let s = spec("n", ParamKind::Integer { min: 0, max: 3 }, None);
        assert!(!admits(&s, &Value::Integer(4)));
        assert!(!admits(&s, &Value::Text("1".into())));
    }
}
