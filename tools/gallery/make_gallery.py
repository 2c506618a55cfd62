#!/usr/bin/env python3
"""Regenerates docs/gallery/: a before/after picture per first-party style and public-domain
photo, made by the real service in-process (`likeness run`) from the styles in styles/ and the
model packs in models/, then downscaled and saved as small JPEGs; and each style's preview
picture (plugins/<style>/preview.jpg, the styled astronaut as a 256 px square), which the
package carries and the playground shows on the style's card.

    likeness styles build          # the packages in styles/
    likeness models fetch          # the face and style-transfer packs in models/
    python3 -m pip install -r tools/gallery/requirements.txt
    python3 tools/gallery/make_gallery.py [--likeness target/release/likeness]

Only public-domain or CC0 photos go into the gallery (the repository must not carry photos of
people under other terms): scikit-image's astronaut.png (NASA, public domain) and camera.png
(CC0), from the test photos in .cache/testdata/ (`likeness models fetch` or any test run
fetches them).
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
# The photos allowed in the gallery, with their licences.
PHOTOS = {"astronaut.png": "NASA, public domain", "camera.png": "CC0"}
STYLES = ["anime", "claymation", "pixel-art", "watercolor", "pop-art", "sketch"]
# The photo each style's preview is made from, and the preview's side.
PREVIEW_PHOTO = "astronaut.png"
PREVIEW_SIDE = 256
# Each half of a before/after picture is this many pixels tall.
HEIGHT = 256
QUALITY = 80


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--likeness", default=str(ROOT / "target" / "debug" / "likeness"))
    parser.add_argument("--photos", default=str(ROOT / ".cache" / "testdata"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "gallery"))
    parser.add_argument("--style", action="append", help="only these styles (repeatable)")
    parser.add_argument("--no-previews", action="store_true", help="leave plugins/*/preview.jpg as they are")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = [Path(args.photos) / name for name in PHOTOS]
    facts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style in args.style or STYLES:
            # `likeness run` writes <out>/<stem>.<style>.png and says on stderr, per photo,
            # which method ran and the identity score.
            run = subprocess.run(
                [args.likeness, "run", "--style", style, "--out", tmp, *map(str, photos)],
                cwd=ROOT, capture_output=True, text=True,
            )
            said = [l for l in run.stderr.splitlines() if l.startswith(("ok ", "failed "))]
            print("\n".join(said))
            if run.returncode != 0:
                sys.stderr.write(run.stderr[-2000:])
                print(f"likeness run --style {style} failed ({run.returncode})", file=sys.stderr)
                return 1
            facts[style] = [l.replace(tmp + "/", "").replace(args.photos + "/", "") for l in said]
            for photo in photos:
                result = Path(tmp) / f"{photo.stem}.{style}.png"
                path = out / f"{style}-{photo.stem}.jpg"
                before_after(photo, result).save(path, quality=QUALITY, optimize=True)
                print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB")
                if photo.name == PREVIEW_PHOTO and not args.no_previews:
                    preview = ROOT / "plugins" / style / "preview.jpg"
                    square(result).save(preview, quality=QUALITY, optimize=True)
                    print(f"{preview.relative_to(ROOT)}: {preview.stat().st_size // 1024} KB")
    # What made each picture (the method and the identity score), kept next to them.
    (out / "runs.txt").write_text(
        "".join(f"{style}:\n" + "".join(f"  {l}\n" for l in lines) for style, lines in facts.items())
    )
    return 0


def square(result: Path) -> Image.Image:
    """The middle square of a result, PREVIEW_SIDE pixels wide."""
    image = Image.open(result).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.LANCZOS)


def before_after(photo: Path, result: Path) -> Image.Image:
    """The photo and the result side by side, each HEIGHT pixels tall."""
    halves = [Image.open(p).convert("RGB") for p in (photo, result)]
    halves = [h.resize((round(h.width * HEIGHT / h.height), HEIGHT), Image.LANCZOS) for h in halves]
    joined = Image.new("RGB", (sum(h.width for h in halves) + 4, HEIGHT), "white")
    joined.paste(halves[0], (0, 0))
    joined.paste(halves[1], (halves[0].width + 4, 0))
    return joined


if __name__ == "__main__":
    sys.exit(main())
