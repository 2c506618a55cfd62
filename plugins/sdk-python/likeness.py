"""The Likeness style SDK for Python (contract `likeness:style@0.2.0`, `wit/style.wit`).

A Python style is a folder with `style.toml` and `app.py`; `app.py` defines a class `Style`
with the three calls of the contract. `likeness styles build` turns it into a component with
componentize-py and puts this module beside it:

    import likeness as lk

    PARAMS = [lk.caption(), lk.seed(), lk.number("grain", "Paper grain, 0 to 1.", 0.5, 0.0, 1.0)]

    class Style(lk.Style):
        def describe(self):
            return lk.style_info("my-look", "My look", "0.1.0", "One sentence.", PARAMS)

        def choose_plan(self, analysis, capabilities, options):
            opts = lk.Options(options)
            return lk.default_plan(analysis, capabilities, look="my look",
                                   prompt=lk.render("a portrait of {caption}", caption=opts.caption()),
                                   seed=opts.seed())

        def post_process(self, image, analysis, plan, options):
            return image.smooth(4, 0.01)

The helpers are the same in the Rust and JavaScript SDKs: typed options (`Options`, the
parameter builders), prompt templates (`render`, `sanitize`), the host's default decision
(`default_plan`), plans without diffusion (`plan_none`), errors (`invalid_options`, ...),
logging, and image helpers on the host's native canvas (`grey`, `threshold`, `tone_map`,
`pattern`, `working_copy`, `rgb`).
"""

from typing import Callable, List, Optional, Sequence, Tuple, Union

from componentize_py_types import Err
from likeness_bindings import exports
from likeness_bindings.imports import canvas as _canvas
from likeness_bindings.imports import log as _log
from likeness_bindings.imports import policy as _policy
from likeness_bindings.imports import types as _types

# ---- the contract's types, by their WIT names ----

Analysis = _types.Analysis
Face = _types.Face
Rect = _types.Rect
Point = _types.Point
Capabilities = _types.Capabilities
MethodKind = _types.MethodKind
ControlKind = _types.ControlKind
ControlMap = _types.ControlMap
Diffusion = _types.Diffusion
Transfer = _types.Transfer
IdentityGate = _types.IdentityGate
Plan = _types.Plan
Size = _types.Size
StyleInfo = _types.StyleInfo
ParamSpec = _types.ParamSpec
Image = _canvas.Image
Rgba = _canvas.Rgba
Region = _canvas.Region
BlendMode = _canvas.BlendMode

#: A plan's method, one case per kind: `InstantId(Diffusion)`, `Pulid(Diffusion)`,
#: `Controlnet(Diffusion)`, `StyleTransfer(Transfer)`, `NoMethod()`.
InstantId = _types.Method_InstantId
Pulid = _types.Method_Pulid
Controlnet = _types.Method_Controlnet
StyleTransfer = _types.Method_StyleTransfer
NoMethod = _types.Method_None_

_KINDS = {
    InstantId: MethodKind.INSTANT_ID,
    Pulid: MethodKind.PULID,
    Controlnet: MethodKind.CONTROLNET,
    StyleTransfer: MethodKind.STYLE_TRANSFER,
    NoMethod: MethodKind.NONE,
}


def kind(method) -> MethodKind:
    """The kind of a plan's method, e.g. `kind(plan.method) == MethodKind.NONE`."""
    return _KINDS[type(method)]


class Style(exports.Style):
    """The base of a style's `Style` class in `app.py`: implement `describe`, `choose_plan`
    and `post_process`. The host makes a fresh instance for every call."""


# ---- errors: raise what these return ----


def invalid_options(message: str) -> Err:
    """`raise invalid_options("...")`: options that break a rule their specs cannot express.
    The client gets HTTP 400 with the message."""
    return Err(_types.StyleError_InvalidOptions(message))


def unusable_input(message: str) -> Err:
    """`raise unusable_input("...")`: the photo cannot be styled (HTTP 422)."""
    return Err(_types.StyleError_UnusableInput(message))


def internal(message: Optional[str] = None) -> Err:
    """`raise internal("...")`: a bug or broken asset; the message goes to the log only."""
    return Err(_types.StyleError_Internal(message))


# ---- logging ----


def log(message: str, level: str = "info") -> None:
    """Sends `message` to the host's log (`level`: trace, debug, info, warn, error)."""
    _log.log(_log.Level[level.upper()], message)


# ---- parameters and typed options ----

#: The most characters a user-supplied text keeps in a prompt.
MAX_TEXT_CHARS = 200
#: The largest seed a client may send.
MAX_SEED = 2**63 - 1

_Value = Union[str, int, float, bool]


def _value(value: Optional[_Value]):
    if value is None:
        return None
    if isinstance(value, bool):
        return _types.Value_Boolean(value)
    if isinstance(value, int):
        return _types.Value_Integer(value)
    if isinstance(value, float):
        return _types.Value_Number(value)
    return _types.Value_Text(value)


def text(name: str, description: str, default: Optional[str] = "", max_chars: int = MAX_TEXT_CHARS) -> ParamSpec:
    """A free-text parameter of at most `max_chars` characters."""
    return ParamSpec(name, description, _types.ParamKind_Text(max_chars), _value(default))


def integer(name: str, description: str, default: Optional[int], min: int, max: int) -> ParamSpec:
    """A whole-number parameter within `min..=max`; `default=None` makes it optional."""
    kind = _types.ParamKind_Integer(_types.IntegerRange(min, max))
    return ParamSpec(name, description, kind, _value(default))


def number(name: str, description: str, default: Optional[float], min: float, max: float) -> ParamSpec:
    """A number parameter within `min..=max`."""
    kind = _types.ParamKind_Number(_types.NumberRange(float(min), float(max)))
    return ParamSpec(name, description, kind, _value(None if default is None else float(default)))


def boolean(name: str, description: str, default: Optional[bool]) -> ParamSpec:
    """A true/false parameter."""
    return ParamSpec(name, description, _types.ParamKind_Boolean(), _value(default))


def choice(name: str, description: str, choices: Sequence[str], default: Optional[str]) -> ParamSpec:
    """One of `choices` (a text option)."""
    return ParamSpec(name, description, _types.ParamKind_Choice(list(choices)), _value(default))


def caption() -> ParamSpec:
    """The `caption` parameter every style takes: what the picture shows, for the prompt."""
    return text("caption", "What the picture shows, in a few words; goes into the prompt.", "a person")


def seed() -> ParamSpec:
    """The `seed` parameter every style takes: unset lets the host choose."""
    return integer("seed", f"Noise seed (0 to {MAX_SEED}) for a repeatable result; unset lets the server choose.", None, 0, MAX_SEED)


class Options:
    """A request's options, typed: the host has checked them against the specs and applied
    the defaults, so every declared parameter with a default is present with its type."""

    def __init__(self, options: List[Tuple[str, object]]):
        self._values = {name: value.value for name, value in options}

    def get(self, name: str, default: Optional[_Value] = None) -> Optional[_Value]:
        """The value of `name` (str, int, float or bool), or `default` when it is unset."""
        return self._values.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def text(self, name: str, default: str = "") -> str:
        """A text or choice option."""
        return str(self._values.get(name, default))

    def integer(self, name: str, default: Optional[int] = None) -> Optional[int]:
        """An integer option."""
        value = self._values.get(name, default)
        return None if value is None else int(value)

    def number(self, name: str, default: Optional[float] = None) -> Optional[float]:
        """A number option."""
        value = self._values.get(name, default)
        return None if value is None else float(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        """A boolean option."""
        return bool(self._values.get(name, default))

    def caption(self) -> str:
        """The `caption` option, cleaned for a prompt."""
        return sanitize(self.text("caption")) or "a person"

    def seed(self) -> Optional[int]:
        """The `seed` option; None lets the host choose."""
        return self.integer("seed")


# ---- prompts ----


def sanitize(value: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Cleans user text for a prompt: control characters and runs of white space become one
    space, the ends are trimmed, and the result is cut to at most `max_chars` characters."""
    words = "".join(" " if c.isspace() or not c.isprintable() else c for c in value).split()
    out = ""
    for word in words:
        joined = f"{out} {word}" if out else word
        if len(joined) > max_chars:
            return joined[:max_chars].rstrip()
        out = joined
    return out


def render(template: str, **values: str) -> str:
    """Fills the `{name}` slots of `template` with `values` (keyword names with `_` match
    slots with `-`), each cleaned with `sanitize`; other braces stay as written. Values are
    inserted once, never expanded again."""
    slots = {k.replace("_", "-"): v for k, v in values.items()}
    slots.update(values)
    out, rest = [], template
    while "{" in rest:
        before, after = rest.split("{", 1)
        out.append(before)
        name, sep, tail = after.partition("}")
        if sep and name in slots:
            out.append(sanitize(str(slots[name])))
            rest = tail
        else:
            out.append("{")
            rest = after
    out.append(rest)
    return "".join(out)


# ---- plans ----


def style_info(id: str, name: str, version: str, description: str, params: Sequence[ParamSpec]) -> StyleInfo:
    """The `describe()` answer; `id`, `name`, `version` and `description` must agree with
    `style.toml`."""
    return StyleInfo(id, name, version, description, list(params))


def default_plan(
    analysis: Analysis,
    capabilities: Capabilities,
    look: str,
    preferred: MethodKind = MethodKind.INSTANT_ID,
    prompt: str = "",
    negative_prompt: str = "",
    seed: Optional[int] = None,
) -> Plan:
    """The host's default decision (`policy.default-plan`): `none` without a diffusion pack,
    `controlnet` for no face, a group or a tiny face, else the `preferred` identity method
    with fallbacks. `look` names the style in the reason sentence. Adjust what it returns, or
    build your own `Plan`."""
    preferences = _policy.Preferences(look, preferred, prompt, negative_prompt, seed)
    return _policy.default_plan(analysis, capabilities, preferences)


def plan_none(reason: str) -> Plan:
    """A plan without a neural network: `post_process` gets the photo itself."""
    return Plan(NoMethod(), [], [], None, reason)


# ---- images on the host's canvas ----


def rgb(colour: str, alpha: int = 255) -> Rgba:
    """`rgb("#ffcc00")`: a colour from its hex code."""
    code = colour.lstrip("#")
    return Rgba(int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16), alpha)


def grey(image: Image) -> Image:
    """The image's luma as a grey image."""
    return image.adjust(0.0, 1.0, 0.0)


def threshold(image: Image, level: float, softness: float = 0.02) -> Image:
    """A mask: white where the luma is above `level` (0..1), black below, with a soft step
    about `softness` wide (at least 1/256)."""
    mask = grey(image).adjust(0.5 - level, 1.0, 1.0)
    gain = 1.0 / max(softness, 1.0 / 256.0)
    while gain > 1.0:
        step = min(gain, 16.0)
        mask = mask.adjust(0.0, step, 1.0)
        gain /= step
    return mask


def tone_map(image: Image, colours: Sequence[Rgba], levels: Optional[Sequence[float]] = None, softness: float = 0.02) -> Image:
    """Flat colour regions: the darkest tones of `image` become `colours[0]`, the lightest
    `colours[-1]`, split at `levels` (default: evenly)."""
    count = len(colours)
    if levels is None:
        levels = [k / count for k in range(1, count)]
    width, height = image.width(), image.height()
    out = Image.filled(width, height, colours[0])
    for colour, level in zip(colours[1:], levels):
        out = out.composite(Image.filled(width, height, colour), threshold(image, level, softness))
    return out


def pattern(width: int, height: int, period: Tuple[int, int], value: Callable[[int, int], float]) -> Image:
    """A grey image repeating one `period` (width, height) tile whose pixel (x, y) has the
    grey `value(x, y)` in 0..1: halftone screens, hatching, paper. The tile is computed once
    and repeated natively, so a large pattern costs no more than its tile."""
    pw, ph = period
    rows = []
    for y in range(ph):
        row = bytearray()
        for x in range(pw):
            g = max(0, min(255, int(value(x, y) * 255.0 + 0.5)))
            row += bytes((g, g, g, 255))
        repeats = width // pw + 1
        rows.append(bytes(row * repeats)[: width * 4])
    return Image(width, height, b"".join(rows[y % ph] for y in range(height)))


def working_copy(image: Image, max_side: int) -> Tuple[Image, bool]:
    """`image` shrunk so its longer side is at most `max_side` (the work is cheaper, and
    filter sizes stay in proportion), and whether it was shrunk; resize the result back with
    `image.resize(Size(w, h), False)`."""
    width, height = image.width(), image.height()
    longest = max(width, height)
    if longest <= max_side:
        return image, False
    scale = max_side / longest
    size = Size(max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, False), True
