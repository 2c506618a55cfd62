// The sketch style: a pencil or ink drawing of the portrait, written in JavaScript.
//
// With diffusion it prefers InstantID (line drawings keep a likeness well with it) and falls back
// to ControlNet, as the host's default decision says. Without diffusion (method `none`) the
// post-process draws the look from the photo with the host's native canvas operations: contour
// lines from the edges, hatching whose strokes thicken in the shadows, a second layer of
// cross-hatching in the darkest parts, on a grained paper.

import * as lk from "../sdk-js/likeness.js";
import { Image } from "../sdk-js/likeness.js";

const ID = "sketch";
const NAME = "Sketch";
const VERSION = "0.1.0";
const DESCRIPTION = "Turns the portrait into a pencil or ink sketch: confident contour lines and hatched shading on paper.";
const PROMPT = "pencil sketch portrait of {caption}, graphite drawing, confident contour lines, cross-hatching, sketchbook paper, monochrome, fine art drawing";
const NEGATIVE = "photo, photorealistic, colour, painting, blurry, smudged, 3d render, deformed face, watermark, text, signature";

/** The media: paper, the hatching's and the lines' colours, how hard the lines are. */
const MEDIA = {
  pencil: { paper: "#f3eee3", shade: "#6d6a66", dark: "#3f3c39", line: "#2a2826", hardness: 0.09 },
  ink: { paper: "#fbfaf6", shade: "#2b2d42", dark: "#1b1c2b", line: "#0d0d14", hardness: 0.04 },
  sepia: { paper: "#f1e4cc", shade: "#8a5a3b", dark: "#5e3a22", line: "#3b2414", hardness: 0.07 },
};

const MEDIUM = "medium";
const SHADING = "shading";
const LINE_WEIGHT = "line-weight";

const PARAMS = [
  lk.caption(),
  lk.seed(),
  lk.choice(MEDIUM, "What the sketch is drawn with when drawn without diffusion.", Object.keys(MEDIA), "pencil"),
  lk.number(SHADING, "How much of the shadows is hatched, 0 (contours only) to 1.", 0.6, 0, 1),
  lk.number(LINE_WEIGHT, "How bold the contour lines are, 0 (faint) to 1.", 0.6, 0, 1),
];

/** The long side the sketch is drawn at; larger photos are worked on shrunk and scaled back. */
const WORKING_SIDE = 1280;

/**
 * A hatching screen: parallel strokes `spacing` pixels apart along a diagonal (`direction` 1 or
 * -1), as the darkness (0..1) a pixel needs to be inked: strokes thicken as the tone darkens.
 */
function hatching(width, height, spacing, direction) {
  return lk.pattern(width, height, [spacing, spacing], (x, y) => {
    const t = (((x + direction * y) % spacing) + spacing) % spacing;
    return Math.abs(t / spacing - 0.5) * 2;
  });
}

/**
 * A mask, white where `tone`'s darkness (after `lift`, which lightens so only darker tones
 * reach the strokes) exceeds the `screen`: paper elsewhere.
 */
function inked(tone, screen, lift) {
  const lifted = tone.adjust(lift, 1, 1);
  const mixed = lifted.blend(screen, "normal", 0.5);
  // Paper where light + need > 1; the mask is white where there is ink.
  const paper = lk.threshold(mixed, 0.5, 0.05);
  const ink = Image.filled(tone.width(), tone.height(), lk.rgb("#ffffff")).composite(Image.filled(tone.width(), tone.height(), lk.rgb("#000000")), paper);
  lk.dispose(lifted, mixed, paper);
  return ink;
}

/** The whole look, drawn from `photo`. */
function draw(photo, medium, shading, lineWeight) {
  const [width, height] = [photo.width(), photo.height()];
  const scale = Math.max(Math.min(width, height) / 1024, 0.125);
  const px = (v) => Math.max(1, Math.round(v * scale));

  const smooth = photo.smooth(px(5), 0.01);
  const tone = lk.grey(smooth).adjust(0.04, 1.2, 1);

  // Paper with a faint grain.
  const grain = Image.noise(width, height, px(2), 7n);
  const paper = Image.filled(width, height, lk.rgb(medium.paper)).blend(grain, "multiply", 0.08);
  let out = paper;

  // Hatching in the shadows, then cross-hatching in the darkest parts; more shading lifts
  // less, so lighter tones are hatched too.
  const spacing = Math.max(4, px(10));
  const layers = [
    { screen: hatching(width, height, spacing, 1), lift: 0.5 - 0.35 * shading, colour: medium.shade },
    { screen: hatching(width, height, spacing, -1), lift: 0.72 - 0.3 * shading, colour: medium.dark },
  ];
  if (shading > 0) {
    for (const layer of layers) {
      const ink = inked(tone, layer.screen, layer.lift);
      const soft = ink.blur(Math.max(0.5, 0.6 * scale));
      const next = out.composite(Image.filled(width, height, lk.rgb(layer.colour)), soft);
      lk.dispose(ink, soft, out, layer.screen);
      out = next;
    }
  }

  // Contours: the strong edges of the smoothed photo, drawn bold, and its finer edges, light.
  const contour = smooth.edges(Math.max(0.8, 1.3 * scale));
  const bold = lk.threshold(contour, 0.2 - 0.12 * lineWeight, medium.hardness);
  const boldLines = bold.blur(Math.max(0.6, 0.9 * scale));
  const detail = photo.edges(Math.max(0.6, 0.8 * scale));
  const fine = lk.threshold(detail, 0.3 - 0.12 * lineWeight, 0.12);
  const withDetail = out.composite(Image.filled(width, height, lk.rgb(medium.shade)), fine);
  const drawn = withDetail.composite(Image.filled(width, height, lk.rgb(medium.line)), boldLines);
  lk.dispose(contour, bold, boldLines, detail, fine, withDetail);
  lk.dispose(smooth, tone, grain, out);
  return drawn;
}

export const style = {
  describe() {
    return lk.styleInfo(ID, NAME, VERSION, DESCRIPTION, PARAMS);
  },

  choosePlan(analysis, capabilities, options) {
    const opts = new lk.Options(options);
    return lk.defaultPlan(analysis, capabilities, {
      look: "sketch",
      preferred: "instant-id",
      prompt: lk.render(PROMPT, { caption: opts.caption() }),
      negativePrompt: NEGATIVE,
      seed: opts.seed(),
    });
  },

  postProcess(image, analysis, plan, options) {
    const opts = new lk.Options(options);
    if (lk.kind(plan.method) !== "none") {
      // Diffusion drew the sketch: keep it monochrome.
      return image.adjust(0, 1.05, 0);
    }
    const [work, shrunk] = lk.workingCopy(image, WORKING_SIDE);
    const medium = MEDIA[opts.text(MEDIUM, "pencil")] ?? MEDIA.pencil;
    let out = draw(work, medium, opts.number(SHADING, 0.6), opts.number(LINE_WEIGHT, 0.6));
    if (shrunk) {
      const full = out.resize({ width: image.width(), height: image.height() }, false);
      lk.dispose(out, work);
      out = full;
    }
    return out;
  },
};
