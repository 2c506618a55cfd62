//! A generation's CPU lanes: its independent CPU stages (the reference face's embedding beside
//! the style's plan, the control maps and face features of a diffusion run beside each other)
//! run side by side when CPU slots are free, and one after another when they are not.
//!
//! The request's own lane (lane 0) holds a CPU slot it waited for, as every CPU stage does.
//! Every further lane holds a slot taken only if one is free at that moment
//! (`try_acquire`, which never jumps a queue of waiting requests), never waited for: under load
//! a request gets no second slot and its stages run in order on its own lane, so the CPU stages
//! of all requests together never exceed the CPU slots. A lane is a blocking thread holding its
//! slot, so a request never has more threads than slots it holds. The results are the same
//! either way: the stages that run side by side share no state, and their results are taken
//! in the order the sequential code had.
//!
//! Each stage's work is recorded as a [`StageSpan`] (name, lane, start and end) and the most
//! slots the request held at once as [`Lanes::peak_slots`], for the tests and benches.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use likeness_vision::spread::{Part, Spread};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pipeline::GenerateError;

/// When a stage of a generation ran, and on which of its lanes.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpan {
    /// The stage (`analysing`, `planning`, `reference-face`, `canny`, ...).
    pub name: &'static str,
    /// 0: the request's own slot; 1, 2, ...: a slot that was free, taken beside it.
    pub lane: u32,
    /// Milliseconds from the generation's start to the stage's start.
    pub start_ms: f64,
    /// Milliseconds from the generation's start to the stage's end.
    pub end_ms: f64,
}

/// One generation's CPU slots: its own lane, the spare lanes it takes when slots are free,
/// and the record of its stages. Cloning shares the record.
#[derive(Clone)]
pub struct Lanes {
    slots: Arc<Semaphore>,
    shared: Arc<Shared>,
}

struct Shared {
    origin: Instant,
    held: AtomicUsize,
    peak: AtomicUsize,
    next_lane: AtomicU32,
    spans: Mutex<Vec<StageSpan>>,
}

/// A CPU slot a lane holds; dropping it frees it.
pub struct Slot {
    /// The lane it belongs to.
    pub lane: u32,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One of [`Lanes::run_all`]'s independent stages: its name and its work.
pub struct Job<'a, T> {
    /// The stage's name in the spans (`None`: a part of the stage that runs it, not recorded
    /// apart from it).
    pub name: Option<&'static str>,
    /// The work (blocking).
    pub run: Box<dyn FnOnce() -> Result<T, GenerateError> + Send + 'a>,
}

impl<'a, T> Job<'a, T> {
    /// A job named `name` doing `run`.
    pub fn new(
        name: &'static str,
        run: impl FnOnce() -> Result<T, GenerateError> + Send + 'a,
    ) -> Self {
        Job {
            name: Some(name),
            run: Box::new(run),
        }
    }

    /// A part of the stage that runs it (not recorded in the spans), doing `run`.
    pub fn part(run: impl FnOnce() -> Result<T, GenerateError> + Send + 'a) -> Self {
        Job {
            name: None,
            run: Box::new(run),
        }
    }
}

/// A stage's independent parts ([`Spread`]: the face detection's pyramid levels and batches of
/// crops) on a generation's lanes: the calling thread on lane `lane`, whose slot it holds, and
/// the spare slots free now, as [`Lanes::run_all`] runs jobs.
pub struct OnLanes<'a> {
    /// The generation's lanes.
    pub lanes: &'a Lanes,
    /// The lane of the calling thread.
    pub lane: u32,
}

impl Spread for OnLanes<'_> {
    fn run(&self, parts: Vec<Part<'_>>) {
        let jobs = parts
            .into_iter()
            .map(|part| {
                Job::part(move || {
                    part();
                    Ok(())
                })
            })
            .collect();
        // Parts never fail (each keeps its own result) and all run: nothing is canceled.
        let _ = self.lanes.run_all(self.lane, jobs, &|| false);
    }
}

impl Lanes {
    /// The lanes of a generation starting now, over the host's CPU slots.
    pub fn new(slots: Arc<Semaphore>) -> Lanes {
        Lanes {
            slots,
            shared: Arc::new(Shared {
                origin: Instant::now(),
                held: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                next_lane: AtomicU32::new(1),
                spans: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Waits for a CPU slot for the request's own lane.
    pub async fn own(&self) -> Result<Slot, GenerateError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GenerateError::Internal("the CPU slots are closed".into()))?;
        Ok(self.slot(0, permit))
    }

    /// A slot for a spare lane if one is free now, else `None` (the stage then runs in order
    /// on the request's own lane).
    pub fn spare(&self) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let lane = self.shared.next_lane.fetch_add(1, Ordering::Relaxed);
        Some(self.slot(lane, permit))
    }

    fn slot(&self, lane: u32, permit: OwnedSemaphorePermit) -> Slot {
        let held = self.shared.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.peak.fetch_max(held, Ordering::Relaxed);
        Slot {
            lane,
            _permit: permit,
            shared: self.shared.clone(),
        }
    }

    /// Milliseconds since the generation started.
    pub fn now_ms(&self) -> f64 {
        self.shared.origin.elapsed().as_secs_f64() * 1e3
    }

    /// Records that stage `name` ran on `lane` from `start_ms` until now.
    pub fn record(&self, name: &'static str, lane: u32, start_ms: f64) {
        let span = StageSpan {
            name,
            lane,
            start_ms,
            end_ms: self.now_ms(),
        };
        lock(&self.shared.spans).push(span);
    }

    /// Runs `work` as stage `name` on `lane`, recording its span.
    pub fn timed<T>(&self, name: &'static str, lane: u32, work: impl FnOnce() -> T) -> T {
        let start = self.now_ms();
        let result = work();
        self.record(name, lane, start);
        result
    }

    /// Runs independent blocking `jobs` on the calling thread (lane `lane`, whose slot the
    /// caller holds) and on one more thread per CPU slot free now (at most one per job beyond
    /// the first): lane `k` starts with job `k`, then each lane takes the next job not yet
    /// started, in the jobs' order, when it is done with its last, so a long job does not hold
    /// back the ones queued after it (put the longest first). Returns their results in the
    /// jobs' order, or the error of the first job (in that order) that failed. Jobs after a
    /// failed one that have not started are skipped, and every job not yet started once
    /// `canceled` says so.
    pub fn run_all<T: Send>(
        &self,
        lane: u32,
        jobs: Vec<Job<'_, T>>,
        canceled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<T>, GenerateError> {
        let count = jobs.len();
        let spares: Vec<Slot> = (1..count).map_while(|_| self.spare()).collect();
        let failed = AtomicUsize::new(usize::MAX);
        let results: Vec<Mutex<Option<Result<T, GenerateError>>>> =
            (0..count).map(|_| Mutex::new(None)).collect();
        let queue: Vec<Mutex<Option<Job<'_, T>>>> =
            jobs.into_iter().map(|job| Mutex::new(Some(job))).collect();
        // Lane `k` of the `width` starts with job `k`; then each takes the next not started.
        let width = spares.len() + 1;
        let next = AtomicUsize::new(width);
        let work = |lane: u32, first: usize| {
            let taken = std::iter::repeat_with(|| next.fetch_add(1, Ordering::Relaxed));
            for i in std::iter::once(first).chain(taken) {
                let Some(job) = queue.get(i).and_then(|job| lock(job).take()) else {
                    break;
                };
                let result = if canceled() {
                    Err(GenerateError::Canceled)
                } else if i > failed.load(Ordering::Relaxed) {
                    continue;
                } else {
                    match job.name {
                        Some(name) => self.timed(name, lane, job.run),
                        None => (job.run)(),
                    }
                };
                if result.is_err() {
                    failed.fetch_min(i, Ordering::Relaxed);
                }
                *lock(&results[i]) = Some(result);
            }
        };
        std::thread::scope(|scope| {
            for (k, slot) in spares.into_iter().enumerate() {
                let work = &work;
                scope.spawn(move || work(slot.lane, k + 1));
            }
            work(lane, 0);
        });
        let mut done = Vec::with_capacity(count);
        for result in results {
            match result.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(value)) => done.push(value),
                Some(Err(error)) => return Err(error),
                // Skipped after an earlier job failed, whose error came first.
                None => return Err(GenerateError::Internal("a skipped stage".into())),
            }
        }
        Ok(done)
    }

    /// The stages so far, in the order they started.
    pub fn spans(&self) -> Vec<StageSpan> {
        let mut spans = lock(&self.shared.spans).clone();
        spans.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        spans
    }

    /// The most CPU slots the generation held at once.
    pub fn peak_slots(&self) -> usize {
        self.shared.peak.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (up to 30 s) until `done` says so.
    fn wait_until(what: &str, done: impl Fn() -> bool) -> Result<(), GenerateError> {
        let waited = Instant::now();
        while !done() {
            if waited.elapsed().as_secs() > 30 {
                return Err(GenerateError::Internal(format!("{what} never happened")));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Four jobs logging their start; job `fail` fails; the first `together` wait (up to 30 s)
    /// until that many have started, so that they run at once on as many lanes.
    fn jobs(log: &Mutex<Vec<usize>>, fail: Option<usize>, together: usize) -> Vec<Job<'_, usize>> {
        (0..4)
            .map(|i| {
                Job::new("job", move || {
                    lock(log).push(i);
                    if i < together {
                        wait_until("the others' start", || lock(log).len() >= together)?;
                    }
                    if Some(i) == fail {
                        return Err(GenerateError::Internal(format!("job {i} failed")));
                    }
                    Ok(i * 10)
                })
            })
            .collect()
    }

    /// Runs the four jobs on a host of `slots` CPU slots, the caller holding one of them: the
    /// lanes, the results and the order the jobs started in.
    fn run_with(slots: usize) -> (Lanes, Vec<usize>, Vec<usize>) {
        let semaphore = Arc::new(Semaphore::new(slots));
        let lanes = Lanes::new(semaphore.clone());
        let own = lanes.spare().unwrap();
        let log = Mutex::new(Vec::new());
        let done = lanes
            .run_all(own.lane, jobs(&log, None, slots), &|| false)
            .unwrap();
        drop(own);
        assert_eq!(
            semaphore.available_permits(),
            slots,
            "every slot is given back"
        );
        (lanes, done, log.into_inner().unwrap())
    }

    #[test]
    fn jobs_spread_over_the_free_slots_and_answer_in_order() {
        let (lanes, done, _) = run_with(3);
        assert_eq!(done, vec![0, 10, 20, 30]);
        assert_eq!(lanes.peak_slots(), 3, "the own slot and the two free ones");
        let mut used: Vec<u32> = lanes.spans().iter().map(|s| s.lane).collect();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn a_long_job_does_not_hold_back_the_ones_after_it() {
        // Job `a` runs until `d` has started: the other lane must take `b`, `c` and `d`.
        let lanes = Lanes::new(Arc::new(Semaphore::new(2)));
        let own = lanes.spare().unwrap();
        let started = Mutex::new(Vec::new());
        let job = |name: &'static str| {
            let started = &started;
            Job::new(name, move || {
                lock(started).push(name);
                if name == "a" {
                    wait_until("d's start", || lock(started).contains(&"d"))?;
                }
                Ok(name)
            })
        };
        let done = lanes
            .run_all(
                own.lane,
                vec![job("a"), job("b"), job("c"), job("d")],
                &|| false,
            )
            .unwrap();
        assert_eq!(done, vec!["a", "b", "c", "d"]);
        let spans = lanes.spans();
        let lane = |name: &str| spans.iter().find(|s| s.name == name).unwrap().lane;
        assert_ne!(lane("a"), lane("b"));
        assert_eq!(lane("b"), lane("c"));
        assert_eq!(lane("c"), lane("d"));
    }

    #[test]
    fn without_a_free_slot_jobs_run_in_order_on_the_own_lane() {
        let (lanes, done, started) = run_with(1);
        assert_eq!(done, vec![0, 10, 20, 30]);
        assert_eq!(lanes.peak_slots(), 1);
        assert_eq!(started, vec![0, 1, 2, 3]);
        let spans = lanes.spans();
        assert!(spans.iter().all(|s| s.lane == spans[0].lane));
        assert!(spans.windows(2).all(|w| w[0].end_ms <= w[1].start_ms));
    }

    /// A stage's three parts through [`OnLanes`] on a host of `slots` CPU slots, the caller
    /// holding one: the first two wait for each other when `together`. Returns the threads
    /// they ran on, in the parts' order, and the lanes.
    fn parts_with(slots: usize, together: bool) -> (Vec<std::thread::ThreadId>, Lanes) {
        let lanes = Lanes::new(Arc::new(Semaphore::new(slots)));
        let own = lanes.spare().unwrap();
        let ran: Vec<Mutex<Option<std::thread::ThreadId>>> =
            (0..3).map(|_| Mutex::new(None)).collect();
        let started = AtomicUsize::new(0);
        let parts: Vec<Part<'_>> = ran
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let started = &started;
                Box::new(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    if together && i < 2 {
                        wait_until("the other part's start", || {
                            started.load(Ordering::SeqCst) >= 2
                        })
                        .unwrap();
                    }
                    *lock(slot) = Some(std::thread::current().id());
                }) as Part<'_>
            })
            .collect();
        OnLanes {
            lanes: &lanes,
            lane: own.lane,
        }
        .run(parts);
        let threads = ran
            .into_iter()
            .map(|t| t.into_inner().unwrap().expect("every part ran"))
            .collect();
        (threads, lanes)
    }

    #[test]
    fn a_stages_parts_run_on_the_free_slots_and_unrecorded() {
        let (threads, lanes) = parts_with(2, true);
        assert_ne!(threads[0], threads[1], "two parts at once");
        assert_eq!(lanes.peak_slots(), 2);
        assert!(lanes.spans().is_empty(), "parts are not stages");

        let (threads, lanes) = parts_with(1, false);
        let caller = std::thread::current().id();
        assert!(threads.iter().all(|t| *t == caller), "{threads:?}");
        assert_eq!(lanes.peak_slots(), 1);
    }

    #[test]
    fn the_first_failure_in_order_wins_and_cancellation_stops_the_rest() {
        let lanes = Lanes::new(Arc::new(Semaphore::new(1)));
        let own = lanes.spare().unwrap();
        let log = Mutex::new(Vec::new());
        let error = lanes
            .run_all(own.lane, jobs(&log, Some(1), 1), &|| false)
            .unwrap_err();
        assert_eq!(error.to_string(), "internal error: job 1 failed");
        assert_eq!(
            *lock(&log),
            vec![0, 1],
            "the jobs after the failure are skipped"
        );

        let log = Mutex::new(Vec::new());
        let error = lanes
            .run_all(own.lane, jobs(&log, None, 1), &|| true)
            .unwrap_err();
        assert!(matches!(error, GenerateError::Canceled));
        assert!(lock(&log).is_empty());
    }
}
