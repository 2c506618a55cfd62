//! CLIP's byte-level BPE tokenizer, reading the Hugging Face `vocab.json` + `merges.txt` files.
//!
//! It reproduces transformers' `CLIPTokenizer` when `ftfy` is not installed (the common case,
//! and what CLIPTokenizerFast approximates): control characters dropped, whitespace normalised,
//! CJK ideographs spaced, NFC, lower case; then CLIP's regex split, each piece's UTF-8 bytes
//! mapped to printable characters, BPE merges by rank with `</w>` marking a word's end; then
//! `<|startoftext|>` + at most `max_length - 2` tokens + `<|endoftext|>`, padded to `max_length`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::PackError;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

/// A loaded CLIP tokenizer.
#[derive(Debug)]
pub struct ClipTokenizer {
    encoder: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    bos: i64,
    eos: i64,
    pad: i64,
    specials: Vec<(String, i64)>,
    max_length: usize,
}

fn bytes_to_unicode() -> [char; 256] {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut table = ['\0'; 256];
    for b in &printable {
        table[*b as usize] = char::from_u32(*b).unwrap_or('\0');
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            table[b as usize] = char::from_u32(256 + n).unwrap_or('\0');
            n += 1;
        }
    }
    table
}

fn split_pattern() -> &'static Regex {
    static PAT: OnceLock<Regex> = OnceLock::new();
    PAT.get_or_init(|| {
        Regex::new(r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
            .expect("the CLIP split pattern is valid")
    })
}

fn other_category() -> &'static Regex {
    static PAT: OnceLock<Regex> = OnceLock::new();
    PAT.get_or_init(|| Regex::new(r"^[\p{C}]$").expect("valid"))
}

fn space_separator() -> &'static Regex {
    static PAT: OnceLock<Regex> = OnceLock::new();
    PAT.get_or_init(|| Regex::new(r"^[\p{Zs}]$").expect("valid"))
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// transformers' BasicTokenizer(strip_accents=False, do_split_on_punc=False), joined by spaces.
fn basic_clean(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let s: &str = c.encode_utf8(&mut buf);
        if c == ' ' || c == '\t' || c == '\n' || c == '\r' || space_separator().is_match(s) {
            cleaned.push(' ');
        } else if c == '\0' || c == '\u{FFFD}' || other_category().is_match(s) {
            continue;
        } else if is_cjk(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let normalized: String = cleaned.nfc().collect();
    normalized
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

impl ClipTokenizer {
    /// Loads `vocab.json` and `merges.txt` (first line a `#version` header, as CLIP's).
    pub fn load(
        vocab: &Path,
        merges: &Path,
        max_length: usize,
        pad_token: &str,
    ) -> Result<Self, PackError> {
        let err = |file: &Path, reason: String| PackError::Tokenizer {
            file: file.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(vocab)
            .map_err(|e| err(vocab, format!("cannot be read ({e})")))?;
        let encoder: HashMap<String, i64> = serde_json::from_str(&text)
            .map_err(|e| err(vocab, format!("is not a JSON token-to-id map ({e})")))?;
        let text = std::fs::read_to_string(merges)
            .map_err(|e| err(merges, format!("cannot be read ({e})")))?;
        let mut ranks = HashMap::new();
        for (i, line) in text.trim().lines().skip(1).enumerate() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    ranks.insert((a.to_string(), b.to_string()), i);
                }
                _ => {
                    return Err(err(
                        merges,
                        format!("line {} is not a merge pair: {line:?}", i + 2),
                    ));
                }
            }
        }
        let id = |tok: &str| {
            encoder
                .get(tok)
                .copied()
                .ok_or_else(|| err(vocab, format!("has no token {tok:?}")))
        };
        let (bos, eos, pad) = (id(BOS)?, id(EOS)?, id(pad_token)?);
        if max_length < 2 {
            return Err(err(
                vocab,
                format!("max_length {max_length} leaves no room for the start and end tokens"),
            ));
        }
        let byte_chars = bytes_to_unicode();
        if let Some(c) = byte_chars
            .iter()
            .find(|c| !encoder.contains_key(&c.to_string()))
        {
            return Err(err(
                vocab,
                format!("lacks the byte token {c:?}; it is not a byte-level BPE vocabulary"),
            ));
        }
        let mut specials = vec![(BOS.to_string(), bos), (EOS.to_string(), eos)];
        if pad_token != BOS && pad_token != EOS && !pad_token.is_empty() {
            specials.push((pad_token.to_string(), pad));
        }
        Ok(ClipTokenizer {
            specials,
            encoder,
            ranks,
            byte_chars,
            bos,
            eos,
            pad,
            max_length,
        })
    }

    /// The sequence length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Token ids without the start/end tokens and padding. Special tokens (start, end, and the
    /// padding token, e.g. `!` for OpenCLIP bigG) are split out of the raw text first, as
    /// transformers does with its added tokens.
    pub fn tokenize(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| {
                    rest.find(s.as_str())
                        .map(|pos| (pos, std::cmp::Reverse(s.len()), *id, s.len()))
                })
                .min();
            match next {
                Some((pos, _, id, len)) => {
                    ids.extend(self.tokenize_plain(&rest[..pos]));
                    ids.push(id);
                    rest = &rest[pos + len..];
                }
                None => {
                    ids.extend(self.tokenize_plain(rest));
                    break;
                }
            }
        }
        ids
    }

    fn tokenize_plain(&self, text: &str) -> Vec<i64> {
        let text = basic_clean(text);
        let mut ids = Vec::new();
        for piece in split_pattern().find_iter(&text) {
            let piece = piece.as_str();
            if piece == BOS || piece == EOS {
                ids.push(if piece == BOS { self.bos } else { self.eos });
                continue;
            }
            let mapped: Vec<String> = piece
                .bytes()
                .map(|b| self.byte_chars[b as usize].to_string())
                .collect();
            for tok in self.bpe(mapped) {
                ids.push(self.encoder.get(&tok).copied().unwrap_or(self.eos));
            }
        }
        ids
    }

    /// `max_length` ids: start, the text's tokens (truncated), end, padding.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let tokens = self.tokenize(text);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend(tokens.into_iter().take(self.max_length - 2));
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        ids
    }

    fn bpe(&self, mut word: Vec<String>) -> Vec<String> {
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|r| (*r, w[0].clone(), w[1].clone()))
                })
                .min();
            let Some((_, first, second)) = best else {
                break;
            };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        let mut seen: Vec<char> = t.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], '\u{120}');
    }

    #[test]
    fn basic_clean_follows_transformers() {
        assert_eq!(
            basic_clean("  A\tPhoto\u{200B} of\n ÉCOLE "),
            "a photo of école"
        );
        assert_eq!(basic_clean("猫cat"), "猫 cat");
    }
}
