//! Admission control: a bound on the uploads being read (in all and per client address), a
//! bounded queue in front of the generation slots, a bound on analyses, and the CPU slots shared
//! by every CPU stage.
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
}

impl Shed {
    /// The machine-readable code (also the metrics' `reason` label).
    pub fn code(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::UploadsFull => "uploads_full",
            Shed::ClientUploadsFull => "client_uploads_full",
        }
    }
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

    /// Whether a generation arriving now would find room in the queue; reserves nothing (the
    /// place is taken by [`Admission::admit_generation`] once the upload is read).
    pub fn check_generation(&self) -> Result<(), Overloaded> {
        if self.generations.available_permits() == 0 {
            return Err(self.overloaded(Shed::QueueFull));
        }
        Ok(())
    }

    /// Takes a place for a generation, or sheds it when the queue is full.
    pub fn admit_generation(&self) -> Result<Ticket, Overloaded> {
        let place = self
            .generations
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.overloaded(Shed::QueueFull))?;
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
            uploads: 3,
            uploads_per_client: 2,
        })
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
