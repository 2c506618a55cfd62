//! Worker classes: what a worker can run decides which job streams it reads, and what a
//! style's plan needs decides which stream an API node puts its job in.
//!
//! There are two classes. A `diffusion` worker has a diffusion pack; a `cpu` worker has none
//! (it runs a diffusion plan's fallbacks, as one process without a pack does). Each class has
//! its stream (`likeness:jobs:<class>`) and its set of live workers (`likeness:workers:<class>`,
//! a sorted set: a worker's consumer name, scored with when its advertisement lapses, by
//! Redis's clock). The `cpu` stream is everyone's: diffusion workers read their own stream
//! first, then it. The API node puts the job of a style whose plan picks a diffusion method
//! (`LoadedStyle::plans_diffusion`, from the dry run at load) in the `diffusion` stream while a
//! diffusion worker is live, and every other job in the `cpu` stream. So a fleet of alike
//! workers uses one stream (a CPU fleet only `cpu`), and a job is never put where no live
//! worker reads it; one already in the `diffusion` stream when the last diffusion worker goes
//! waits there for the next.

use std::time::Duration;

use likeness_contract::Capabilities;

/// How often a worker renews its advertisement.
pub const ADVERTISE_EVERY: Duration = Duration::from_secs(2);
/// How long an advertisement lasts unless renewed (a worker that stops renewing, killed or
/// hung, counts as gone after this).
pub const ADVERTISED_FOR: Duration = Duration::from_secs(10);

/// What a worker can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerClass {
    /// No diffusion pack: method `none` and the CPU looks.
    Cpu,
    /// A diffusion pack: the diffusion methods too.
    Diffusion,
}

impl WorkerClass {
    /// Every class, cheapest first.
    pub const ALL: [WorkerClass; 2] = [WorkerClass::Cpu, WorkerClass::Diffusion];

    /// The class of a worker that can run `capabilities`.
    pub fn of(capabilities: &Capabilities) -> WorkerClass {
        if capabilities.diffusion_sizes.is_some() {
            WorkerClass::Diffusion
        } else {
            WorkerClass::Cpu
        }
    }

    /// The class whose workers a job of a style should go to.
    pub fn wanted(plans_diffusion: bool) -> WorkerClass {
        if plans_diffusion {
            WorkerClass::Diffusion
        } else {
            WorkerClass::Cpu
        }
    }

    /// Its name, in metrics and keys.
    pub fn name(self) -> &'static str {
        match self {
            WorkerClass::Cpu => "cpu",
            WorkerClass::Diffusion => "diffusion",
        }
    }

    /// Its stream of jobs.
    pub fn stream(self) -> &'static str {
        match self {
            WorkerClass::Cpu => "likeness:jobs:cpu",
            WorkerClass::Diffusion => "likeness:jobs:diffusion",
        }
    }

    /// The sorted set of its live workers.
    pub fn workers(self) -> &'static str {
        match self {
            WorkerClass::Cpu => "likeness:workers:cpu",
            WorkerClass::Diffusion => "likeness:workers:diffusion",
        }
    }

    /// The streams a worker of this class reads, in the order it prefers them.
    pub fn reads(self) -> &'static [WorkerClass] {
        match self {
            WorkerClass::Cpu => &[WorkerClass::Cpu],
            WorkerClass::Diffusion => &[WorkerClass::Diffusion, WorkerClass::Cpu],
        }
    }

    /// The class whose stream is `stream`.
    pub fn of_stream(stream: &str) -> Option<WorkerClass> {
        WorkerClass::ALL.into_iter().find(|c| c.stream() == stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_makes_a_diffusion_worker_which_reads_the_cpu_stream_too() {
        assert_eq!(WorkerClass::of(&Capabilities::none()), WorkerClass::Cpu);
        assert_eq!(
            WorkerClass::of(&Capabilities::all()),
            WorkerClass::Diffusion
        );
        assert_eq!(WorkerClass::Cpu.reads(), &[WorkerClass::Cpu]);
        assert!(WorkerClass::Diffusion.reads().contains(&WorkerClass::Cpu));
        for class in WorkerClass::ALL {
            assert_eq!(WorkerClass::of_stream(class.stream()), Some(class));
            assert!(class.stream().ends_with(class.name()));
        }
    }
}
