//! What every style says of itself and the plan every style makes the same way: validate the
//! options, choose the identity method ([`select`](crate::select)), fill the prompt template,
//! round the working size. A style declares a [`StyleSpec`] and keeps its own look.

use crate::options::{self, Param};
use crate::{
    Analysis, Capabilities, IdentityMethod, Options, Plan, StyleError, StyleInfo, prompt, select,
    size,
};

/// A style's identity and planning choices.
#[derive(Debug, Clone, Copy)]
pub struct StyleSpec {
    /// The style id, as in `style.toml`.
    pub id: &'static str,
    /// Human-readable name, as in `style.toml`.
    pub name: &'static str,
    /// The version, as in `style.toml` (use `env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// One sentence for clients, as in `style.toml`.
    pub description: &'static str,
    /// The prompt template, with a `{caption}` slot.
    pub prompt: &'static str,
    /// What diffusion should avoid.
    pub negative_prompt: &'static str,
    /// The identity method for one clear face.
    pub preferred: IdentityMethod,
}

impl StyleSpec {
    /// The style's `describe()` answer.
    pub fn describe(&self, params: &[Param]) -> StyleInfo {
        StyleInfo {
            id: self.id.into(),
            name: self.name.into(),
            version: self.version.into(),
            description: self.description.into(),
            params: options::specs(params),
        }
    }

    /// The style's `plan()` answer.
    pub fn plan(
        &self,
        params: &[Param],
        analysis: &Analysis,
        capabilities: &Capabilities,
        options: &Options,
    ) -> Result<Plan, StyleError> {
        let values = options::parse(params, options)?;
        let selection = select::select(self.id, analysis, capabilities, self.preferred);
        let prompt = prompt::render(self.prompt, &[("caption", values.caption())]);
        Ok(selection.into_plan(
            prompt,
            self.negative_prompt.into(),
            size::working_size(analysis.width, analysis.height),
            values.seed(),
        ))
    }
}
