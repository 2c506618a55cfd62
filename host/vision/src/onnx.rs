//! The ONNX Runtime layer: one process-wide environment loaded from an explicit library path, the
//! execution-provider choice, and pools of sessions shared across requests.
//!
//! This is the process's one owner of ONNX Runtime: the diffusion engine (`likeness-diffusion`)
//! builds its sessions from the same [`Runtime`] through [`Runtime::session_builder`], so both
//! crates share the environment and the provider choice.
//!
//! ONNX Runtime allows one environment per process and `ort` refuses a second one, so the
//! [`Runtime`] is a process-wide singleton: [`Runtime::init`] returns the same `Arc` to every caller
//! that names the same library.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Tensor, ValueType};
use serde::Serialize;

use crate::error::{Result, VisionError};

/// Which execution providers to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderChoice {
    /// TensorRT and CUDA when the runtime library ships their provider libraries, else CPU.
    #[default]
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA (falls back to CPU when it cannot be registered).
    Cuda,
    /// TensorRT, then CUDA, then CPU.
    TensorRt,
}

/// An execution provider that sessions may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT.
    TensorRt,
    /// NVIDIA CUDA.
    Cuda,
    /// The default CPU provider (always present as the fallback).
    Cpu,
}

/// Options for [`Runtime::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuntimeOptions {
    /// Provider preference.
    pub provider: ProviderChoice,
    /// Intra-op threads of the process's one pool, which every session but a
    /// [`Runtime::caller_pool`]'s shares (so stages running at once do not multiply them); 0
    /// lets ONNX Runtime pick (one per core).
    pub intra_threads: usize,
    /// Sessions per model, so that this many requests can run one model at once (at least 1).
    pub pool_size: usize,
    /// Flush denormal floats to zero in the CPU kernels (`session.set_denormal_as_zero`). The
    /// development embedding model runs ~7x faster with it; results change only below 1e-38.
    pub flush_denormals: bool,
    /// Let the pool's threads spin waiting for work after each run instead of sleeping
    /// (ONNX Runtime's default). Off by default: on a few cores, the threads spinning after
    /// one stage's run take the cores from the stages running beside it and from other
    /// requests (two requests at once on 2 cores: 67-73 ms a pair without spinning, 90-93
    /// with it, `docs/benchmarks.md`), for at most a few milliseconds saved on a lone run.
    pub spinning: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            provider: ProviderChoice::Auto,
            intra_threads: 0,
            pool_size: 1,
            flush_denormals: true,
            spinning: false,
        }
    }
}

/// The loaded ONNX Runtime: the environment, the library it came from and the providers in use.
pub struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
    providers: Vec<Provider>,
    options: RuntimeOptions,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("providers", &self.providers)
            .field("options", &self.options)
            .finish()
    }
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Runtime {
    /// Loads ONNX Runtime from `library` (e.g. `models/runtime/libonnxruntime.so.1.32.0`) once per
    /// process. The path is checked before `ort` sees it (an invalid library would otherwise panic at
    /// first use). A later call naming the same file returns the same runtime; naming another file
    /// is an error, since a process can hold one ONNX Runtime only.
    pub fn init(library: &Path, options: RuntimeOptions) -> Result<Arc<Runtime>> {
        let mut slot = lock(&RUNTIME);
        let canonical = library.canonicalize().map_err(|e| {
            VisionError::Runtime(format!(
                "the ONNX Runtime library {} cannot be opened ({e}); run the model fetch (fetch_default_packs) or pass the right path",
                library.display()
            ))
        })?;
        if let Some(rt) = slot.as_ref() {
            if rt.library == canonical {
                return Ok(rt.clone());
            }
            return Err(VisionError::Runtime(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                rt.library.display(),
                canonical.display()
            )));
        }
        if !canonical.is_file() {
            return Err(VisionError::Runtime(format!(
                "{} is not a file",
                canonical.display()
            )));
        }
        let builder = ort::init_from(&canonical)
            .map_err(|e| VisionError::Runtime(format!("loading {}: {e}", canonical.display())))?;
        // One intra-op pool for the whole process, shared by every session (vision's pools and
        // the diffusion engine's graphs): stages running side by side on several CPU slots
        // share these threads instead of each session bringing a pool of one thread per core.
        let threads = ort::environment::GlobalThreadPoolOptions::default()
            .with_intra_threads(options.intra_threads)
            .and_then(|threads| threads.with_spin_control(options.spinning))
            .map_err(|e| VisionError::Runtime(format!("configuring the thread pool: {e}")))?;
        let env = builder
            .with_name("likeness-vision")
            .with_telemetry(false)
            .with_global_thread_pool(threads)
            .build()
            .map_err(|e| VisionError::Runtime(format!("creating the environment: {e}")))?;
        let providers = select_providers(&canonical, options.provider);
        let rt = Arc::new(Runtime {
            env,
            library: canonical,
            providers,
            options: RuntimeOptions {
                pool_size: options.pool_size.max(1),
                ..options
            },
        });
        tracing::info!(library = %rt.library.display(), providers = ?rt.providers, "ONNX Runtime loaded");
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// The runtime already loaded in this process, if any.
    pub fn current() -> Option<Arc<Runtime>> {
        lock(&RUNTIME).clone()
    }

    /// The library file in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Providers sessions are registered with, in order of preference (CPU last, always present).
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The options in force.
    pub fn options(&self) -> RuntimeOptions {
        self.options
    }

    /// Builds a pool of `options.pool_size` sessions for the model at `path`.
    pub fn pool(&self, path: &Path, name: &str) -> Result<SessionPool> {
        self.pool_of(path, name, self.options.pool_size, false)
    }

    fn pool_of(
        &self,
        path: &Path,
        name: &str,
        size: usize,
        on_caller: bool,
    ) -> Result<SessionPool> {
        let mut sessions = Vec::with_capacity(size);
        for _ in 0..size {
            sessions.push(Mutex::new(self.session(path, on_caller)?));
        }
        let first = lock(&sessions[0]);
        let inputs = first.inputs().iter().map(outlet_info).collect();
        let outputs = first.outputs().iter().map(outlet_info).collect();
        drop(first);
        Ok(SessionPool {
            name: name.to_string(),
            file: path.to_path_buf(),
            sessions,
            next: AtomicUsize::new(0),
            inputs,
            outputs,
        })
    }

    /// A pool of one session per core for a small model whose runs compute on the calling
    /// thread alone (no intra-op threads): its callers spread their runs over the cores
    /// themselves ([`crate::spread`]), which pays on small inputs where the shared pool's
    /// threads mostly wait for each other (MTCNN's P-Net levels and crop batches take only
    /// 10-50% longer on one thread than on the pool's two, while two threads on runs of
    /// their own do twice the work).
    pub fn caller_pool(&self, path: &Path, name: &str) -> Result<SessionPool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.pool_of(path, name, cores.max(self.options.pool_size), true)
    }

    /// The process's ONNX Runtime environment, for code that builds its own sessions (the
    /// diffusion engine) on this runtime.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    /// Whether sessions run on a GPU provider (the first provider is not the CPU).
    pub fn on_gpu(&self) -> bool {
        self.providers.first().is_some_and(|p| *p != Provider::Cpu)
    }

    /// A session builder on this runtime's environment with its options in force: full graph
    /// optimisation, flush-to-zero when `flush_denormals`, the environment's shared intra-op pool
    /// (`intra_threads`), and the execution providers in order (a provider that fails to register falls back to the next, then CPU).
    /// Every session of the process, vision's pools and the diffusion engine's graphs, starts here.
    pub fn session_builder(&self) -> Result<SessionBuilder> {
        self.configured_builder()
            .map_err(|e| VisionError::Runtime(format!("configuring a session: {e}")))
    }

    fn configured_builder(&self) -> std::result::Result<SessionBuilder, String> {
        let mut builder = Session::builder(&self.env)
            .map_err(|e| e.to_string())?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| e.to_string())?;
        if self.options.flush_denormals {
            builder = builder.with_flush_to_zero().map_err(|e| e.to_string())?;
        }
        let eps = gpu_providers(&self.providers);
        if !eps.is_empty() {
            // Registration failures fall back to the next provider, then to CPU (ort's default).
            builder = builder
                .with_execution_providers(eps)
                .map_err(|e| e.to_string())?;
        }
        Ok(builder)
    }

    /// A session for the model at `path`; `on_caller`: with an intra-op pool of its own of one
    /// thread, the calling one, instead of the environment's shared pool.
    fn session(&self, path: &Path, on_caller: bool) -> Result<Session> {
        let model_err = |reason: String| VisionError::Model {
            file: path.to_path_buf(),
            reason,
        };
        let mut builder = self.configured_builder().map_err(model_err)?;
        if on_caller {
            builder = builder
                .with_independent_thread_pool()
                .map_err(|e| model_err(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| model_err(e.to_string()))?;
        }
        builder
            .commit_from_file(path)
            .map_err(|e| model_err(e.to_string()))
    }
}

#[cfg(feature = "gpu")]
fn gpu_providers(providers: &[Provider]) -> Vec<ort::ep::ExecutionProviderDispatch> {
    providers
        .iter()
        .filter_map(|p| match p {
            Provider::TensorRt => Some(ort::ep::TensorRT::default().build()),
            Provider::Cuda => Some(ort::ep::CUDA::default().build()),
            Provider::Cpu => None,
        })
        .collect()
}

#[cfg(not(feature = "gpu"))]
fn gpu_providers(_: &[Provider]) -> Vec<ort::ep::ExecutionProviderDispatch> {
    Vec::new()
}

#[cfg(feature = "gpu")]
fn gpu_available() -> (bool, bool) {
    use ort::ep::ExecutionProvider as _;
    (
        ort::ep::CUDA::is_available().unwrap_or(false),
        ort::ep::TensorRT::is_available().unwrap_or(false),
    )
}

#[cfg(not(feature = "gpu"))]
fn gpu_available() -> (bool, bool) {
    (false, false)
}

fn select_providers(library: &Path, choice: ProviderChoice) -> Vec<Provider> {
    let dir = library.parent().unwrap_or(Path::new("."));
    let has = |name: &str| dir.join(name).is_file();
    let (cuda, trt) = gpu_available();
    let cuda_ok = cuda && has("libonnxruntime_providers_cuda.so");
    let trt_ok = trt && has("libonnxruntime_providers_tensorrt.so");
    let mut out = Vec::new();
    match choice {
        ProviderChoice::Cpu => {}
        ProviderChoice::Auto | ProviderChoice::TensorRt => {
            if trt_ok {
                out.push(Provider::TensorRt);
            }
            if cuda_ok {
                out.push(Provider::Cuda);
            }
        }
        ProviderChoice::Cuda => {
            if cuda_ok {
                out.push(Provider::Cuda);
            }
        }
    }
    out.push(Provider::Cpu);
    out
}

/// A model input or output: its name and shape (-1 for a dynamic dimension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// The tensor's name in the graph.
    pub name: String,
    /// Dimensions; -1 where dynamic.
    pub shape: Vec<i64>,
}

fn outlet_info(o: &ort::value::Outlet) -> TensorInfo {
    let shape = match o.dtype() {
        ValueType::Tensor { shape, .. } => shape.iter().copied().collect(),
        _ => Vec::new(),
    };
    TensorInfo {
        name: o.name().to_string(),
        shape,
    }
}

/// An f32 tensor copied out of a session: shape and data.
#[derive(Debug, Clone)]
pub struct Output {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

/// Sessions for one model, built once and shared: `Session::run` needs `&mut`, so each session
/// sits behind a mutex and a call takes the first free one (or waits for one).
pub struct SessionPool {
    name: String,
    file: PathBuf,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("sessions", &self.sessions.len())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl SessionPool {
    /// The model's inputs.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The model's outputs.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The model file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The model's name in errors (its role).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that the model has an input and outputs of these names.
    pub fn expect(&self, input: &str, outputs: &[&str]) -> Result<()> {
        let missing: Vec<&str> = std::iter::once(input)
            .filter(|n| !self.inputs.iter().any(|i| i.name == *n))
            .chain(
                outputs
                    .iter()
                    .copied()
                    .filter(|n| !self.outputs.iter().any(|o| o.name == *n)),
            )
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(VisionError::Model {
                file: self.file.clone(),
                reason: format!(
                    "expected tensors {missing:?} are absent (inputs {:?}, outputs {:?})",
                    self.inputs.iter().map(|i| &i.name).collect::<Vec<_>>(),
                    self.outputs.iter().map(|o| &o.name).collect::<Vec<_>>()
                ),
            })
        }
    }

    /// Whether the first dimension of the first input is dynamic (the model takes batches).
    pub fn dynamic_batch(&self) -> bool {
        self.inputs
            .first()
            .and_then(|i| i.shape.first())
            .is_some_and(|d| *d < 0)
    }

    /// Runs the model on one f32 input and copies out the named outputs, in the order asked.
    pub fn run(
        &self,
        input: &str,
        shape: &[usize],
        data: Vec<f32>,
        outputs: &[&str],
    ) -> Result<Vec<Output>> {
        self.run_inputs(vec![(input, shape.to_vec(), data)], outputs)
    }

    /// Runs the model on several named f32 inputs (name, shape, data) and copies out the named
    /// outputs, in the order asked.
    pub fn run_inputs(
        &self,
        inputs: Vec<(&str, Vec<usize>, Vec<f32>)>,
        outputs: &[&str],
    ) -> Result<Vec<Output>> {
        let mut values = Vec::with_capacity(inputs.len());
        for (name, shape, data) in inputs {
            let tensor = Tensor::from_array((shape, data))
                .map_err(|e| VisionError::inference(&self.name, e))?;
            values.push((name, ort::session::SessionInputValue::from(tensor)));
        }
        let mut session = self.acquire();
        let result = session
            .run(values)
            .map_err(|e| VisionError::inference(&self.name, e))?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let value = result.get(*name).ok_or_else(|| {
                VisionError::inference(&self.name, format!("no output named {name}"))
            })?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| VisionError::inference(&self.name, e))?;
            out.push(Output {
                shape: shape.iter().map(|d| (*d).max(0) as usize).collect(),
                data: data.to_vec(),
            });
        }
        Ok(out)
    }

    fn acquire(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(guard) = self.sessions[(start + i) % n].try_lock() {
                return guard;
            }
        }
        lock(&self.sessions[start])
    }
}
