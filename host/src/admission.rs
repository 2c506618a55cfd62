//! Admission control: a bound on the uploads being read (in all and per client address), a
//! bounded queue in front of the generation slots, a bound on analyses, and the CPU slots shared
//! by every CPU stage.
//!
//! Each style also has its own share: a bound on its generations waiting and running
//! (`[admission]` `style_queue`, `style_slots`, or per style), and a circuit breaker
//! ([`crate::breaker`]) that keeps work from a style that keeps failing, so that one bad style
//! cannot shed the others.
//!
//! A request first takes an upload place (or is shed at once with 429, before its body is read);
//! only once its body has been read does it take its place in the queue (or the bound on
//! analyses), so slow uploads cannot fill the queue. A request that finds the queue full when it
//! arrives is shed before its body is read too. Memory for request bodies therefore stays
//! bounded by `(uploads + queue + generation slots + analyses) x body limit`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::breaker::{Breaker, Verdict};
use crate::config::AdmissionConfig;

/// How long a client shed for having too many uploads in progress should wait.
const UPLOAD_RETRY: Duration = Duration::from_secs(2);

/// Which bound turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The generation queue (or the bound on analyses) is full.
    QueueFull,
    /// Too many uploads are being read.
    UploadsFull,
    /// This client address has too many uploads in progress.
    ClientUploadsFull,
    /// The style has as much work waiting and running as its share allows.
    StyleQueueFull,
    /// The style's circuit breaker is open: it failed repeatedly.
    CircuitOpen,
}

impl Shed {
    /// The machine-readable code (also the metrics' `reason` label).
    pub fn code(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::UploadsFull => "uploads_full",
            Shed::ClientUploadsFull => "client_uploads_full",
            Shed::StyleQueueFull => "style_queue_full",
            Shed::CircuitOpen => "circuit_open",
        }
    }

    /// Whether the bound is the style's own (not the whole service's).
    pub fn is_style_specific(self) -> bool {
        matches!(self, Shed::StyleQueueFull | Shed::CircuitOpen)
    }
}

/// The load of one style, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleLoad {
    /// The style's id.
    pub style: String,
    /// Its generations waiting or running.
    pub in_flight: usize,
    /// Whether its circuit breaker keeps work away.
    pub circuit_open: bool,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// The bound that was reached.
    pub shed: Shed,
    /// When a retry is likely to be admitted.
    pub retry_after: Duration,
}

/// The queue and the slots.
pub struct Admission {
    uploads: Arc<Mutex<Uploads>>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    generations: Arc<Semaphore>,
    generation_slots: Arc<Semaphore>,
    analyses: Arc<Semaphore>,
    cpu_slots: Arc<Semaphore>,
    config: AdmissionConfig,
    waiting: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    /// Exponential moving average of a generation's run time, in seconds.
    average_run: Arc<Mutex<f64>>,
}

impl Admission {
    /// Admission with these limits.
    pub fn new(config: &AdmissionConfig) -> Self {
        Admission {
            uploads: Arc::default(),
            lanes: Mutex::default(),
            generations: Arc::new(Semaphore::new(config.queue + config.generation_slots)),
            generation_slots: Arc::new(Semaphore::new(config.generation_slots)),
            analyses: Arc::new(Semaphore::new(config.queue + config.cpu_slots)),
            cpu_slots: Arc::new(Semaphore::new(config.cpu_slots)),
            config: config.clone(),
            waiting: Arc::default(),
            running: Arc::default(),
            average_run: Arc::new(Mutex::new(1.0)),
        }
    }

    /// The CPU slots, for the pipeline's CPU stages and the server's image encoding.
    pub fn cpu_slots(&self) -> &Arc<Semaphore> {
        &self.cpu_slots
    }

    /// Generations waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Generations running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Uploads being read.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Takes a place for reading an upload from `client`, or sheds it when too many uploads
    /// are in progress, in all or from this client. Dropping the place frees it.
    pub fn admit_upload(&self, client: IpAddr) -> Result<UploadPlace, Overloaded> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if uploads.total >= self.config.uploads {
            drop(uploads);
            return Err(self.overloaded(Shed::UploadsFull));
        }
        let mine = uploads.by_client.entry(client).or_default();
        if *mine >= self.config.uploads_per_client {
            return Err(Overloaded {
                shed: Shed::ClientUploadsFull,
                retry_after: UPLOAD_RETRY,
            });
        }
        *mine += 1;
        uploads.total += 1;
        Ok(UploadPlace {
            uploads: self.uploads.clone(),
            client,
        })
    }

    /// The share of style `id` (made on first use).
    fn lane(&self, id: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .entry(id.to_string())
            .or_insert_with(|| {
                let (queue, slots) = self.config.style_bounds(id);
                Arc::new(Lane {
                    places: Arc::new(Semaphore::new(queue + slots)),
                    size: queue + slots,
                    slots: Arc::new(Semaphore::new(slots)),
                    breaker: Mutex::new(Breaker::new(&self.config.breaker)),
                })
            })
            .clone()
    }

    /// The load of every style that has had work.
    pub fn style_loads(&self) -> Vec<StyleLoad> {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .iter()
            .map(|(style, lane)| StyleLoad {
                style: style.clone(),
                in_flight: lane.size - lane.places.available_permits(),
                circuit_open: lane.breaker().is_open(),
            })
            .collect()
    }

    /// Whether a generation of `style` arriving now would be admitted; reserves nothing (the
    /// place is taken by [`Admission::admit_generation`] once the upload is read).
    pub fn check_generation(&self, style: &str) -> Result<(), Overloaded> {
        let lane = self.lane(style);
        lane.breaker()
            .admit(Instant::now(), false)
            .map_err(circuit_open)?;
        if self.generations.available_permits() == 0 {
            return Err(self.overloaded(Shed::QueueFull));
        }
        if lane.places.available_permits() == 0 {
            return Err(self.overloaded(Shed::StyleQueueFull));
        }
        Ok(())
    }

    /// Takes a place for a generation of `style`, or sheds it when the queue or the style's
    /// share is full, or the style's circuit breaker is open.
    pub fn admit_generation(&self, style: &str) -> Result<Ticket, Overloaded> {
        let lane = self.lane(style);
        let place = self
            .generations
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.overloaded(Shed::QueueFull))?;
        let style_place = lane
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.overloaded(Shed::StyleQueueFull))?;
        let trial = lane
            .breaker()
            .admit(Instant::now(), true)
            .map_err(circuit_open)?;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            place,
            style_place,
            outcome: Outcome { lane, trial },
            slots: self.generation_slots.clone(),
            waiting: WaitingGuard(self.waiting.clone()),
            running: self.running.clone(),
            average_run: self.average_run.clone(),
        })
    }

    /// Takes a place for an analysis (which then waits for a CPU slot inside the pipeline), or
    /// sheds it when too many are waiting.
    pub fn admit_analysis(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        self.analyses
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.overloaded(Shed::QueueFull))
    }

    /// The answer for a shed request: retry when the queue ahead has likely moved on.
    fn overloaded(&self, shed: Shed) -> Overloaded {
        let average = *self.average_run.lock().unwrap_or_else(|e| e.into_inner());
        let rounds = (self.queue_depth() + 1) as f64 / self.config.generation_slots.max(1) as f64;
        let seconds = (average * rounds).ceil().clamp(1.0, 60.0);
        Overloaded {
            shed,
            retry_after: Duration::from_secs(seconds as u64),
        }
    }
}

/// The refusal of a style whose circuit breaker is open.
fn circuit_open(retry_after: Duration) -> Overloaded {
    Overloaded {
        shed: Shed::CircuitOpen,
        retry_after: retry_after.max(Duration::from_secs(1)),
    }
}

/// One style's share of the queue and slots, and its breaker.
struct Lane {
    /// Its generations waiting or running.
    places: Arc<Semaphore>,
    /// The number of `places`.
    size: usize,
    /// Its generations running.
    slots: Arc<Semaphore>,
    breaker: Mutex<Breaker>,
}

impl Lane {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a generation's outcome goes: its style's breaker. A trial that ends without an outcome
/// is given back when this is dropped.
struct Outcome {
    lane: Arc<Lane>,
    trial: bool,
}

impl Outcome {
    /// Records `verdict`; returns whether it opened the breaker.
    fn report(&mut self, verdict: Verdict) -> bool {
        let trial = std::mem::take(&mut self.trial);
        self.lane.breaker().report(trial, verdict, Instant::now())
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if self.trial {
            self.lane.breaker().release_trial();
        }
    }
}

/// Uploads in progress, in all and by client address.
#[derive(Default)]
struct Uploads {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A place for reading one upload.
pub struct UploadPlace {
    uploads: Arc<Mutex<Uploads>>,
    client: IpAddr,
}

impl Drop for UploadPlace {
    fn drop(&mut self) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.total -= 1;
        if let Some(mine) = uploads.by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                uploads.by_client.remove(&self.client);
            }
        }
    }
}

/// A generation's place in the queue (and in its style's share).
pub struct Ticket {
    place: OwnedSemaphorePermit,
    style_place: OwnedSemaphorePermit,
    outcome: Outcome,
    slots: Arc<Semaphore>,
    waiting: WaitingGuard,
    running: Arc<AtomicUsize>,
    average_run: Arc<Mutex<f64>>,
}

impl Ticket {
    /// Waits for one of its style's slots, then for a generation slot. Dropping the returned
    /// [`Slot`] frees both. Refused (and its place freed) when its style's circuit breaker
    /// opened while it waited, unless it is the breaker's trial.
    pub async fn start(self) -> Result<Slot, Overloaded> {
        // The semaphores are never closed, so acquiring only waits.
        let style_slot = self.outcome.lane.slots.clone().acquire_owned().await.ok();
        if !self.outcome.trial {
            self.outcome
                .lane
                .breaker()
                .admit(Instant::now(), false)
                .map_err(circuit_open)?;
        }
        let slot = self.slots.clone().acquire_owned().await.ok();
        drop(self.waiting);
        self.running.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            _place: self.place,
            _style_place: self.style_place,
            _style_slot: style_slot,
            outcome: self.outcome,
            _slot: slot,
            running: self.running,
            average_run: self.average_run,
            started: Instant::now(),
        })
    }
}

/// A running generation's slot.
pub struct Slot {
    _place: OwnedSemaphorePermit,
    _style_place: OwnedSemaphorePermit,
    _style_slot: Option<OwnedSemaphorePermit>,
    outcome: Outcome,
    _slot: Option<OwnedSemaphorePermit>,
    running: Arc<AtomicUsize>,
    average_run: Arc<Mutex<f64>>,
    started: Instant,
}

impl Slot {
    /// Tells the style's circuit breaker how the style did; returns whether this opened it.
    pub fn report(&mut self, verdict: Verdict) -> bool {
        self.outcome.report(verdict)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let took = self.started.elapsed().as_secs_f64();
        let mut average = self.average_run.lock().unwrap_or_else(|e| e.into_inner());
        *average = 0.8 * *average + 0.2 * took;
    }
}

/// Counts a ticket as waiting until it starts or is dropped.
struct WaitingGuard(Arc<AtomicUsize>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(queue: usize, slots: usize) -> Admission {
        Admission::new(&AdmissionConfig {
            queue,
            generation_slots: slots,
            cpu_slots: 1,
            uploads: 3,
            uploads_per_client: 2,
            style_queue: Some(queue),
            style_slots: Some(slots),
            ..AdmissionConfig::default()
        })
    }

    #[tokio::test]
    async fn a_style_beyond_its_share_is_shed_while_others_are_admitted() {
        let admission = Admission::new(&AdmissionConfig {
            queue: 4,
            generation_slots: 2,
            style_queue: Some(1),
            style_slots: Some(1),
            ..AdmissionConfig::default()
        });
        let running = admission
            .admit_generation("bad")
            .unwrap()
            .start()
            .await
            .unwrap();
        let waiting = admission.admit_generation("bad").unwrap();
        let shed = admission.admit_generation("bad").err().unwrap();
        assert_eq!(shed.shed, Shed::StyleQueueFull);
        assert_eq!(
            admission.check_generation("bad").unwrap_err().shed,
            Shed::StyleQueueFull
        );
        admission.check_generation("good").unwrap();
        // The other style gets the free generation slot at once; the bad style's second
        // generation waits for its style's slot without holding a generation slot.
        let good = admission.admit_generation("good").unwrap();
        let good = tokio::time::timeout(Duration::from_secs(10), good.start())
            .await
            .expect("the free slot is not held by the waiting bad generation")
            .unwrap();
        let waiting = tokio::spawn(waiting.start());
        drop(good);
        drop(running);
        drop(waiting.await.unwrap().unwrap());
        let mut loads = admission.style_loads();
        loads.sort_by(|a, b| a.style.cmp(&b.style));
        assert_eq!(loads.len(), 2);
        assert!(loads.iter().all(|l| l.in_flight == 0 && !l.circuit_open));
    }

    #[tokio::test]
    async fn repeated_faults_open_the_breaker_of_that_style_only() {
        let admission = Admission::new(&AdmissionConfig {
            breaker: crate::config::BreakerConfig {
                failures: 2,
                open_secs: 30,
            },
            ..AdmissionConfig::default()
        });
        let queued = admission.admit_generation("bad").unwrap();
        for opens in [false, true] {
            let mut slot = admission
                .admit_generation("bad")
                .unwrap()
                .start()
                .await
                .unwrap();
            assert_eq!(slot.report(Verdict::Faulty), opens);
        }
        // Work that was queued when the breaker opened does not run either.
        let refused = queued.start().await.err().unwrap();
        assert_eq!(refused.shed, Shed::CircuitOpen);
        assert_eq!(admission.queue_depth(), 0);
        let refused = admission.admit_generation("bad").err().unwrap();
        assert_eq!(refused.shed, Shed::CircuitOpen);
        assert!(refused.retry_after > Duration::from_secs(20));
        assert_eq!(
            admission.check_generation("bad").unwrap_err().shed,
            Shed::CircuitOpen
        );
        let mut good = admission
            .admit_generation("good")
            .unwrap()
            .start()
            .await
            .unwrap();
        assert!(!good.report(Verdict::Healthy));
        let open: Vec<_> = admission
            .style_loads()
            .into_iter()
            .filter(|l| l.circuit_open)
            .map(|l| l.style)
            .collect();
        assert_eq!(open, ["bad"]);
    }

    #[test]
    fn uploads_are_bounded_in_all_and_per_client() {
        let admission = admission(1, 1);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.admit_upload(a).unwrap();
        let _second = admission.admit_upload(a).unwrap();
        let refused = admission.admit_upload(a).err().unwrap();
        assert_eq!(refused.shed, Shed::ClientUploadsFull);
        let _third = admission.admit_upload(b).unwrap();
        assert_eq!(admission.uploads_in_progress(), 3);
        assert_eq!(
            admission.admit_upload(b).err().unwrap().shed,
            Shed::UploadsFull
        );
        drop(first);
        assert_eq!(admission.uploads_in_progress(), 2);
        let _again = admission.admit_upload(a).unwrap();
    }

    #[tokio::test]
    async fn sheds_beyond_queue_plus_slots_and_recovers() {
        let admission = admission(2, 1);
        let first = admission.admit_generation("a").unwrap();
        let running = first.start().await.unwrap();
        let a = admission.admit_generation("a").unwrap();
        let _b = admission.admit_generation("a").unwrap();
        assert_eq!(admission.queue_depth(), 2);
        assert_eq!(admission.running(), 1);
        let Err(shed) = admission.admit_generation("a") else {
            panic!("a full queue must shed");
        };
        assert!(shed.retry_after >= Duration::from_secs(1));

        drop(a);
        assert_eq!(admission.queue_depth(), 1);
        let _c = admission.admit_generation("a").unwrap();
        drop(running);
        assert_eq!(admission.running(), 0);
    }

    #[tokio::test]
    async fn a_waiting_ticket_starts_when_a_slot_frees() {
        let admission = Arc::new(admission(1, 1));
        let running = admission
            .admit_generation("a")
            .unwrap()
            .start()
            .await
            .unwrap();
        let waiting = admission.admit_generation("a").unwrap();
        let started = tokio::spawn(async move { waiting.start().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!started.is_finished());
        drop(running);
        let slot = started.await.unwrap().unwrap();
        assert_eq!(admission.running(), 1);
        assert_eq!(admission.queue_depth(), 0);
        drop(slot);
    }
}
