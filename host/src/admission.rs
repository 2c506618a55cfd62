//! Admission control: a bounded queue in front of the generation slots, a bound on analyses, and
//! the CPU slots shared by every CPU stage. A request that finds the queue full is shed at once
//! (HTTP 429) before its body is read, so memory stays bounded by
//! `(queue + slots) x body limit`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionConfig;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// When a retry is likely to be admitted.
    pub retry_after: Duration,
}

/// The queue and the slots.
pub struct Admission {
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

    /// Takes a place for a generation, or sheds it when the queue is full.
    pub fn admit_generation(&self) -> Result<Ticket, Overloaded> {
        let place = self
            .generations
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.overloaded())?;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            place,
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
            .map_err(|_| self.overloaded())
    }

    /// The answer for a shed request: retry when the queue ahead has likely moved on.
    fn overloaded(&self) -> Overloaded {
        let average = *self.average_run.lock().unwrap_or_else(|e| e.into_inner());
        let rounds = (self.queue_depth() + 1) as f64 / self.config.generation_slots.max(1) as f64;
        let seconds = (average * rounds).ceil().clamp(1.0, 60.0);
        Overloaded {
            retry_after: Duration::from_secs(seconds as u64),
        }
    }
}

/// A generation's place in the queue.
pub struct Ticket {
    place: OwnedSemaphorePermit,
    slots: Arc<Semaphore>,
    waiting: WaitingGuard,
    running: Arc<AtomicUsize>,
    average_run: Arc<Mutex<f64>>,
}

impl Ticket {
    /// Waits for a generation slot. Dropping the returned [`Slot`] frees it.
    pub async fn start(self) -> Slot {
        // The semaphore is never closed, so acquiring only waits.
        let slot = self.slots.clone().acquire_owned().await.ok();
        drop(self.waiting);
        self.running.fetch_add(1, Ordering::Relaxed);
        Slot {
            _place: self.place,
            _slot: slot,
            running: self.running,
            average_run: self.average_run,
            started: Instant::now(),
        }
    }
}

/// A running generation's slot.
pub struct Slot {
    _place: OwnedSemaphorePermit,
    _slot: Option<OwnedSemaphorePermit>,
    running: Arc<AtomicUsize>,
    average_run: Arc<Mutex<f64>>,
    started: Instant,
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
        })
    }

    #[tokio::test]
    async fn sheds_beyond_queue_plus_slots_and_recovers() {
        let admission = admission(2, 1);
        let first = admission.admit_generation().unwrap();
        let running = first.start().await;
        let a = admission.admit_generation().unwrap();
        let _b = admission.admit_generation().unwrap();
        assert_eq!(admission.queue_depth(), 2);
        assert_eq!(admission.running(), 1);
        let Err(shed) = admission.admit_generation() else {
            panic!("a full queue must shed");
        };
        assert!(shed.retry_after >= Duration::from_secs(1));

        drop(a);
        assert_eq!(admission.queue_depth(), 1);
        let _c = admission.admit_generation().unwrap();
        drop(running);
        assert_eq!(admission.running(), 0);
    }

    #[tokio::test]
    async fn a_waiting_ticket_starts_when_a_slot_frees() {
        let admission = Arc::new(admission(1, 1));
        let running = admission.admit_generation().unwrap().start().await;
        let waiting = admission.admit_generation().unwrap();
        let started = tokio::spawn(async move { waiting.start().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!started.is_finished());
        drop(running);
        let slot = started.await.unwrap();
        assert_eq!(admission.running(), 1);
        assert_eq!(admission.queue_depth(), 0);
        drop(slot);
    }
}
