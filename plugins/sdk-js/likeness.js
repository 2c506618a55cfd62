// The Likeness style SDK for JavaScript (contract `likeness:style@0.2.0`, `wit/style.wit`).
//
// A JavaScript style is a folder with `style.toml` and `app.js`; `app.js` exports `style`, an
// object with the three calls of the contract. `likeness styles build` turns it into a
// component with componentize-js and puts this module beside it, at `../sdk-js/likeness.js`
// (as in the repository's `plugins/`):
//
//     import * as lk from "../sdk-js/likeness.js";
//
//     const PARAMS = [lk.caption(), lk.seed(), lk.number("grain", "Paper grain, 0 to 1.", 0.5, 0, 1)];
//
//     export const style = {
//       describe: () => lk.styleInfo("my-look", "My look", "0.1.0", "One sentence.", PARAMS),
//       choosePlan(analysis, capabilities, options) {
//         const opts = new lk.Options(options);
//         return lk.defaultPlan(analysis, capabilities, {
//           look: "my look",
//           prompt: lk.render("a portrait of {caption}", { caption: opts.caption() }),
//           seed: opts.seed(),
//         });
//       },
//       postProcess: (image, analysis, plan, options) => image.smooth(4, 0.01),
//     };
//
// The helpers are the same in the Rust and Python SDKs: typed options (`Options`, the
// parameter builders), prompt templates (`render`, `sanitize`), the host's default decision
// (`defaultPlan`), plans without diffusion (`planNone`), errors (`invalidOptions`, ...),
// logging, and image helpers on the host's native canvas (`grey`, `threshold`, `toneMap`,
// `pattern`, `workingCopy`, `rgb`, `dispose`).
//
// How the contract looks in JavaScript: records are objects with camelCase fields; enums are
// strings ("instant-id"); variants are `{ tag, val }`; `option<T>` is the value or
// `undefined`; 64-bit integers (seeds, integer options) are BigInts; `list<u8>` is a
// Uint8Array; the canvas image is the class `Image`.

import { log as hostLog } from "likeness:style/log@0.2.0";
import { Image } from "likeness:style/canvas@0.2.0";
import { defaultPlan as hostDefaultPlan } from "likeness:style/policy@0.2.0";

export { Image };

// ---- errors: throw what these return ----

/** A style's own failure; `payload` is the contract's `style-error`. */
export class StyleError extends Error {
  constructor(tag, message) {
    super(message ?? tag);
    this.payload = message === undefined ? { tag } : { tag, val: message };
  }
}

/** `throw invalidOptions("...")`: options that break a rule their specs cannot express (HTTP 400). */
export const invalidOptions = (message) => new StyleError("invalid-options", message);
/** `throw unusableInput("...")`: the photo cannot be styled (HTTP 422). */
export const unusableInput = (message) => new StyleError("unusable-input", message);
/** `throw internal("...")`: a bug or broken asset; the message goes to the log only. */
export const internal = (message) => new StyleError("internal", message);

// ---- logging ----

/** Sends messages to the host's log: `log.info("...")`, `log.warn(...)`, ... */
export const log = Object.fromEntries(
  ["trace", "debug", "info", "warn", "error"].map((level) => [level, (message) => hostLog(level, String(message))]),
);

// ---- parameters and typed options ----

/** The most characters a user-supplied text keeps in a prompt. */
export const MAX_TEXT_CHARS = 200;
/** The largest seed a client may send. */
export const MAX_SEED = 2n ** 63n - 1n;

const value = (v) => {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "boolean") return { tag: "boolean", val: v };
  if (typeof v === "bigint") return { tag: "integer", val: v };
  if (typeof v === "number") return { tag: "number", val: v };
  return { tag: "text", val: String(v) };
};

const spec = (name, description, kind, defaultValue) => ({ name, description, kind, defaultValue });

/** A free-text parameter of at most `maxChars` characters. */
export const text = (name, description, defaultValue = "", maxChars = MAX_TEXT_CHARS) =>
  spec(name, description, { tag: "text", val: maxChars }, value(defaultValue));

/** A whole-number parameter within `min..=max`; `defaultValue` undefined makes it optional. */
export const integer = (name, description, defaultValue, min, max) =>
  spec(
    name,
    description,
    { tag: "integer", val: { min: BigInt(min), max: BigInt(max) } },
    defaultValue === undefined ? undefined : value(BigInt(defaultValue)),
  );

/** A number parameter within `min..=max`. */
export const number = (name, description, defaultValue, min, max) =>
  spec(name, description, { tag: "number", val: { min, max } }, value(defaultValue === undefined ? undefined : Number(defaultValue)));

/** A true/false parameter. */
export const boolean = (name, description, defaultValue) =>
  spec(name, description, { tag: "boolean" }, value(defaultValue));

/** One of `choices` (a text option). */
export const choice = (name, description, choices, defaultValue) =>
  spec(name, description, { tag: "choice", val: [...choices] }, value(defaultValue));

/** The `caption` parameter every style takes: what the picture shows, for the prompt. */
export const caption = () => text("caption", "What the picture shows, in a few words; goes into the prompt.", "a person");

/** The `seed` parameter every style takes: unset lets the host choose. */
export const seed = () =>
  integer("seed", `Noise seed (0 to ${MAX_SEED}) for a repeatable result; unset lets the server choose.`, undefined, 0n, MAX_SEED);

/**
 * A request's options, typed: the host has checked them against the specs and applied the
 * defaults, so every declared parameter with a default is present with its type.
 */
export class Options {
  constructor(options) {
    this.values = new Map(options.map(([name, v]) => [name, v.val]));
  }
  /** The raw value of `name` (string, BigInt, number or boolean), or `fallback` when unset. */
  get(name, fallback) {
    return this.values.has(name) ? this.values.get(name) : fallback;
  }
  has(name) {
    return this.values.has(name);
  }
  /** A text or choice option. */
  text(name, fallback = "") {
    return String(this.get(name, fallback));
  }
  /** An integer option, as a Number (use `get` for the exact BigInt). */
  integer(name, fallback) {
    const v = this.get(name, fallback);
    return v === undefined ? undefined : Number(v);
  }
  /** A number option. */
  number(name, fallback) {
    const v = this.get(name, fallback);
    return v === undefined ? undefined : Number(v);
  }
  /** A boolean option. */
  boolean(name, fallback = false) {
    return Boolean(this.get(name, fallback));
  }
  /** The `caption` option, cleaned for a prompt. */
  caption() {
    return sanitize(this.text("caption")) || "a person";
  }
  /** The `seed` option as a BigInt; undefined lets the host choose. */
  seed() {
    const v = this.get("seed");
    return v === undefined ? undefined : BigInt(v);
  }
}

// ---- prompts ----

/**
 * Cleans user text for a prompt: control characters and runs of white space become one
 * space, the ends are trimmed, and the result is cut to at most `maxChars` characters.
 */
export function sanitize(input, maxChars = MAX_TEXT_CHARS) {
  // eslint-disable-next-line no-control-regex
  const words = String(input).replace(/[\u0000-\u001f\u007f-\u009f]/g, " ").split(/\s+/).filter(Boolean);
  let out = "";
  for (const word of words) {
    const joined = out ? `${out} ${word}` : word;
    const chars = [...joined];
    if (chars.length > maxChars) return chars.slice(0, maxChars).join("").trimEnd();
    out = joined;
  }
  return out;
}

/**
 * Fills the `{name}` slots of `template` with `values`, each cleaned with `sanitize`; other
 * braces stay as written. Values are inserted once, never expanded again.
 */
export function render(template, values) {
  let out = "";
  let rest = template;
  for (;;) {
    const open = rest.indexOf("{");
    if (open < 0) break;
    out += rest.slice(0, open);
    const after = rest.slice(open + 1);
    const close = after.indexOf("}");
    const name = close < 0 ? undefined : after.slice(0, close);
    if (name !== undefined && Object.hasOwn(values, name)) {
      out += sanitize(values[name]);
      rest = after.slice(close + 1);
    } else {
      out += "{";
      rest = after;
    }
  }
  return out + rest;
}

// ---- plans ----

/** The `describe()` answer; id, name, version and description must agree with `style.toml`. */
export const styleInfo = (id, name, version, description, params) => ({ id, name, version, description, params: [...params] });

/**
 * The host's default decision (`policy.default-plan`): `none` without a diffusion pack,
 * `controlnet` for no face, a group or a tiny face, else the `preferred` identity method
 * ("instant-id" or "pulid") with fallbacks. `look` names the style in the reason sentence.
 */
export function defaultPlan(analysis, capabilities, { look, preferred = "instant-id", prompt = "", negativePrompt = "", seed } = {}) {
  return hostDefaultPlan(analysis, capabilities, { look, preferred, prompt, negativePrompt, seed });
}

/** A plan without a neural network: `postProcess` gets the photo itself. */
export const planNone = (reason) => ({ method: { tag: "none" }, fallbacks: [], referenceFaces: [], identityGate: undefined, reason });

/** The kind of a plan's method, e.g. `kind(plan.method) === "none"`. */
export const kind = (method) => method.tag;

// ---- images on the host's canvas ----

/** `rgb("#ffcc00")`: a colour from its hex code. */
export function rgb(code, a = 255) {
  const hex = code.replace(/^#/, "");
  return { r: parseInt(hex.slice(0, 2), 16), g: parseInt(hex.slice(2, 4), 16), b: parseInt(hex.slice(4, 6), 16), a };
}

/**
 * Frees host images now instead of at the next garbage collection: their pixels count against
 * the style's memory limit until they are freed.
 */
export function dispose(...images) {
  for (const image of images) image?.[Symbol.dispose]?.();
}

/** The image's luma as a grey image. */
export const grey = (image) => image.adjust(0, 1, 0);

/**
 * A mask: white where the luma is above `level` (0..1), black below, with a soft step about
 * `softness` wide (at least 1/256).
 */
export function threshold(image, level, softness = 0.02) {
  const g = grey(image);
  let mask = g.adjust(0.5 - level, 1, 1);
  dispose(g);
  let gain = 1 / Math.max(softness, 1 / 256);
  while (gain > 1) {
    const step = Math.min(gain, 16);
    const next = mask.adjust(0, step, 1);
    dispose(mask);
    mask = next;
    gain /= step;
  }
  return mask;
}

/**
 * Flat colour regions: the darkest tones of `image` become `colours[0]`, the lightest the last
 * colour, split at `levels` (default: evenly).
 */
export function toneMap(image, colours, levels, softness = 0.02) {
  const count = colours.length;
  levels ??= colours.slice(1).map((_, k) => (k + 1) / count);
  const [width, height] = [image.width(), image.height()];
  let out = Image.filled(width, height, colours[0]);
  colours.slice(1).forEach((colour, k) => {
    const top = Image.filled(width, height, colour);
    const mask = threshold(image, levels[k], softness);
    const next = out.composite(top, mask);
    dispose(out, top, mask);
    out = next;
  });
  return out;
}

/**
 * A grey image repeating one `[pw, ph]` tile whose pixel (x, y) has the grey `value(x, y)` in
 * 0..1: halftone screens, hatching, paper. The tile is computed once and repeated with native
 * copies, so a large pattern costs little more than its tile.
 */
export function pattern(width, height, [pw, ph], valueAt) {
  const rows = [];
  for (let y = 0; y < ph; y++) {
    const row = new Uint8Array(width * 4);
    const tile = Math.min(pw, width);
    for (let x = 0; x < tile; x++) {
      const g = Math.max(0, Math.min(255, Math.round(valueAt(x, y) * 255)));
      row.set([g, g, g, 255], x * 4);
    }
    // Double the filled part until the row is full.
    for (let filled = tile * 4; filled < row.length; filled *= 2) {
      row.copyWithin(filled, 0, Math.min(filled, row.length - filled));
    }
    rows.push(row);
  }
  const pixels = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) pixels.set(rows[y % ph], y * width * 4);
  return new Image(width, height, pixels);
}

/**
 * `image` shrunk so its longer side is at most `maxSide` (cheaper work, filter sizes in
 * proportion) and whether it was; resize the result back with
 * `image.resize({ width, height }, false)`.
 */
export function workingCopy(image, maxSide) {
  const [width, height] = [image.width(), image.height()];
  const longest = Math.max(width, height);
  if (longest <= maxSide) return [image, false];
  const scale = maxSide / longest;
  const size = { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
  return [image.resize(size, false), true];
}
