//! Typed failures of a style call.

use std::fmt;

use super::budget::Limit;
use likeness_contract::StyleError;

/// Which export of a style was being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `describe`.
    Describe,
    /// `choose-plan` (`plan` in 0.1).
    Plan,
    /// `post-process`.
    PostProcess,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Describe => "describe",
            Call::Plan => "plan",
            Call::PostProcess => "post-process",
        })
    }
}

fn timeout_message(call: Call, limit: Limit, limit_ms: u64, cpu_ms: u64) -> String {
    match limit {
        Limit::Cpu => format!("used its {limit_ms} ms CPU budget in {call} and was stopped"),
        Limit::WallClock => format!(
            "slept, blocked or was starved past its {limit_ms} ms wall-clock ceiling in {call} \
             (having used {cpu_ms} ms of CPU) and was stopped"
        ),
    }
}

/// Why a style call failed. Every variant names the style; the host keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The style itself returned one of its errors (e.g. invalid options).
    #[error("style '{style}': {error}")]
    Style {
        /// The style that failed.
        style: String,
        /// The style's error.
        error: StyleError,
    },
    /// The call used its CPU budget, or ran past its wall-clock ceiling, and was stopped.
    #[error("style '{style}' {}", timeout_message(*call, *limit, *limit_ms, *cpu_ms))]
    Timeout {
        /// The style that failed.
        style: String,
        /// The export being called.
        call: Call,
        /// Which limit fired.
        limit: Limit,
        /// That limit, in milliseconds.
        limit_ms: u64,
        /// CPU the call had used when it was stopped, in milliseconds.
        cpu_ms: u64,
    },
    /// The instance asked for more memory than its cap.
    #[error("style '{style}' hit its {limit_mib} MiB memory cap in {call}")]
    MemoryLimit {
        /// The style that failed.
        style: String,
        /// The export being called.
        call: Call,
        /// The cap, in MiB.
        limit_mib: usize,
    },
    /// The guest's call stack overflowed.
    #[error("style '{style}' overflowed its stack in {call}")]
    StackOverflow {
        /// The style that failed.
        style: String,
        /// The export being called.
        call: Call,
    },
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access…).
    #[error("style '{style}' crashed in {call}: {message}")]
    Trap {
        /// The style that failed.
        style: String,
        /// The export being called.
        call: Call,
        /// What the runtime reported.
        message: String,
    },
    /// The guest returned something the contract forbids (e.g. an image of the wrong size, a
    /// NaN weight, a 1 MB prompt).
    #[error("style '{style}' returned a bad result from {call}: {message}")]
    BadOutput {
        /// The style that failed.
        style: String,
        /// The export being called.
        call: Call,
        /// The field, as the WIT spells it (e.g. `plan.identity-weight`).
        field: String,
        /// What is wrong with it, naming the field.
        message: String,
    },
    /// No instance could be made (e.g. every pooled slot is busy).
    #[error("style '{style}' could not be instantiated: {message}")]
    Instantiate {
        /// The style that failed.
        style: String,
        /// Why.
        message: String,
    },
}

impl CallError {
    /// A stable, machine-readable code for clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Style {
                error: StyleError::InvalidOptions(_),
                ..
            } => "invalid_options",
            CallError::Style {
                error: StyleError::UnusableInput(_),
                ..
            } => "unusable_input",
            CallError::Style {
                error: StyleError::Internal(_),
                ..
            } => "style_internal_error",
            CallError::Timeout { .. } => "style_timeout",
            CallError::MemoryLimit { .. } => "style_memory_limit",
            CallError::StackOverflow { .. } => "style_stack_overflow",
            CallError::Trap { .. } => "style_trap",
            CallError::BadOutput { .. } => "style_bad_output",
            CallError::Instantiate { .. } => "style_unavailable",
        }
    }

    /// The id of the style that failed.
    pub fn style(&self) -> &str {
        match self {
            CallError::Style { style, .. }
            | CallError::Timeout { style, .. }
            | CallError::MemoryLimit { style, .. }
            | CallError::StackOverflow { style, .. }
            | CallError::Trap { style, .. }
            | CallError::BadOutput { style, .. }
            | CallError::Instantiate { style, .. } => style,
        }
    }
}
