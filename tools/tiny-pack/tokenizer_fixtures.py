#!/usr/bin/env python3
"""Writes host/diffusion/tests/fixtures/tokens.json: reference token ids from transformers'
CLIPTokenizer (the slow one, without ftfy, as diffusers' SDXL pipelines load it) on the tiny
pack's vocab.json/merges.txt, for both SDXL tokenizers (pad "<|endoftext|>" and pad "!").

Usage: python3 tokenizer_fixtures.py PACK_DIR OUT.json   (needs `pip install transformers==4.57.1`;
no model is downloaded: the tokenizer files are the tiny pack's).
"""

import hashlib
import json
import os
import sys

from transformers import CLIPTokenizer

TEXTS = [
    "a photo of a person",
    "anime artwork illustrating a smiling woman anime style, highly detailed",
    "Claymation figure of a MAN with glasses -- soft studio light!!!",
    "pixel art portrait of a child, 16-bit, vibrant palette, retro game sprite",
    "blurry, lowres, bad anatomy, worst quality, deformed face, extra fingers, watermark, text",
    "it's a dog's life, we're here, they've gone, I'm ok, you'll see, he'd go",
    "  tabs\tand\nnewlines   and    spaces  ",
    "École café naïve façade Ångström",
    "猫 and 犬 in 東京",
    "emoji 😀👍 and symbols © ® ™ § ¶ … “quotes”",
    "zero\u200bwidth\u00adsoft hyphen",
    "numbers 123 4.56 7,890 and 1st 2nd",
    "under_score and hy-phen and dot.dot and @handle #tag $5 100%",
    "a <|endoftext|> inside",
    "",
    " ".join(["watercolor painting of an old man with a beard"] * 12),
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    pack, out = sys.argv[1], sys.argv[2]
    vocab = os.path.join(pack, "tokenizer", "vocab.json")
    merges = os.path.join(pack, "tokenizer", "merges.txt")
    t1 = CLIPTokenizer(vocab, merges)
    t2 = CLIPTokenizer(vocab, merges, pad_token="!")
    assert t1.fix_text is None, "uninstall ftfy: the reference is CLIPTokenizer without it"
    cases = []
    for text in TEXTS:
        ids = t1(text, padding="max_length", max_length=77, truncation=True).input_ids
        ids2 = t2(text, padding="max_length", max_length=77, truncation=True).input_ids
        cases.append({"text": text, "ids": ids, "ids_2": ids2})
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"vocab_sha256": sha256(vocab), "merges_sha256": sha256(merges), "cases": cases}, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
