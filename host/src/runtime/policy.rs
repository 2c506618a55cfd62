//! The `policy` interface of contract 0.2: the host's default identity-method decision, which a
//! style may call, adjust or ignore.

use super::bindings::v0_2::likeness::style::policy::{Host, Preferences};
use super::bindings::v0_2::likeness::style::types::{Analysis, Capabilities, Plan};
use super::sandbox::Sandbox;

impl Host for Sandbox {
    fn default_plan(
        &mut self,
        _analysis: Analysis,
        _capabilities: Capabilities,
        _preferences: Preferences,
    ) -> wasmtime::Result<Plan> {
        wasmtime::bail!("policy.default-plan is not implemented by this host yet")
    }
}
