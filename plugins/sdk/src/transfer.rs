//! The neural CPU tier for styles: a [`TransferLook`] says how a style wants the host's
//! style-transfer networks to draw it (which learned styles, or a picture from its own
//! `assets/`; how strongly; at which working side; how much the faces keep the photo's
//! detail; the identity threshold), and [`with_transfer`] puts it into the host's default plan
//! when no diffusion method can run for the request.
//!
//! A style declares its look as [`Style::TRANSFER`](crate::Style::TRANSFER); the SDK's default
//! `choose-plan` then calls `policy.default-plan` and [`with_transfer`], so that the style
//! writes no planning code of its own.

use crate::{Capabilities, IdentityGate, Method, MethodKind, Plan, Transfer, TransferCapabilities};

/// How a style is drawn by the host's style-transfer networks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransferLook {
    /// The learned styles to blend, as positions in the capabilities' `learned-styles` list
    /// (the order of the pack's style network) with their weights, 0..1.
    pub learned: &'static [(u32, f32)],
    /// A style picture, as a path inside the package's `assets/`, used instead of the learned
    /// styles when the host takes style pictures.
    pub picture: Option<&'static str>,
    /// How much of the stylised rendition replaces the photo, 0..1.
    pub strength: f32,
    /// The working long side in pixels (capped at the host's largest); `None`: the host's
    /// default. A smaller side gives larger brush strokes.
    pub working_side: Option<u32>,
    /// How much lighter the stylisation is inside the faces, 0..1.
    pub face_preservation: f32,
    /// The least identity score the finished image must reach: measured per look, so that the
    /// photo's person passes and a different person does not.
    pub threshold: f32,
}

/// Attempts the identity gate of a transfer plan allows: the first rendition and the host's
/// retry with more face preservation.
pub const GATE_ATTEMPTS: u32 = 2;

impl TransferLook {
    /// The transfer settings for a host offering `offered`, or `None` when it cannot draw this
    /// look (a learned style it lacks, a picture where it takes none).
    pub fn settings(&self, offered: &TransferCapabilities) -> Option<Transfer> {
        let picture = self.picture.filter(|_| offered.style_pictures);
        let learned = if picture.is_some() {
            Vec::new()
        } else {
            self.learned
                .iter()
                .map(|&(index, weight)| {
                    let name = offered.learned_styles.get(index as usize)?;
                    Some((name.clone(), weight))
                })
                .collect::<Option<Vec<_>>>()?
        };
        if picture.is_none() && learned.is_empty() {
            return None;
        }
        Some(Transfer {
            learned_styles: learned,
            style_picture: picture.map(str::to_string),
            strength: self.strength,
            working_side: self.working_side.map(|side| side.min(offered.max_side)),
            face_preservation: self.face_preservation,
        })
    }
}

/// `plan` (the host's default plan) with `look` drawn by style transfer in place of `none`:
/// when the plan runs no neural network (no diffusion method can run for this request) and
/// the host offers style transfer that can draw `look`, the plan becomes `style-transfer`,
/// falling back to `none`, with the look's identity gate and a reason naming `name`. Any
/// other plan is returned unchanged.
pub fn with_transfer(
    plan: Plan,
    capabilities: &Capabilities,
    name: &str,
    look: &TransferLook,
) -> Plan {
    if plan.method != Method::None || !capabilities.methods.contains(&MethodKind::StyleTransfer) {
        return plan;
    }
    let Some(settings) = capabilities
        .transfer
        .as_ref()
        .and_then(|offered| look.settings(offered))
    else {
        return plan;
    };
    Plan {
        method: Method::StyleTransfer(settings),
        fallbacks: vec![Method::None],
        identity_gate: Some(IdentityGate {
            threshold: look.threshold,
            attempts: GATE_ATTEMPTS,
        }),
        reason: format!(
            "This server has no diffusion method for this photo, so a neural style-transfer \
             network on the CPU drew the {name} look and the style finished it."
        ),
        ..plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{capabilities, plan};

    const LOOK: TransferLook = TransferLook {
        learned: &[(3, 0.6), (25, 0.4)],
        picture: None,
        strength: 0.8,
        working_side: Some(2048),
        face_preservation: 0.5,
        threshold: 0.4,
    };

    #[test]
    fn no_diffusion_with_transfer_becomes_a_transfer() {
        let out = with_transfer(plan(MethodKind::None), &capabilities(true), "test", &LOOK);
        let Method::StyleTransfer(t) = &out.method else {
            panic!("{out:?}");
        };
        assert_eq!(
            t.learned_styles,
            vec![("style-03".to_string(), 0.6), ("style-25".to_string(), 0.4)]
        );
        assert_eq!(t.style_picture, None);
        assert_eq!((t.strength, t.face_preservation), (0.8, 0.5));
        assert_eq!(
            t.working_side,
            Some(1024),
            "capped at the host's largest side"
        );
        assert_eq!(out.fallbacks, vec![Method::None]);
        assert_eq!(
            out.identity_gate,
            Some(IdentityGate {
                threshold: 0.4,
                attempts: GATE_ATTEMPTS
            })
        );
        assert!(out.reason.contains("the test look"), "{}", out.reason);
    }

    #[test]
    fn without_transfer_or_with_diffusion_the_plan_is_unchanged() {
        let none = plan(MethodKind::None);
        assert_eq!(
            with_transfer(none.clone(), &capabilities(false), "test", &LOOK),
            none
        );
        let diffusion = plan(MethodKind::InstantId);
        assert_eq!(
            with_transfer(diffusion.clone(), &capabilities(true), "test", &LOOK),
            diffusion
        );
        // Offered in `transfer` but not among the methods: not runnable.
        let mut caps = capabilities(true);
        caps.methods.retain(|m| *m != MethodKind::StyleTransfer);
        assert_eq!(with_transfer(none.clone(), &caps, "test", &LOOK), none);
    }

    #[test]
    fn a_look_the_host_cannot_draw_is_not_planned() {
        let mut caps = capabilities(true);
        caps.transfer.as_mut().unwrap().learned_styles.truncate(10);
        let none = plan(MethodKind::None);
        assert_eq!(with_transfer(none.clone(), &caps, "test", &LOOK), none);
        let picture_only = TransferLook {
            learned: &[],
            picture: Some("clay.png"),
            ..LOOK
        };
        caps.transfer.as_mut().unwrap().style_pictures = false;
        assert_eq!(
            with_transfer(none.clone(), &caps, "test", &picture_only),
            none
        );
    }

    #[test]
    fn a_picture_replaces_the_learned_styles() {
        let look = TransferLook {
            picture: Some("clay.png"),
            ..LOOK
        };
        let out = with_transfer(plan(MethodKind::None), &capabilities(true), "test", &look);
        let Method::StyleTransfer(t) = out.method else {
            panic!()
        };
        assert_eq!(t.style_picture.as_deref(), Some("clay.png"));
        assert!(t.learned_styles.is_empty());
    }
}
