//! SDXL text conditioning: both CLIP encoders, the penultimate hidden states concatenated
//! (768 + 1280 = 2048 wide in SDXL), `text_encoder_2`'s pooled projection as `text_embeds`,
//! and the negative branch for classifier-free guidance (zeros for an empty negative prompt when
//! the pack sets `force_zeros_for_empty_prompt`, as SDXL does).

use crate::error::DiffusionError;
use crate::graph::{Feed, Graph, HostTensor};
use crate::pack::Role;
use crate::tokenizer::ClipTokenizer;

/// The text half of the UNet's inputs, batch-first; with guidance the batch is `[uncond, cond]`.
#[derive(Debug, Clone)]
pub struct TextConditioning {
    /// `[B, 77, C1 + C2]` hidden states.
    pub context: HostTensor,
    /// `[B, P]` pooled projection (`text_embeds`).
    pub pooled: HostTensor,
}

/// The two encoders with their tokenizers.
pub struct TextEncoders<'a> {
    /// `text_encoder` and its tokenizer.
    pub first: (&'a Graph, &'a ClipTokenizer),
    /// `text_encoder_2` and its tokenizer.
    pub second: (&'a Graph, &'a ClipTokenizer),
    /// Whether an empty negative prompt is encoded as zeros.
    pub zeros_for_empty_negative: bool,
}

fn output_names(g: &Graph) -> Result<(String, String), DiffusionError> {
    let e = &g.info().entry;
    match (&e.hidden_state, &e.pooled) {
        (Some(h), Some(p)) => Ok((h.clone(), p.clone())),
        _ => Err(DiffusionError::inference(
            g.info().role.key(),
            "pack.toml names no hidden_state/pooled output",
        )),
    }
}

impl TextEncoders<'_> {
    /// Encodes `texts` (a batch) with both encoders: `[n, 77, C]` context and `[n, P]` pooled.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<TextConditioning, DiffusionError> {
        let mut hidden = Vec::with_capacity(2);
        let mut pooled = None;
        for (graph, tok) in [self.first, self.second] {
            let len = tok.max_length();
            let ids: Vec<i64> = texts.iter().flat_map(|t| tok.encode(t)).collect();
            let shape = [texts.len(), len];
            let (h, p) = output_names(graph)?;
            let mut out = graph.run_host(&[("input_ids", Feed::Ids(&shape, &ids))], &[&h, &p])?;
            let p_out = out.pop();
            let h_out = out.pop();
            match (h_out, p_out) {
                (Some(h), Some(p)) if h.shape.len() == 3 && h.shape[0] == texts.len() => {
                    hidden.push(h);
                    pooled = Some(p);
                }
                _ => {
                    return Err(DiffusionError::inference(
                        graph.info().role.key(),
                        "returned hidden states of an unexpected shape",
                    ));
                }
            }
        }
        let (Some(pooled), [h1, h2]) = (pooled, hidden.as_slice()) else {
            return Err(DiffusionError::inference(
                Role::TextEncoder.key(),
                "no output",
            ));
        };
        if h1.shape[1] != h2.shape[1] {
            return Err(DiffusionError::inference(
                Role::TextEncoder2.key(),
                "the two encoders return different sequence lengths",
            ));
        }
        Ok(TextConditioning {
            context: HostTensor::concat_last(&[h1, h2]),
            pooled,
        })
    }

    /// The prompt's conditioning; with `guidance`, the negative branch first (`[uncond, cond]`).
    pub fn encode(
        &self,
        prompt: &str,
        negative: &str,
        guidance: bool,
    ) -> Result<TextConditioning, DiffusionError> {
        if !guidance {
            return self.encode_batch(&[prompt]);
        }
        if negative.is_empty() && self.zeros_for_empty_negative {
            let cond = self.encode_batch(&[prompt])?;
            let zc = HostTensor::zeros(&cond.context.shape);
            let zp = HostTensor::zeros(&cond.pooled.shape);
            return Ok(TextConditioning {
                context: HostTensor::concat0(&[&zc, &cond.context]),
                pooled: HostTensor::concat0(&[&zp, &cond.pooled]),
            });
        }
        self.encode_batch(&[negative, prompt])
    }
}
