//! How one analysis may use the machine's cores: its independent parts (MTCNN's pyramid
//! levels, its batches of crops) are handed to a [`Spread`], which runs them side by side on
//! the cores its owner grants, or one after another.
//!
//! The small models these parts run ([`crate::onnx::Runtime::caller_pool`]) compute on the
//! calling thread alone, so a part is one core's work and a spread of `n` threads uses `n`
//! cores: the host spreads over the CPU slots free at that moment (never more than it holds),
//! [`Cores`] over every core, [`InOrder`] over none but the caller's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One independent part of an analysis: its work, run once.
pub type Part<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Runs an analysis's independent parts.
pub trait Spread: Send + Sync {
    /// Runs every one of `parts` once, on the calling thread and on any others it may use,
    /// and returns when all have run. Parts are given longest first where that is known: the
    /// calling thread should start with the first and every thread take the next one not yet
    /// started when it is done.
    fn run(&self, parts: Vec<Part<'_>>);
}

/// Every part on the calling thread, one after another.
#[derive(Debug, Clone, Copy, Default)]
pub struct InOrder;

impl Spread for InOrder {
    fn run(&self, parts: Vec<Part<'_>>) {
        for part in parts {
            part();
        }
    }
}

/// The parts over one thread per core (the calling thread and scoped threads beside it), for
/// callers that own the machine: [`crate::Vision`]'s default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cores;

impl Spread for Cores {
    fn run(&self, parts: Vec<Part<'_>>) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(parts.len());
        if threads <= 1 {
            return InOrder.run(parts);
        }
        let queue: Vec<Mutex<Option<Part<'_>>>> = parts
            .into_iter()
            .map(|part| Mutex::new(Some(part)))
            .collect();
        let next = AtomicUsize::new(0);
        let work = || {
            while let Some(slot) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                let part = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(part) = part {
                    part();
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squares(spread: &dyn Spread) -> Vec<usize> {
        let out: Vec<Mutex<usize>> = (0..9).map(|_| Mutex::new(0)).collect();
        let parts: Vec<Part<'_>> = out
            .iter()
            .enumerate()
            .map(|(i, slot)| Box::new(move || *slot.lock().unwrap() = i * i) as Part<'_>)
            .collect();
        spread.run(parts);
        out.into_iter().map(|m| m.into_inner().unwrap()).collect()
    }

    #[test]
    fn every_part_runs_once_whichever_the_spread() {
        let want: Vec<usize> = (0..9).map(|i| i * i).collect();
        assert_eq!(squares(&InOrder), want);
        assert_eq!(squares(&Cores), want);
        Cores.run(Vec::new());
    }
}
