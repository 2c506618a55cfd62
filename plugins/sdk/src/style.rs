//! What every style says of itself and how it plans: a [`StyleSpec`] (identity, prompt
//! template, preferred identity method) and the [`Style`] trait, whose defaults answer
//! `describe` and `choose-plan` (the host's default plan, `policy.default-plan`, with the
//! style's prompt) so that a style writes only its look. [`export_style!`](crate::export_style)
//! exports a [`Style`] as the component's `style` interface.

use crate::bindings::likeness::style::policy;
use crate::options::{self, Values};
use crate::transfer::{self, TransferLook};
use crate::{
    Analysis, Canvas, Capabilities, Image, MethodKind, Options, ParamSpec, Plan, Preferences,
    StyleError, StyleInfo, prompt,
};

/// A style's identity and planning choices.
#[derive(Debug, Clone, Copy)]
pub struct StyleSpec {
    /// The style id, as in `style.toml` (also the look's name in plan reasons).
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
    pub preferred: MethodKind,
}

impl StyleSpec {
    /// The style's `describe()` answer.
    pub fn describe(&self, params: Vec<ParamSpec>) -> StyleInfo {
        StyleInfo {
            id: self.id.into(),
            name: self.name.into(),
            version: self.version.into(),
            description: self.description.into(),
            params,
        }
    }

    /// What the style asks of the host's default plan: its look, preferred method, the prompt
    /// template filled with the caption, and the seed.
    pub fn preferences(&self, values: &Values) -> Preferences {
        Preferences {
            look: self.id.into(),
            preferred: self.preferred,
            prompt: prompt::render(self.prompt, &[("caption", &values.caption())]),
            negative_prompt: self.negative_prompt.into(),
            seed: values.seed(),
        }
    }
}

/// A style: who it is, which options it takes, and its look. `describe` and `choose-plan` have
/// defaults; `render` is the look.
pub trait Style {
    /// Who the style is and how it plans.
    const SPEC: StyleSpec;

    /// How the host's style-transfer networks draw the look when no diffusion method can run;
    /// `None`: the style's post-process draws it from the photo.
    const TRANSFER: Option<TransferLook> = None;

    /// The parameters clients may set; by default the caption and the seed.
    fn params() -> Vec<ParamSpec> {
        vec![options::caption(), options::seed()]
    }

    /// The `choose-plan` answer; by default the host's default plan for
    /// [`StyleSpec::preferences`], with [`Style::TRANSFER`] in place of `none`
    /// ([`transfer::with_transfer`]) (a component only: natively the host's import is missing).
    fn choose_plan(
        analysis: &Analysis,
        capabilities: &Capabilities,
        values: &Values,
    ) -> Result<Plan, StyleError> {
        let plan = policy::default_plan(analysis, capabilities, &Self::SPEC.preferences(values));
        Ok(match &Self::TRANSFER {
            Some(look) => transfer::with_transfer(plan, capabilities, Self::SPEC.id, look),
            None => plan,
        })
    }

    /// The look: `image` (the generated picture, or the photo itself with method `none`)
    /// finished, at the same size.
    fn render(
        image: Image,
        analysis: &Analysis,
        plan: &Plan,
        values: &Values,
    ) -> Result<Image, StyleError>;
}

/// `describe` for `S` (used by [`export_style!`](crate::export_style)).
pub fn describe<S: Style>() -> StyleInfo {
    S::SPEC.describe(S::params())
}

/// `choose-plan` for `S` (used by [`export_style!`](crate::export_style)).
pub fn choose_plan<S: Style>(
    analysis: Analysis,
    capabilities: Capabilities,
    options: Options,
) -> Result<Plan, StyleError> {
    S::choose_plan(&analysis, &capabilities, &Values::new(&options))
}

/// `post-process` for `S`: the host's image copied in, rendered, copied back (used by
/// [`export_style!`](crate::export_style)).
pub fn post_process<S: Style>(
    image: Canvas,
    analysis: Analysis,
    plan: Plan,
    options: Options,
) -> Result<Canvas, StyleError> {
    let rendered = S::render(
        Image::from_canvas(&image),
        &analysis,
        &plan,
        &Values::new(&options),
    )?;
    Ok(rendered.into_canvas())
}

/// Exports a [`Style`] as the component's `likeness:style/style` interface.
#[macro_export]
macro_rules! export_style {
    ($style:ty) => {
        #[doc(hidden)]
        pub struct __LikenessStyleExport;

        impl $crate::bindings::exports::likeness::style::style::Guest for __LikenessStyleExport {
            fn describe() -> $crate::StyleInfo {
                $crate::style::describe::<$style>()
            }

            fn choose_plan(
                analysis: $crate::Analysis,
                capabilities: $crate::Capabilities,
                options: $crate::Options,
            ) -> Result<$crate::Plan, $crate::StyleError> {
                $crate::style::choose_plan::<$style>(analysis, capabilities, options)
            }

            fn post_process(
                image: $crate::Canvas,
                analysis: $crate::Analysis,
                plan: $crate::Plan,
                options: $crate::Options,
            ) -> Result<$crate::Canvas, $crate::StyleError> {
                $crate::style::post_process::<$style>(image, analysis, plan, options)
            }
        }

        $crate::bindings::__export_plugin!(__LikenessStyleExport);
    };
}
