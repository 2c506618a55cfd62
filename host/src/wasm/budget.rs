//! What one style call may spend: a budget of its own CPU time, and a wall-clock ceiling as the
//! backstop for time it spends sleeping, blocked in a host call, or starved of CPU.
//!
//! CPU is charged per poll of the call's future: wasmtime runs an async guest on a fiber that
//! executes on whichever thread polls the future (tokio may move it between workers across
//! yields), so [`metered`] reads the polling thread's CPU clock when a poll starts and when it
//! ends, and the epoch callback (which runs inside the poll, on the same thread) adds the
//! running slice. Time the thread spends descheduled by a busy machine is not charged.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// No slice is running (the future is not being polled).
const IDLE: u64 = u64::MAX;

/// The limits of one call and the CPU it has used so far.
#[derive(Debug)]
pub struct Budget {
    /// CPU time the call may use.
    pub cpu: Duration,
    /// The wall-clock ceiling, counted from [`Budget::started`].
    pub wall: Duration,
    /// When the call (its instantiation included) started.
    pub started: Instant,
    /// CPU nanoseconds of finished slices.
    spent_ns: AtomicU64,
    /// The polling thread's CPU clock when the running slice began, or [`IDLE`].
    slice_start_ns: AtomicU64,
}

/// Which limit stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The call used its CPU budget.
    Cpu,
    /// The call ran past its wall-clock ceiling (sleeping, blocked, or starved of CPU).
    WallClock,
}

impl Budget {
    /// A budget of `cpu` with a wall-clock ceiling of `wall`, starting now.
    pub fn new(cpu: Duration, wall: Duration) -> Self {
        Budget {
            cpu,
            wall,
            started: Instant::now(),
            spent_ns: AtomicU64::new(0),
            slice_start_ns: AtomicU64::new(IDLE),
        }
    }

    /// The instant the wall-clock ceiling passes.
    pub fn wall_deadline(&self) -> Instant {
        self.started + self.wall
    }

    /// CPU time used so far, the running slice included (when called on the polling thread).
    pub fn cpu_used(&self) -> Duration {
        let mut ns = self.spent_ns.load(Ordering::Relaxed);
        let start = self.slice_start_ns.load(Ordering::Relaxed);
        if start != IDLE {
            ns = ns.saturating_add(thread_cpu_ns().saturating_sub(start));
        }
        Duration::from_nanos(ns)
    }

    /// The limit this call has passed, if any (CPU first: it is the one a guest controls).
    pub fn exceeded(&self) -> Option<Limit> {
        if self.cpu_used() >= self.cpu {
            Some(Limit::Cpu)
        } else if Instant::now() >= self.wall_deadline() {
            Some(Limit::WallClock)
        } else {
            None
        }
    }

    fn begin_slice(&self) {
        self.slice_start_ns
            .store(thread_cpu_ns(), Ordering::Relaxed);
    }

    fn end_slice(&self) {
        let start = self.slice_start_ns.swap(IDLE, Ordering::Relaxed);
        if start != IDLE {
            let slice = thread_cpu_ns().saturating_sub(start);
            self.spent_ns.fetch_add(slice, Ordering::Relaxed);
        }
    }
}

/// Polls `future`, charging the polling thread's CPU time to `budget` slice by slice.
pub async fn metered<F: Future>(budget: &Budget, future: F) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        budget.begin_slice();
        let poll = future.as_mut().poll(cx);
        budget.end_slice();
        poll
    })
    .await
}

/// The calling thread's CPU time (user + system) in nanoseconds; 0 if the clock is unreadable,
/// in which case only the wall-clock ceiling stops a call.
pub fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs no setup.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(duration: Duration) {
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < duration.as_nanos() as u64 {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn only_cpu_spent_while_polled_is_charged() {
        let budget = Budget::new(Duration::from_secs(10), Duration::from_secs(100));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(metered(&budget, async {
            spin(Duration::from_millis(20));
            // Sleeping is not charged: the future is not being polled meanwhile.
            tokio::time::sleep(Duration::from_millis(50)).await;
            spin(Duration::from_millis(20));
        }));
        let used = budget.cpu_used();
        assert!(used >= Duration::from_millis(40), "{used:?}");
        let elapsed = budget.started.elapsed();
        assert!(
            used + Duration::from_millis(45) <= elapsed,
            "the 50 ms sleep was charged: {used:?} of CPU in {elapsed:?}"
        );
        spin(Duration::from_millis(10));
        assert_eq!(budget.cpu_used(), used, "no slice runs outside a poll");
    }

    #[test]
    fn the_cpu_budget_fires_before_a_distant_ceiling() {
        let budget = Budget::new(Duration::from_millis(5), Duration::from_secs(100));
        assert_eq!(budget.exceeded(), None);
        budget.begin_slice();
        spin(Duration::from_millis(6));
        assert_eq!(budget.exceeded(), Some(Limit::Cpu));
        budget.end_slice();
        let ceiling = Budget::new(Duration::from_secs(100), Duration::ZERO);
        assert_eq!(ceiling.exceeded(), Some(Limit::WallClock));
    }
}
