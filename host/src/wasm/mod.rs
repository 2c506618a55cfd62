//! The plugin runtime: one wasmtime [`Engine`] for the whole process, components compiled once
//! (and cached on disk), and a fresh, sandboxed instance from the pooling allocator for every
//! call, so that nothing of one request survives into another.

mod bindings;
mod budget;
mod cache;
pub mod canvas;
pub mod checks;
mod clock;
mod error;
mod policy;
mod precheck;
mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

pub use budget::Limit;
pub use canvas::Image;
pub use error::{Call, CallError};
pub use likeness_contract::{Analysis, Capabilities, Options, Plan, StyleError, StyleInfo};
pub use precheck::ComponentLimits;
pub use sandbox::{Sandbox, Stop};

use bindings::convert::Edge;
use bindings::{v0_1, v0_2};
use budget::{Budget, metered};
use cache::ComponentCache;

/// How often the epoch ticks; budgets are checked at each tick.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Most failed components remembered (the memory is cleared when it is full).
const FAILED_REMEMBERED: usize = 1024;

/// Limits that apply to every call of one style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// CPU budget of `describe` and `plan` (the style's own CPU time, not the machine's).
    pub plan: Duration,
    /// CPU budget of `post-process`.
    pub post_process: Duration,
    /// Most linear memory one instance may have, in bytes.
    pub memory: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            plan: Duration::from_millis(50),
            post_process: Duration::from_secs(2),
            memory: 256 << 20,
        }
    }
}

impl CallLimits {
    fn cpu_budget(&self, call: Call) -> Duration {
        match call {
            Call::Describe | Call::Plan => self.plan,
            Call::PostProcess => self.post_process,
        }
    }
}

/// Settings of the plugin runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Limits of a style whose manifest overrides none.
    pub defaults: CallLimits,
    /// The most a manifest may raise each limit to.
    pub ceilings: CallLimits,
    /// Instances that may exist at once (the pooling allocator's size).
    pub max_instances: u32,
    /// Each call's wall-clock ceiling, as a multiple of its CPU budget: the backstop for a
    /// guest that sleeps, blocks in a host call, or is starved of CPU.
    pub wall_ceiling_factor: u32,
    /// What a component may declare, checked before it is compiled; the pooling allocator's
    /// per-module and per-component limits are set from it.
    pub components: ComponentLimits,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            defaults: CallLimits::default(),
            ceilings: CallLimits {
                plan: Duration::from_secs(1),
                post_process: Duration::from_secs(30),
                memory: 1 << 30,
            },
            max_instances: 128,
            wall_ceiling_factor: 10,
            components: ComponentLimits::default(),
            cache_dir: None,
        }
    }
}

/// The process-wide plugin runtime.
pub struct StyleRuntime {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: Option<ComponentCache>,
    config: RuntimeConfig,
    ticker: EpochTicker,
    /// Components that failed their check or compilation, by SHA-256: refused again at once.
    failed: Mutex<HashMap<String, String>>,
    /// Compilations run so far (cache misses).
    compilations: AtomicU64,
    /// One compilation at a time: each uses every core (wasmtime compiles a component's
    /// functions in parallel), so a cold start compiles package after package.
    compile_turns: Arc<tokio::sync::Semaphore>,
}

/// A package's turn to compile (see [`StyleRuntime::compile_turn`]): the next one starts when
/// it is dropped.
pub struct CompileTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl StyleRuntime {
    /// Builds the engine, the linker (WASI p2 with nothing granted, plus `log`) and starts the
    /// epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = config.max_instances;
        let components = &config.components;
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(components.core_instances))
            .total_memories(instances.saturating_mul(components.memories))
            .total_tables(instances.saturating_mul(components.tables))
            .total_stacks(instances)
            .max_core_instances_per_component(components.core_instances)
            .max_memories_per_component(components.memories)
            .max_tables_per_component(components.tables)
            .max_memories_per_module(components.memories_per_module)
            .max_tables_per_module(components.tables_per_module)
            .table_elements(usize::try_from(components.table_elements).unwrap_or(usize::MAX))
            .max_memory_size(config.ceilings.memory);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)
            .map_err(anyhow::Error::from)
            .context("configuring the wasm engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        v0_1::Style::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)?;
        v0_2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(ComponentCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Arc::new(StyleRuntime {
            engine,
            linker,
            cache,
            config,
            ticker,
            failed: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
            compile_turns: Arc::new(tokio::sync::Semaphore::new(1)),
        }))
    }

    /// Waits for the turn to compile the component whose SHA-256 is `digest`, when it must be
    /// compiled (`None`: it is in the cache and needs no turn). Hold the turn until
    /// [`StyleRuntime::compile`] returns.
    pub async fn compile_turn(&self, digest: &str) -> Option<CompileTurn> {
        if self.cache.as_ref().is_some_and(|cache| cache.has(digest)) {
            return None;
        }
        let permit = self.compile_turns.clone().acquire_owned().await;
        // The semaphore is never closed.
        permit.ok().map(|permit| CompileTurn { _permit: permit })
    }

    /// How many components this runtime has compiled (cache misses), for tests and metrics.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Checks a component against the host's limits, compiles it (or loads it from the cache)
    /// and checks that it implements a style world (0.2's `plugin`, else 0.1's `style`). A component that failed before (same
    /// SHA-256 `digest`) is refused at once, never compiled again. Blocking: call it off the
    /// async runtime's workers.
    pub fn compile(
        self: &Arc<Self>,
        style: &str,
        wasm: &[u8],
        digest: &str,
        limits: CallLimits,
        assets: Option<PathBuf>,
    ) -> anyhow::Result<StyleComponent> {
        let failed = |message: &str| {
            anyhow::anyhow!(
                "{message} (remembered: this component is not compiled again until it changes)"
            )
        };
        // The memory cap is part of the check (a memory's initial size), so part of the key.
        let key = format!("{digest}/{}", limits.memory);
        if let Some(message) = self.lock_failed().get(&key) {
            return Err(failed(message));
        }
        let pre = self
            .check_and_compile(wasm, digest, limits)
            .map_err(|error| {
                let mut remembered = self.lock_failed();
                if remembered.len() >= FAILED_REMEMBERED {
                    remembered.clear();
                }
                remembered.insert(key, format!("{error:#}"));
                error
            })?;
        Ok(StyleComponent {
            style: style.to_string(),
            runtime: Arc::clone(self),
            pre,
            limits,
            assets,
        })
    }

    fn check_and_compile(
        &self,
        wasm: &[u8],
        digest: &str,
        limits: CallLimits,
    ) -> anyhow::Result<Pre> {
        precheck::check(wasm, &self.config.components, limits.memory)?;
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, digest));
        let component = match cached {
            Some(component) => component,
            None => {
                self.compilations.fetch_add(1, Ordering::Relaxed);
                let compiled = self
                    .engine
                    .precompile_component(wasm)
                    .map_err(anyhow::Error::from)?;
                match &self.cache {
                    Some(cache) => cache.store(&self.engine, digest, &compiled)?,
                    // SAFETY: the bytes were produced just now by this engine.
                    None => unsafe { Component::deserialize(&self.engine, &compiled) }
                        .map_err(anyhow::Error::from)?,
                }
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component imports something the host does not grant")?;
        let v0_2 = match v0_2::PluginPre::new(pre.clone()) {
            Ok(plugin) => return Ok(Pre::V0_2(plugin)),
            Err(error) => error,
        };
        match v0_1::StylePre::new(pre) {
            Ok(style) => Ok(Pre::V0_1(style)),
            Err(_) => Err(anyhow::Error::from(v0_2).context(
                "the component implements neither likeness:style@0.2.0 (world plugin) nor 0.1.0",
            )),
        }
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for StyleRuntime {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// A compiled style, ready to be instantiated once per call. It keeps its runtime (and so the
/// epoch ticker that enforces its deadlines) alive.
pub struct StyleComponent {
    style: String,
    runtime: Arc<StyleRuntime>,
    pre: Pre,
    limits: CallLimits,
    assets: Option<PathBuf>,
}

impl StyleComponent {
    /// The limits each call of this style runs under.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// The contract version the component implements: `0.2.0` or `0.1.0`.
    pub fn contract(&self) -> &'static str {
        match self.pre {
            Pre::V0_2(_) => "0.2.0",
            Pre::V0_1(_) => "0.1.0",
        }
    }

    /// Calls `describe` in a fresh instance and checks what it returns ([`checks::info`]).
    pub async fn describe(&self) -> Result<StyleInfo, CallError> {
        let _ticking = self.runtime.ticker.hold();
        let call = Call::Describe;
        let (mut store, instance, budget) = self.instantiate(call).await?;
        let info = match instance {
            Instance::V0_2(style) => {
                let result = guarded(
                    &budget,
                    style.likeness_style_style().call_describe(&mut store),
                )
                .await;
                self.finish(call, &store, result)?.edge()
            }
            Instance::V0_1(style) => {
                let result = guarded(&budget, style.call_describe(&mut store)).await;
                let info = self.finish(call, &store, result)?;
                v0_1::style_info(info).map_err(|(field, message)| CallError::BadOutput {
                    style: self.style.clone(),
                    call,
                    field,
                    message,
                })?
            }
        };
        checks::info(&info).map_err(|bad| self.bad_output(call, bad))?;
        Ok(info)
    }

    /// Calls `choose-plan` (0.1: `plan`) in a fresh instance and checks the plan against the
    /// analysis and the capabilities it was made for ([`checks::plan`]). `options` are the
    /// host-checked options ([`likeness_contract::options::check`]).
    pub async fn plan(
        &self,
        analysis: &Analysis,
        capabilities: &Capabilities,
        options: &Options,
    ) -> Result<Plan, CallError> {
        let _ticking = self.runtime.ticker.hold();
        let call = Call::Plan;
        let (mut store, instance, budget) = self.instantiate(call).await?;
        let plan = match instance {
            Instance::V0_2(style) => {
                let (analysis, capabilities, options) = (
                    analysis.clone().edge(),
                    capabilities.clone().edge(),
                    options.clone().edge(),
                );
                let run = style.likeness_style_style().call_choose_plan(
                    &mut store,
                    &analysis,
                    &capabilities,
                    &options,
                );
                let result = guarded(&budget, run).await;
                let plan: v0_2::likeness::style::types::Plan =
                    self.finish(call, &store, result)?
                        .map_err(|error| self.style_error(error.edge()))?;
                plan.edge()
            }
            Instance::V0_1(style) => {
                let (analysis_v0_1, capabilities_v0_1, options) = (
                    analysis.clone().edge(),
                    v0_1::capabilities(capabilities),
                    v0_1::options(options),
                );
                let run = style.call_plan(&mut store, &analysis_v0_1, &capabilities_v0_1, &options);
                let result = guarded(&budget, run).await;
                let plan = self
                    .finish(call, &store, result)?
                    .map_err(|error| self.style_error(v0_1::style_error(error)))?;
                v0_1::plan(plan, capabilities)
            }
        };
        checks::plan(&plan, analysis, capabilities).map_err(|bad| self.bad_output(call, bad))?;
        Ok(plan)
    }

    /// Calls `post-process` in a fresh instance and checks that the image it returns has the
    /// input's size ([`checks::image`]).
    pub async fn post_process(
        &self,
        image: &Image,
        analysis: &Analysis,
        plan: &Plan,
        options: &Options,
    ) -> Result<Image, CallError> {
        let _ticking = self.runtime.ticker.hold();
        let call = Call::PostProcess;
        let (mut store, instance, budget) = self.instantiate(call).await?;
        let output = match instance {
            Instance::V0_2(style) => {
                let handle = store
                    .data_mut()
                    .add_image(image.clone())
                    .map_err(|e| self.classify(call, &store, e))?;
                let (analysis, plan, options) = (
                    analysis.clone().edge(),
                    plan.clone().edge(),
                    options.clone().edge(),
                );
                let run = style
                    .likeness_style_style()
                    .call_post_process(&mut store, handle, &analysis, &plan, &options);
                let result = guarded(&budget, run).await;
                let handle = self
                    .finish(call, &store, result)?
                    .map_err(|error| self.style_error(error.edge()))?;
                store
                    .data_mut()
                    .take_image(handle)
                    .map_err(|e| self.classify(call, &store, e))?
            }
            Instance::V0_1(style) => {
                let (photo, analysis, plan, options) = (
                    image.clone().edge(),
                    analysis.clone().edge(),
                    v0_1::plan_that_ran(plan, image, options),
                    v0_1::options(options),
                );
                let run = style.call_post_process(&mut store, &photo, &analysis, &plan, &options);
                let result = guarded(&budget, run).await;
                let output: v0_1::likeness::style::types::Image = self
                    .finish(call, &store, result)?
                    .map_err(|error| self.style_error(v0_1::style_error(error)))?;
                output.edge()
            }
        };
        checks::image(&output, image).map_err(|bad| self.bad_output(call, bad))?;
        Ok(output)
    }

    /// A fresh instance for one call, with the call's budget (which its instantiation already
    /// counts against).
    async fn instantiate(
        &self,
        call: Call,
    ) -> Result<(Store<Sandbox>, Instance, Arc<Budget>), CallError> {
        let cpu = self.limits.cpu_budget(call);
        let wall = cpu.saturating_mul(self.runtime.config.wall_ceiling_factor.max(1));
        let budget = Arc::new(Budget::new(cpu, wall));
        let sandbox = Sandbox::new(
            &self.style,
            self.limits.memory,
            budget.clone(),
            self.assets.as_deref(),
        )
        .map_err(|e| CallError::Instantiate {
            style: self.style.clone(),
            message: e.to_string(),
        })?;
        let mut store = Store::new(&self.runtime.engine, sandbox);
        store.limiter(|s| s);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            Ok(if ctx.data_mut().out_of_time() {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });
        let instance = match &self.pre {
            Pre::V0_2(pre) => guarded(&budget, pre.instantiate_async(&mut store))
                .await
                .map(Instance::V0_2),
            Pre::V0_1(pre) => guarded(&budget, pre.instantiate_async(&mut store))
                .await
                .map(Instance::V0_1),
        };
        match instance {
            Ok(instance) => Ok((store, instance, budget)),
            Err(error) => Err(self.classify(call, &store, error)),
        }
    }

    fn finish<R>(
        &self,
        call: Call,
        store: &Store<Sandbox>,
        result: wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        store.data().flush_output();
        result.map_err(|error| self.classify(call, store, error))
    }

    fn classify(&self, call: Call, store: &Store<Sandbox>, error: wasmtime::Error) -> CallError {
        let style = self.style.clone();
        let budget = store.data().budget();
        let timeout = |limit: Limit| CallError::Timeout {
            style: style.clone(),
            call,
            limit,
            limit_ms: match limit {
                Limit::Cpu => budget.cpu,
                Limit::WallClock => budget.wall,
            }
            .as_millis() as u64,
            cpu_ms: budget.cpu_used().as_millis() as u64,
        };
        if error.is::<WallCeilingPassed>() {
            return timeout(Limit::WallClock);
        }
        match store.data().stopped() {
            Some(Stop::Time(limit)) => return timeout(limit),
            Some(Stop::Memory) => {
                return CallError::MemoryLimit {
                    style,
                    call,
                    limit_mib: self.limits.memory >> 20,
                };
            }
            None => {}
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => CallError::StackOverflow { style, call },
            Some(wasmtime::Trap::Interrupt) => timeout(Limit::Cpu),
            Some(trap) => CallError::Trap {
                style,
                call,
                message: trap.to_string(),
            },
            None => CallError::Trap {
                style,
                call,
                message: format!("{error:#}"),
            },
        }
    }

    fn style_error(&self, error: StyleError) -> CallError {
        CallError::Style {
            style: self.style.clone(),
            error,
        }
    }

    fn bad_output(&self, call: Call, bad: checks::BadField) -> CallError {
        CallError::BadOutput {
            style: self.style.clone(),
            call,
            field: bad.field,
            message: bad.message,
        }
    }
}

/// A component ready to instantiate, by the contract version it implements.
enum Pre {
    V0_2(v0_2::PluginPre<Sandbox>),
    V0_1(v0_1::StylePre<Sandbox>),
}

/// One call's instance.
enum Instance {
    V0_2(v0_2::Plugin),
    V0_1(v0_1::Style),
}

/// The outer timeout of a guest call ran out: the call was dropped at its wall-clock ceiling.
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its wall-clock ceiling")]
struct WallCeilingPassed;

/// Runs one step of a guest call (instantiation or the export) with its CPU charged to
/// `budget`, under an outer timeout at the budget's wall-clock ceiling. The timeout catches
/// what epoch interruption cannot: a guest that sleeps or waits in a host call (a WASI clock
/// poll) runs no wasm, so no epoch check fires. Dropping the call's future at the ceiling
/// drops its fiber and, with its store, frees the instance's pooled slot.
async fn guarded<T>(
    budget: &Budget,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let deadline = tokio::time::Instant::from_std(budget.wall_deadline());
    match tokio::time::timeout_at(deadline, metered(budget, call)).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(WallCeilingPassed)),
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] while any guest call is in
/// flight, and sleeps otherwise: an idle host wakes for nothing.
struct EpochTicker {
    state: Arc<TickerState>,
    thread: Option<JoinHandle<()>>,
}

/// What the ticker thread and the calls share.
#[derive(Default)]
struct TickerState {
    /// Guest calls in flight.
    calls: Mutex<usize>,
    /// Signalled when the first call starts, and on stop.
    wake: Condvar,
    stop: AtomicBool,
    /// Ticks so far.
    ticks: AtomicU64,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let state = Arc::new(TickerState::default());
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("likeness-epoch".into())
            .spawn(move || {
                loop {
                    {
                        let calls = shared.calls.lock().unwrap_or_else(|e| e.into_inner());
                        let _calls = shared
                            .wake
                            .wait_while(calls, |calls| {
                                *calls == 0 && !shared.stop.load(Ordering::Relaxed)
                            })
                            .unwrap_or_else(|e| e.into_inner());
                    }
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    shared.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            state,
            thread: Some(thread),
        }
    }

    /// Keeps the epoch ticking until the returned guard is dropped (one per guest call).
    fn hold(&self) -> Ticking {
        let mut calls = self.state.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls += 1;
        if *calls == 1 {
            self.state.wake.notify_one();
        }
        Ticking(self.state.clone())
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.state.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A guest call in flight, for the epoch ticker.
struct Ticking(Arc<TickerState>);

impl Drop for Ticking {
    fn drop(&mut self) {
        let mut calls = self.0.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_epoch_ticks_only_while_a_call_is_in_flight() {
        let engine = Engine::new(Config::new().epoch_interruption(true)).unwrap();
        let mut ticker = EpochTicker::start(engine);
        let ticks = || ticker.state.ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticks(), 0, "an idle ticker must not tick");

        let call = ticker.hold();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ticks() < 5 {
            assert!(Instant::now() < deadline, "a held ticker must tick");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(call);
        // The tick being slept through when the call ended may still land.
        std::thread::sleep(Duration::from_millis(20));
        let rested = ticks();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            ticks() <= rested + 1,
            "the ticker kept ticking after the call"
        );
        ticker.stop();
    }
}
