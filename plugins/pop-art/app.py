"""The pop-art style: a screen-printed pop-art portrait, written in Python.

With diffusion it prefers InstantID (the face stays recognisable under flat colours) and falls
back to ControlNet, as the host's default decision says. Without diffusion (method `none`) the
post-process prints the look from the photo with the host's native canvas operations: flat
colour regions, Ben-Day halftone dots that grow in the shadows, and black ink outlines; with
`panels`, four prints in different colours, as a Warhol grid.
"""

import math

import likeness as lk
from likeness import BlendMode, Image, MethodKind, Region, Size

ID = "pop-art"
NAME = "Pop art"
VERSION = "0.1.0"
DESCRIPTION = "Turns the portrait into a pop-art print: flat bold colours, halftone dots and black ink outlines."
PROMPT = (
    "pop art portrait of {caption}, screen print, bold flat colours, halftone ben-day dots, "
    "thick black outlines, comic book print, high contrast"
)
NEGATIVE = "photo, photorealistic, muted colours, soft gradients, blurry, 3d render, deformed face, watermark, text, signature"

#: The inks of a comic-book print: the photo's colours snap to the nearest.
COMIC_INKS = [
    "#fdf6e3", "#ffd400", "#f68b1f", "#e2231a", "#f4a582", "#fcd5b5", "#8c4a2f",
    "#00a1e4", "#1d4f9c", "#1b1f4a", "#2a9d55", "#c9d3dc", "#151515",
]

#: The tone palettes, darkest first, with the halftone dots' colour last.
PALETTES = {
    "comic": None,  # the photo's own colours, printed in COMIC_INKS
    "warhol": ["#1d1a4f", "#e8338f", "#f7b32b", "#fde8c8", "#7a1f5c"],
    "lichtenstein": ["#14141f", "#d7263d", "#f4d35e", "#fffaf0", "#1b5fa8"],
    "mint": ["#0b3037", "#17a398", "#f5e663", "#f7fff7", "#0d5c63"],
    "sunset": ["#2b1b3d", "#f25f5c", "#ffe066", "#fff8e7", "#7d3c98"],
}
#: The panels of the Warhol grid, top-left, top-right, bottom-left, bottom-right.
PANELS = ["warhol", "mint", "lichtenstein", "sunset"]

PALETTE = "palette"
DOT_SIZE = "dot-size"
GRID = "panels"

PARAMS = [
    lk.caption(),
    lk.seed(),
    lk.choice(PALETTE, "The print's colours without diffusion: the photo's own (comic) or a flat palette.", list(PALETTES), "comic"),
    lk.number(DOT_SIZE, "The halftone dots' spacing in pixels, for a 1024-pixel photo.", 9.0, 4.0, 32.0),
    lk.boolean(GRID, "Four prints in different colours, as a Warhol grid.", False),
]

#: The long side the look is printed at; larger photos are worked on shrunk and scaled back.
WORKING_SIDE = 1280


def dot_screen(width: int, height: int, spacing: int) -> Image:
    """The halftone screen: dots on a 45-degree grid `spacing` pixels apart, as the darkness
    (0..1) a pixel needs to be inked, so that a tone of darkness D inks a share D of it."""
    period = max(2, round(spacing * math.sqrt(2)))
    half = period / 2.0

    def need(x: int, y: int) -> float:
        # Distance to the nearest dot centre: the tile's corners and its centre.
        dx, dy = (x + 0.5) % period, (y + 0.5) % period
        corner = min(dx, period - dx) ** 2 + min(dy, period - dy) ** 2
        centre = (dx - half) ** 2 + (dy - half) ** 2
        return min(1.0, 2.0 * math.pi * min(corner, centre) / (period * period))

    return lk.pattern(width, height, (period, period), need)


def halftone(tone: Image, spacing: int, ink: lk.Rgba) -> Image:
    """`ink` dots on white whose size follows the darkness of `tone`."""
    width, height = tone.width(), tone.height()
    # Lifted, so the highlights stay clean paper and the shadows fill in.
    light = lk.grey(tone).adjust(0.1, 1.3, 1.0).blur(spacing * 0.35)
    # Paper where light + need > 1, that is where the darkness is below what the screen needs.
    paper = lk.threshold(light.blend(dot_screen(width, height, spacing), BlendMode.NORMAL, 0.5), 0.5, 0.04)
    return Image.filled(width, height, ink).composite(Image.filled(width, height, lk.rgb("#ffffff")), paper)


def outlines(flat: Image, scale: float) -> Image:
    """A mask, white along the strong edges of `flat`: the ink outlines."""
    edges = flat.edges(max(0.8, 1.4 * scale))
    lines = lk.threshold(edges, 0.09, 0.05)
    # Thickened: a blur of the thin lines, cut again.
    return lk.threshold(lines.blur(max(0.7, 1.1 * scale)), 0.3, 0.2)


def print_pop(photo: Image, palette: str, dot_size: float) -> Image:
    """The whole look, printed from `photo`."""
    width, height = photo.width(), photo.height()
    scale = max(min(width, height) / 1024.0, 0.125)
    px = lambda v: max(1, round(v * scale))
    flat = photo.smooth(px(7), 0.015).smooth(px(4), 0.01)
    colours = PALETTES[palette]
    if colours is None:
        base = flat.adjust(0.02, 1.15, 1.4).quantize([lk.rgb(c) for c in COMIC_INKS], False)
        dot_ink = lk.rgb("#1a1a2e")
        dot_opacity = 0.35
    else:
        tones = [lk.rgb(c) for c in colours[:4]]
        base = lk.tone_map(flat, tones, [0.27, 0.5, 0.74], 0.03)
        dot_ink = lk.rgb(colours[4])
        dot_opacity = 0.55
    spacing = max(3, round(dot_size * scale))
    dots = halftone(flat, spacing, dot_ink)
    printed = base.blend(dots, BlendMode.MULTIPLY, dot_opacity)
    black = Image.filled(width, height, lk.rgb("#111111"))
    return printed.composite(black, outlines(flat, scale))


def warhol_grid(photo: Image, dot_size: float) -> Image:
    """Four prints of `photo` at half size, one per palette of `PANELS`."""
    width, height = photo.width(), photo.height()
    out = Image.filled(width, height, lk.rgb("#ffffff"))
    if width < 2 or height < 2:
        return print_pop(photo, PANELS[0], dot_size)
    left, top = width // 2, height // 2
    cells = [(0, 0, left, top), (left, 0, width - left, top), (0, top, left, height - top), (left, top, width - left, height - top)]
    for (x, y, w, h), palette in zip(cells, PANELS):
        panel = print_pop(photo.resize(Size(w, h), False), palette, dot_size / 2.0)
        out.write(Region(x, y, w, h), panel.read(None))
    return out


class Style(lk.Style):
    def describe(self) -> lk.StyleInfo:
        return lk.style_info(ID, NAME, VERSION, DESCRIPTION, PARAMS)

    def choose_plan(self, analysis, capabilities, options) -> lk.Plan:
        opts = lk.Options(options)
        return lk.default_plan(
            analysis,
            capabilities,
            look="pop-art",
            preferred=MethodKind.INSTANT_ID,
            prompt=lk.render(PROMPT, caption=opts.caption()),
            negative_prompt=NEGATIVE,
            seed=opts.seed(),
        )

    def post_process(self, image, analysis, plan, options) -> Image:
        opts = lk.Options(options)
        if lk.kind(plan.method) != MethodKind.NONE:
            # Diffusion drew the look: a little more punch.
            return image.adjust(0.0, 1.08, 1.15)
        work, shrunk = lk.working_copy(image, WORKING_SIDE)
        dot_size = opts.number(DOT_SIZE, 9.0)
        if opts.boolean(GRID):
            out = warhol_grid(work, dot_size)
        else:
            out = print_pop(work, opts.text(PALETTE, "comic"), dot_size)
        if shrunk:
            out = out.resize(Size(image.width(), image.height()), False)
        return out
