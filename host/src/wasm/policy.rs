//! The `policy` interface of contract 0.2: the host's default identity-method decision
//! ([`likeness_contract::policy::default_plan`]), which a style may call, adjust or ignore.
//! It is pure computation over what the style passes in: it grants no access to anything.

use super::bindings::convert::Edge;
use super::bindings::v0_2::likeness::style::policy::{Host, Preferences};
use super::bindings::v0_2::likeness::style::types::{Analysis, Capabilities, Plan};
use super::sandbox::Sandbox;

impl Host for Sandbox {
    fn default_plan(
        &mut self,
        analysis: Analysis,
        capabilities: Capabilities,
        preferences: Preferences,
    ) -> wasmtime::Result<Plan> {
        let plan = likeness_contract::policy::default_plan(
            &analysis.edge(),
            &capabilities.edge(),
            &preferences.edge(),
        );
        Ok(plan.edge())
    }
}
