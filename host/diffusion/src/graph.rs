//! The ONNX Runtime layer of the engine: lazily built sessions run through I/O bindings
//! ([`Graph`]).
//!
//! The environment and the execution-provider choice belong to [`likeness_vision::Runtime`], the
//! process's one owner of ONNX Runtime (which allows one environment per process): every graph
//! builds its session from [`Runtime::session_builder`], so vision and diffusion share the
//! environment, the providers, the thread count and the session options.
//!
//! Tensors: inputs are converted to each graph input's element type (fp32, fp16, int64), so one
//! engine runs fp32 and fp16 packs. On a GPU provider, constant inputs are uploaded once per
//! generation and outputs that feed another graph (ControlNet residuals) stay in device memory;
//! outputs the host needs (the UNet's prediction, the decoded image) are bound to CPU memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use half::f16;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use likeness_vision::Runtime;

use crate::error::DiffusionError;
use crate::onnx::ElemType;
use crate::pack::GraphInfo;

/// Finds the ONNX Runtime library: `ORT_DYLIB_PATH` when it names a file, else the newest
/// `<root>/models/runtime/libonnxruntime.so*` (see also
/// [`likeness_vision::fetch::runtime_library_path`], the file the model fetch installs).
pub fn locate_library(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
        && p.is_file()
    {
        return Some(p);
    }
    let dir = root.join("models").join("runtime");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Builds the session of one pack graph from the shared runtime's configured builder.
fn build_session(runtime: &Runtime, info: &GraphInfo) -> Result<Session, DiffusionError> {
    runtime
        .session_builder()
        .map_err(|e| DiffusionError::inference(info.role.key(), e))?
        .commit_from_file(&info.path)
        .map_err(|e| {
            DiffusionError::inference(info.role.key(), format!("{}: {e}", info.path.display()))
        })
}

/// Device memory for outputs that stay on the GPU; `None` on CPU.
fn device_memory(runtime: &Runtime) -> Option<MemoryInfo<'static>> {
    if !runtime.on_gpu() {
        return None;
    }
    MemoryInfo::new(
        AllocationDevice::CUDA,
        0,
        AllocatorType::Device,
        MemoryType::Default,
    )
    .ok()
}

/// A host tensor: shape and f32 data (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> HostTensor {
        HostTensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// Rows of the first dimension stacked: `[a; b]` for tensors of equal trailing shape.
    pub fn concat0(parts: &[&HostTensor]) -> HostTensor {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        HostTensor {
            shape,
            data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
        }
    }

    /// Concatenation along axis 1 of 3-d tensors `[B, S_i, C]`.
    pub fn concat1(parts: &[&HostTensor]) -> HostTensor {
        let b = parts[0].shape[0];
        let c = parts[0].shape[2];
        let s: usize = parts.iter().map(|p| p.shape[1]).sum();
        let mut data = Vec::with_capacity(b * s * c);
        for row in 0..b {
            for p in parts {
                let n = p.shape[1] * c;
                data.extend_from_slice(&p.data[row * n..(row + 1) * n]);
            }
        }
        HostTensor {
            shape: vec![b, s, c],
            data,
        }
    }

    /// Concatenation along the last axis of `[B, S, C_i]` tensors.
    pub fn concat_last(parts: &[&HostTensor]) -> HostTensor {
        let rows: usize = parts[0].shape[..parts[0].shape.len() - 1].iter().product();
        let widths: Vec<usize> = parts
            .iter()
            .map(|p| *p.shape.last().unwrap_or(&0))
            .collect();
        let total: usize = widths.iter().sum();
        let mut data = Vec::with_capacity(rows * total);
        for r in 0..rows {
            for (p, w) in parts.iter().zip(&widths) {
                data.extend_from_slice(&p.data[r * w..(r + 1) * w]);
            }
        }
        let mut shape = parts[0].shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = total;
        }
        HostTensor { shape, data }
    }

    /// The same rows repeated `n` times along the first axis.
    pub fn repeat0(&self, n: usize) -> HostTensor {
        let mut shape = self.shape.clone();
        shape[0] *= n;
        HostTensor {
            shape,
            data: self.data.repeat(n),
        }
    }
}

/// One input for [`Graph::run`].
pub enum Feed<'a> {
    /// f32 host data, converted to the input's element type.
    Host(&'a HostTensor),
    /// int64 host data (token ids).
    Ids(&'a [usize], &'a [i64]),
    /// A value already prepared for this graph (see [`Graph::prepare`]) or produced by another.
    Value(&'a DynValue),
}

/// Where an output should be left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// CPU memory, for the host to read.
    Host,
    /// The provider's device memory (CPU memory on CPU), to feed another graph.
    Device,
}

/// A graph of the pack with its lazily built session.
pub struct Graph {
    info: GraphInfo,
    runtime: Arc<Runtime>,
    session: Mutex<Option<Session>>,
    run_nanos: AtomicU64,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("role", &self.info.role)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Graph {
    /// A graph whose session is built at first use.
    pub fn new(info: GraphInfo, runtime: Arc<Runtime>) -> Graph {
        Graph {
            info,
            runtime,
            session: Mutex::new(None),
            run_nanos: AtomicU64::new(0),
        }
    }

    /// The verified pack entry.
    pub fn info(&self) -> &GraphInfo {
        &self.info
    }

    fn role(&self) -> &'static str {
        self.info.role.key()
    }

    /// Time spent inside ONNX Runtime's `run` for this graph since it was created.
    pub fn ort_time(&self) -> Duration {
        Duration::from_nanos(self.run_nanos.load(Ordering::Relaxed))
    }

    /// Whether the graph has an input of this name.
    pub fn has_input(&self, name: &str) -> bool {
        self.info.signature.input(name).is_some()
    }

    /// Builds the session now (warm-up) if it is not built yet.
    pub fn ensure_loaded(&self) -> Result<(), DiffusionError> {
        let mut guard = lock(&self.session);
        if guard.is_none() {
            *guard = Some(build_session(&self.runtime, &self.info)?);
        }
        Ok(())
    }

    /// Converts host data for input `name` (element type, scalar rank) and, on a GPU, uploads it,
    /// so that a value used at every step crosses the bus once.
    pub fn prepare(&self, name: &str, t: &HostTensor) -> Result<DynValue, DiffusionError> {
        let v = self.host_value(name, t)?;
        self.upload(v)
    }

    fn upload(&self, v: DynValue) -> Result<DynValue, DiffusionError> {
        if !self.runtime.on_gpu() {
            return Ok(v);
        }
        let tensor = v
            .downcast::<ort::value::DynTensorValueType>()
            .map_err(|e| DiffusionError::inference(self.role(), e))?;
        tensor
            .to(AllocationDevice::CUDA, 0)
            .map(|t| t.into_dyn())
            .map_err(|e| DiffusionError::inference(self.role(), e))
    }

    fn host_value(&self, name: &str, t: &HostTensor) -> Result<DynValue, DiffusionError> {
        let sig = self.info.signature.input(name).ok_or_else(|| {
            DiffusionError::inference(self.role(), format!("has no input `{name}`"))
        })?;
        let expected: usize = t.shape.iter().product();
        if expected != t.data.len() {
            return Err(DiffusionError::inference(
                self.role(),
                format!(
                    "input `{name}`: shape {:?} does not match {} values",
                    t.shape,
                    t.data.len()
                ),
            ));
        }
        // Scalars: rank-0 inputs take one value.
        let (shape, data): (Vec<usize>, &[f32]) = if sig.rank() == Some(0) {
            (Vec::new(), &t.data[..t.data.len().min(1)])
        } else {
            (t.shape.clone(), &t.data[..])
        };
        let err =
            |e: ort::Error| DiffusionError::inference(self.role(), format!("input `{name}`: {e}"));
        let value = match sig.elem.unwrap_or(ElemType::F32) {
            ElemType::F32 => Tensor::from_array((shape, data.to_vec()))
                .map_err(err)?
                .into_dyn(),
            ElemType::F16 => {
                let v: Vec<f16> = data.iter().map(|x| f16::from_f32(*x)).collect();
                Tensor::from_array((shape, v)).map_err(err)?.into_dyn()
            }
            ElemType::F64 => {
                let v: Vec<f64> = data.iter().map(|x| f64::from(*x)).collect();
                Tensor::from_array((shape, v)).map_err(err)?.into_dyn()
            }
            ElemType::I64 => {
                let v: Vec<i64> = data.iter().map(|x| x.round() as i64).collect();
                Tensor::from_array((shape, v)).map_err(err)?.into_dyn()
            }
            ElemType::I32 => {
                let v: Vec<i32> = data.iter().map(|x| x.round() as i32).collect();
                Tensor::from_array((shape, v)).map_err(err)?.into_dyn()
            }
            ElemType::Other(n) => {
                return Err(DiffusionError::inference(
                    self.role(),
                    format!(
                        "input `{name}` has ONNX element type {n}, which the engine cannot feed"
                    ),
                ));
            }
        };
        Ok(value)
    }

    fn ids_value(
        &self,
        name: &str,
        shape: &[usize],
        ids: &[i64],
    ) -> Result<DynValue, DiffusionError> {
        let err =
            |e: ort::Error| DiffusionError::inference(self.role(), format!("input `{name}`: {e}"));
        let elem = self.info.signature.input(name).and_then(|s| s.elem);
        Ok(match elem {
            Some(ElemType::I32) => {
                let v: Vec<i32> = ids.iter().map(|x| *x as i32).collect();
                Tensor::from_array((shape.to_vec(), v))
                    .map_err(err)?
                    .into_dyn()
            }
            _ => Tensor::from_array((shape.to_vec(), ids.to_vec()))
                .map_err(err)?
                .into_dyn(),
        })
    }

    /// Runs the graph: binds the inputs, binds each output to `Place`, runs, and returns the
    /// outputs in the order asked.
    pub fn run(
        &self,
        feeds: &[(&str, Feed<'_>)],
        outputs: &[(&str, Place)],
    ) -> Result<Vec<DynValue>, DiffusionError> {
        let err = |e: ort::Error| DiffusionError::inference(self.role(), e);
        let mut owned: Vec<(&str, DynValue)> = Vec::new();
        for (name, feed) in feeds {
            match feed {
                Feed::Host(t) => owned.push((name, self.host_value(name, t)?)),
                Feed::Ids(shape, ids) => owned.push((name, self.ids_value(name, shape, ids)?)),
                Feed::Value(_) => {}
            }
        }
        let mut guard = lock(&self.session);
        if guard.is_none() {
            *guard = Some(build_session(&self.runtime, &self.info)?);
        }
        let Some(session) = guard.as_mut() else {
            return Err(DiffusionError::inference(
                self.role(),
                "the session is not loaded",
            ));
        };
        let mut binding = session.create_binding().map_err(err)?;
        for (name, feed) in feeds {
            if let Feed::Value(v) = feed {
                binding.bind_input(*name, *v).map_err(err)?;
            }
        }
        for (name, v) in &owned {
            binding.bind_input(*name, v).map_err(err)?;
        }
        let cpu = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(err)?;
        let device = device_memory(&self.runtime);
        for (name, place) in outputs {
            let mem = match (place, &device) {
                (Place::Device, Some(d)) => d,
                _ => &cpu,
            };
            binding.bind_output_to_device(*name, mem).map_err(err)?;
        }
        let started = Instant::now();
        let mut result = session.run_binding(&binding).map_err(err)?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.run_nanos.fetch_add(nanos, Ordering::Relaxed);
        outputs
            .iter()
            .map(|(name, _)| {
                result.remove(*name).ok_or_else(|| {
                    DiffusionError::inference(self.role(), format!("produced no output `{name}`"))
                })
            })
            .collect()
    }

    /// Copies a host-placed output into a [`HostTensor`] (fp16 and fp64 are widened/narrowed).
    pub fn to_host(&self, v: &DynValue) -> Result<HostTensor, DiffusionError> {
        let shape_of =
            |s: &ort::value::Shape| s.iter().map(|d| (*d).max(0) as usize).collect::<Vec<_>>();
        if let Ok((s, d)) = v.try_extract_tensor::<f32>() {
            return Ok(HostTensor {
                shape: shape_of(s),
                data: d.to_vec(),
            });
        }
        if let Ok((s, d)) = v.try_extract_tensor::<f16>() {
            return Ok(HostTensor {
                shape: shape_of(s),
                data: d.iter().map(|x| x.to_f32()).collect(),
            });
        }
        match v.try_extract_tensor::<f64>() {
            Ok((s, d)) => Ok(HostTensor {
                shape: shape_of(s),
                data: d.iter().map(|x| *x as f32).collect(),
            }),
            Err(e) => Err(DiffusionError::inference(
                self.role(),
                format!("cannot read an output: {e}"),
            )),
        }
    }

    /// Runs and copies every output to the host.
    pub fn run_host(
        &self,
        feeds: &[(&str, Feed<'_>)],
        outputs: &[&str],
    ) -> Result<Vec<HostTensor>, DiffusionError> {
        let places: Vec<(&str, Place)> = outputs.iter().map(|n| (*n, Place::Host)).collect();
        self.run(feeds, &places)?
            .iter()
            .map(|v| self.to_host(v))
            .collect()
    }
}
