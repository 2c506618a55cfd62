//! Running a plan: the planned method first, then its fallbacks in order when it cannot run for
//! this request (no usable embedding, missing keypoints, a pack part failing at run time) or,
//! after a diffusion method, when the identity gate is not passed within the gate's attempts
//! (a new seed each) and the time budget. A style transfer below the gate's threshold is
//! retried the same way, each attempt with more face preservation, and then answers its best. The pipeline makes each image (method, post-process,
//! identity score); the [`Executor`] decides what to try next and what to answer, and says
//! what happened in words for the response's reason.

use std::time::{Duration, Instant};

use likeness_contract::{IdentityGate, Method, MethodKind, Plan};

use crate::identity::Identity;
use crate::wasm::Image;

/// Longest cause of a failed method quoted in the reason, in bytes.
const MAX_CAUSE: usize = 200;

/// One image to make: a method of the plan, its seed moved on (diffusion) or its face
/// preservation raised (style transfer) for a retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Try {
    /// The method with this attempt's settings.
    pub method: Method,
    /// 1 for the method's first attempt, 2 for its first retry, ...
    pub attempt: u32,
}

/// What making a [`Try`]'s image gave.
#[derive(Debug)]
pub enum Made {
    /// The finished image and how much identity it kept.
    Image {
        /// The post-processed image.
        image: Image,
        /// Its identity score (without the gate's verdict; the executor adds it).
        identity: Identity,
    },
    /// The method cannot run for this request: why.
    Unrunnable(String),
}

/// The answer to a generation.
#[derive(Debug)]
pub struct Executed {
    /// The method that made the answered image.
    pub method: Method,
    /// The image.
    pub image: Image,
    /// Its identity score, with the gate's threshold and verdict and the attempts made.
    pub identity: Identity,
    /// What happened besides the plan running as planned (fallbacks, retries, the gate), as a
    /// sentence for the reason; none when the planned method ran once and passed.
    pub story: Option<String>,
}

/// The best image made so far.
#[derive(Debug)]
struct Best {
    method: Method,
    image: Image,
    identity: Identity,
}

/// Decides, image by image, what the host runs for a plan.
#[derive(Debug)]
pub struct Executor {
    /// The methods not yet given up, the current one first.
    methods: std::collections::VecDeque<Method>,
    /// Attempts of the current method so far.
    attempt: u32,
    /// The best score among the current method's attempts.
    method_best: f32,
    gate: Option<IdentityGate>,
    budget: Duration,
    started: Instant,
    /// The longest attempt so far: a retry starts only if one more fits the budget.
    slowest: Duration,
    /// Images made (and scored).
    made: u32,
    best: Option<Best>,
    /// What happened, in clauses.
    events: Vec<String>,
    done: bool,
}

impl Executor {
    /// An executor for `plan`, retrying within `budget` from `started`.
    pub fn new(plan: &Plan, budget: Duration, started: Instant) -> Executor {
        let mut methods: std::collections::VecDeque<Method> =
            plan.fallbacks.iter().cloned().collect();
        methods.push_front(plan.method.clone());
        Executor {
            methods,
            attempt: 0,
            method_best: 0.0,
            gate: plan.identity_gate,
            budget,
            started,
            slowest: Duration::ZERO,
            made: 0,
            best: None,
            events: Vec::new(),
            done: false,
        }
    }

    /// The next image to make at `now`, or `None` when the answer is decided.
    pub fn next(&mut self, now: Instant) -> Option<Try> {
        if self.done {
            return None;
        }
        let method = self.methods.front()?.clone();
        // Once there is an image to answer, another one is made only if it fits the budget.
        if self.best.is_some() && now.duration_since(self.started) + self.slowest > self.budget {
            self.events.push(format!(
                "the {} s for retries were spent",
                self.budget.as_secs_f32().round()
            ));
            self.done = true;
            return None;
        }
        self.attempt += 1;
        Some(Try {
            method: for_attempt(method, self.attempt),
            attempt: self.attempt,
        })
    }

    /// What making `tried`'s image gave, and how long it took.
    pub fn record(&mut self, tried: Try, made: Made, took: Duration) {
        self.slowest = self.slowest.max(took);
        let kind = tried.method.kind();
        let (image, identity) = match made {
            Made::Unrunnable(why) => {
                self.events.push(format!(
                    "{} could not run ({})",
                    kind.name(),
                    cut(why.trim_end_matches('.'))
                ));
                self.next_method();
                return;
            }
            Made::Image { image, identity } => (image, identity),
        };
        self.made += 1;
        let score = identity.report().map(|r| r.score);
        if self.best.as_ref().is_none_or(|best| {
            score.unwrap_or(0.0) > best.identity.report().map_or(0.0, |r| r.score)
        }) {
            self.best = Some(Best {
                method: tried.method,
                image,
                identity,
            });
        }
        let (Some(gate), Some(score)) = (self.gate, score) else {
            // No gate, or nothing to judge (the photo has no face): the image is the answer.
            self.done = true;
            return;
        };
        if score >= gate.threshold {
            self.done = true;
            return;
        }
        self.method_best = self.method_best.max(score);
        if self.attempt < retries(kind, gate) {
            if let Some(Method::StyleTransfer(next)) = self
                .methods
                .front()
                .map(|m| for_attempt(m.clone(), self.attempt + 1))
            {
                self.events.push(format!(
                    "style-transfer attempt {} scored {score:.2}, below the identity threshold {:.2}, so it ran again with face preservation {:.2}",
                    self.attempt, gate.threshold, next.face_preservation
                ));
            }
            return;
        }
        self.events.push(format!(
            "{} {} {} scored below the identity threshold {:.2} (best {:.2})",
            self.attempt,
            kind.name(),
            if self.attempt == 1 {
                "attempt"
            } else {
                "attempts"
            },
            gate.threshold,
            self.method_best
        ));
        if kind.is_diffusion() {
            self.next_method();
        } else {
            // none and style-transfer answer with their best score.
            self.done = true;
        }
    }

    fn next_method(&mut self) {
        self.methods.pop_front();
        self.attempt = 0;
        self.method_best = 0.0;
    }

    /// The answer: the image that passed, or else the best one made; `Err` with the story
    /// when no method of the plan could run.
    pub fn finish(self, planned: MethodKind) -> Result<Executed, String> {
        let Executor {
            gate,
            made,
            best,
            mut events,
            ..
        } = self;
        let Some(Best {
            method,
            image,
            mut identity,
        }) = best
        else {
            events.push("no method of the plan could run".into());
            return Err(sentence(&events));
        };
        let mut passed = None;
        if let Identity::Scored(report) = &mut identity {
            report.threshold = gate.map(|g| g.threshold);
            report.passed = gate.map(|g| report.score >= g.threshold);
            report.attempts = made;
            passed = report.passed;
        }
        if passed == Some(false) {
            let score = identity.report().map_or(0.0, |r| r.score);
            events.push(format!(
                "no image reached it, so the best ({}, {score:.2}) is answered",
                method.kind().name()
            ));
        } else if method.kind() != planned
            && let Some(last) = events.last_mut()
        {
            last.push_str(&format!(", so {} ran instead", method.kind().name()));
        }
        let story = (!events.is_empty()).then(|| sentence(&events));
        Ok(Executed {
            method,
            image,
            identity,
            story,
        })
    }
}

/// How many attempts of a `kind` method the gate allows. Diffusion methods retry with new
/// seeds and style transfer with more face preservation; `none` makes one image (another
/// would be the same).
fn retries(kind: MethodKind, gate: IdentityGate) -> u32 {
    match kind {
        MethodKind::None => 1,
        _ => gate.attempts.max(1),
    }
}

/// `method` for its `attempt`: a retry moves a planned seed on by one per attempt (a plan
/// without a seed gets a new random one from the host each time anyway), and halves what a
/// style transfer leaves of the styling inside the faces (preservation `p` becomes
/// `1 - (1 - p) / 2`, then `1 - (1 - p) / 4`, ...).
fn for_attempt(mut method: Method, attempt: u32) -> Method {
    match &mut method {
        Method::InstantId(d) | Method::Pulid(d) | Method::Controlnet(d) => {
            d.seed = d.seed.map(|seed| seed.wrapping_add(u64::from(attempt - 1)));
        }
        Method::StyleTransfer(t) if attempt > 1 => {
            let kept =
                (1.0 - t.face_preservation.clamp(0.0, 1.0)) * 0.5f32.powi(attempt as i32 - 1);
            t.face_preservation = 1.0 - kept;
        }
        Method::StyleTransfer(_) | Method::None => {}
    }
    method
}

/// `text` cut to [`MAX_CAUSE`] bytes on a character boundary.
fn cut(text: &str) -> String {
    if text.len() <= MAX_CAUSE {
        return text.to_string();
    }
    let mut end = MAX_CAUSE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The clauses as one sentence for the reason: "At run time, a; b.".
fn sentence(clauses: &[String]) -> String {
    format!("At run time, {}.", clauses.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityReport;
    use likeness_contract::Diffusion;

    fn diffusion(seed: Option<u64>) -> Diffusion {
        Diffusion {
            prompt: "p".into(),
            negative_prompt: String::new(),
            control_maps: Vec::new(),
            identity_weight: 0.8,
            steps: 2,
            guidance: 1.0,
            size: None,
            seed,
        }
    }

    fn plan(gate: Option<(f32, u32)>) -> Plan {
        Plan {
            method: Method::InstantId(diffusion(Some(7))),
            fallbacks: vec![Method::Controlnet(diffusion(Some(7))), Method::None],
            reference_faces: Vec::new(),
            identity_gate: gate.map(|(threshold, attempts)| IdentityGate {
                threshold,
                attempts,
            }),
            reason: "one clear face".into(),
        }
    }

    fn image(tag: u8) -> Image {
        Image {
            width: 1,
            height: 1,
            rgba: vec![tag, 0, 0, 255],
        }
    }

    fn scored(score: f32) -> Identity {
        Identity::Scored(IdentityReport {
            score,
            reference_face: 0,
            threshold: None,
            passed: None,
            attempts: 1,
            output_face: None,
            note: None,
        })
    }

    /// Runs `executor` to the end, each try answered by `make`; returns the tries.
    fn drive(executor: &mut Executor, make: impl Fn(&Try) -> Made) -> Vec<(MethodKind, u32)> {
        let mut tries = Vec::new();
        let now = Instant::now();
        while let Some(t) = executor.next(now) {
            tries.push((t.method.kind(), t.attempt));
            let made = make(&t);
            executor.record(t, made, Duration::from_millis(10));
            assert!(tries.len() < 100, "no end");
        }
        tries
    }

    #[test]
    fn a_plan_that_runs_and_passes_is_answered_at_once() {
        let mut executor = Executor::new(
            &plan(Some((0.5, 3))),
            Duration::from_secs(60),
            Instant::now(),
        );
        let tries = drive(&mut executor, |_| Made::Image {
            image: image(1),
            identity: scored(0.7),
        });
        assert_eq!(tries, vec![(MethodKind::InstantId, 1)]);
        let done = executor.finish(MethodKind::InstantId).unwrap();
        assert_eq!(done.method.kind(), MethodKind::InstantId);
        assert_eq!(done.story, None);
        let report = done.identity.report().unwrap();
        assert_eq!(
            (report.threshold, report.passed, report.attempts),
            (Some(0.5), Some(true), 1)
        );
    }

    #[test]
    fn an_unrunnable_method_falls_back_and_says_why() {
        let mut executor = Executor::new(&plan(None), Duration::from_secs(60), Instant::now());
        let tries = drive(&mut executor, |t| match t.method.kind() {
            MethodKind::InstantId => {
                Made::Unrunnable("identitynet: the model failed to load.".into())
            }
            _ => Made::Image {
                image: image(2),
                identity: scored(0.1),
            },
        });
        assert_eq!(
            tries,
            vec![(MethodKind::InstantId, 1), (MethodKind::Controlnet, 1)]
        );
        let done = executor.finish(MethodKind::InstantId).unwrap();
        assert_eq!(done.method.kind(), MethodKind::Controlnet);
        assert_eq!(
            done.story.as_deref(),
            Some(
                "At run time, instant-id could not run (identitynet: the model failed to load), so controlnet ran instead."
            )
        );
        let report = done.identity.report().unwrap();
        assert_eq!((report.threshold, report.passed), (None, None));
    }

    #[test]
    fn an_unreachable_threshold_retries_each_diffusion_method_then_answers_the_best() {
        let mut executor = Executor::new(
            &plan(Some((0.99, 3))),
            Duration::from_secs(60),
            Instant::now(),
        );
        let seeds = std::cell::RefCell::new(Vec::new());
        let tries = drive(&mut executor, |t| {
            seeds
                .borrow_mut()
                .push(t.method.diffusion().and_then(|d| d.seed));
            let score = match (t.method.kind(), t.attempt) {
                (MethodKind::InstantId, 2) => 0.6,
                (MethodKind::None, _) => 0.4,
                _ => 0.1,
            };
            Made::Image {
                image: image(t.attempt as u8),
                identity: scored(score),
            }
        });
        use MethodKind::*;
        assert_eq!(
            tries,
            vec![
                (InstantId, 1),
                (InstantId, 2),
                (InstantId, 3),
                (Controlnet, 1),
                (Controlnet, 2),
                (Controlnet, 3),
                (None, 1)
            ]
        );
        assert_eq!(
            seeds.into_inner(),
            vec![
                Some(7),
                Some(8),
                Some(9),
                Some(7),
                Some(8),
                Some(9),
                Option::None
            ]
        );
        let done = executor.finish(InstantId).unwrap();
        assert_eq!(done.method.kind(), InstantId);
        assert_eq!(done.image.rgba[0], 2, "the best attempt is answered");
        let report = done.identity.report().unwrap();
        assert_eq!((report.passed, report.attempts), (Some(false), 7));
        let story = done.story.unwrap();
        assert!(story.starts_with("At run time, 3 instant-id attempts scored below the identity threshold 0.99 (best 0.60); 3 controlnet attempts"), "{story}");
        assert!(story.ends_with("1 none attempt scored below the identity threshold 0.99 (best 0.40); no image reached it, so the best (instant-id, 0.60) is answered."), "{story}");
    }

    #[test]
    fn threshold_zero_never_retries() {
        let mut executor = Executor::new(
            &plan(Some((0.0, 5))),
            Duration::from_secs(60),
            Instant::now(),
        );
        let tries = drive(&mut executor, |_| Made::Image {
            image: image(1),
            identity: scored(0.0),
        });
        assert_eq!(tries.len(), 1);
        assert_eq!(
            executor
                .finish(MethodKind::InstantId)
                .unwrap()
                .identity
                .report()
                .unwrap()
                .passed,
            Some(true)
        );
    }

    #[test]
    fn retries_stop_when_the_budget_is_spent() {
        let started = Instant::now();
        let mut executor = Executor::new(&plan(Some((0.99, 5))), Duration::from_secs(10), started);
        let first = executor.next(started).unwrap();
        executor.record(
            first,
            Made::Image {
                image: image(1),
                identity: scored(0.2),
            },
            Duration::from_secs(4),
        );
        // 4 s in, a 4 s attempt still fits the 10 s; at 7 s it does not.
        assert!(
            executor
                .next(started + Duration::from_secs(4))
                .is_some_and(|t| t.attempt == 2)
        );
        let second = Try {
            method: plan(None).method,
            attempt: 2,
        };
        executor.record(
            second,
            Made::Image {
                image: image(2),
                identity: scored(0.3),
            },
            Duration::from_secs(3),
        );
        assert_eq!(executor.next(started + Duration::from_secs(7)), None);
        let done = executor.finish(MethodKind::InstantId).unwrap();
        assert_eq!(done.image.rgba[0], 2);
        assert!(
            done.story
                .unwrap()
                .starts_with("At run time, the 10 s for retries were spent; no image reached it")
        );
    }

    fn transfer(face_preservation: f32) -> Method {
        Method::StyleTransfer(likeness_contract::Transfer {
            learned_styles: vec![("style-07".into(), 1.0)],
            style_picture: None,
            strength: 1.0,
            working_side: None,
            face_preservation,
        })
    }

    #[test]
    fn a_style_transfer_below_the_threshold_retries_with_more_face_preservation() {
        let mut p = plan(Some((0.6, 3)));
        p.method = transfer(0.2);
        p.fallbacks = vec![Method::None];
        let mut executor = Executor::new(&p, Duration::from_secs(60), Instant::now());
        let preservation = std::cell::RefCell::new(Vec::new());
        let tries = drive(&mut executor, |t| {
            let Method::StyleTransfer(settings) = &t.method else {
                panic!("{:?} ran", t.method.kind());
            };
            preservation.borrow_mut().push(settings.face_preservation);
            Made::Image {
                image: image(t.attempt as u8),
                identity: scored([0.3, 0.5, 0.4][t.attempt as usize - 1]),
            }
        });
        use MethodKind::StyleTransfer;
        assert_eq!(
            tries,
            vec![(StyleTransfer, 1), (StyleTransfer, 2), (StyleTransfer, 3)],
            "style transfer answers its best rather than falling back to none"
        );
        assert_eq!(preservation.into_inner(), vec![0.2, 0.6, 0.8]);
        let done = executor.finish(StyleTransfer).unwrap();
        assert_eq!(done.image.rgba[0], 2, "the best attempt is answered");
        let story = done.story.unwrap();
        assert!(
            story.starts_with("At run time, style-transfer attempt 1 scored 0.30, below the identity threshold 0.60, so it ran again with face preservation 0.60; style-transfer attempt 2 scored 0.50"),
            "{story}"
        );
        assert!(
            story.ends_with("no image reached it, so the best (style-transfer, 0.50) is answered."),
            "{story}"
        );

        // A retry that passes is answered, and the reason says it was a retry.
        let mut executor = Executor::new(&p, Duration::from_secs(60), Instant::now());
        drive(&mut executor, |t| Made::Image {
            image: image(t.attempt as u8),
            identity: scored(if t.attempt == 1 { 0.3 } else { 0.7 }),
        });
        let done = executor.finish(StyleTransfer).unwrap();
        assert_eq!(done.identity.report().unwrap().passed, Some(true));
        assert_eq!(done.identity.report().unwrap().attempts, 2);
        assert!(
            done.story
                .unwrap()
                .contains("ran again with face preservation 0.60")
        );
    }

    #[test]
    fn none_answers_its_score_below_the_threshold() {
        let mut p = plan(Some((0.9, 3)));
        p.method = Method::None;
        p.fallbacks.clear();
        let mut executor = Executor::new(&p, Duration::from_secs(60), Instant::now());
        let tries = drive(&mut executor, |_| Made::Image {
            image: image(1),
            identity: scored(0.5),
        });
        assert_eq!(tries, vec![(MethodKind::None, 1)]);
        let done = executor.finish(MethodKind::None).unwrap();
        assert_eq!(done.identity.report().unwrap().passed, Some(false));
    }

    #[test]
    fn a_photo_without_a_face_is_not_gated_and_nothing_runnable_is_an_error() {
        let mut executor = Executor::new(
            &plan(Some((0.9, 3))),
            Duration::from_secs(60),
            Instant::now(),
        );
        let tries = drive(&mut executor, |_| Made::Image {
            image: image(1),
            identity: Identity::Unscored("the photo has no face".into()),
        });
        assert_eq!(tries.len(), 1);
        assert!(
            executor
                .finish(MethodKind::InstantId)
                .unwrap()
                .story
                .is_none()
        );

        let mut executor = Executor::new(&plan(None), Duration::from_secs(60), Instant::now());
        drive(&mut executor, |t| {
            Made::Unrunnable(format!("{} broke", t.method.kind().name()))
        });
        let why = executor.finish(MethodKind::InstantId).unwrap_err();
        assert_eq!(
            why,
            "At run time, instant-id could not run (instant-id broke); controlnet could not run (controlnet broke); none could not run (none broke); no method of the plan could run."
        );
    }
}
