//! Likeness: turns a person's photo into an artistic style and keeps the person recognisable.
//!
//! The host owns everything heavy and shared; each style is a sandboxed WebAssembly component
//! (see `wit/style.wit`) that chooses the identity method, builds the prompts and
//! post-processes the image. Module map:
//!
//! - [`wasm`]: the wasmtime engine, the per-call sandbox and typed call errors;
//! - [`style`]: style packages (manifest, validation), the hot-reloading registry, `styles build`;
//! - [`pipeline`]: one generation, from upload to styled image;
//! - [`execute`]: running a plan: its fallbacks in order, the identity gate's retries;
//! - [`identity`]: how much of the person the result kept (the score and the plan's gate);
//! - [`lanes`]: a generation's independent CPU stages side by side within the free CPU slots;
//! - [`admission`]: upload places, the bounded queue, generation slots, CPU slots, each style's
//!   share;
//! - [`breaker`]: a style's circuit breaker;
//! - [`jobs`]: asynchronous generations, their events and their TTL (the embedded queue);
//! - [`queue`]: the Redis Streams queue shared by API nodes and workers;
//! - [`output`]: encoding results (PNG, JPEG, WebP);
//! - [`service`]: the pipeline behind admission, with metrics, jobs and the shutdown drain;
//! - [`metrics`]: the Prometheus metrics;
//! - [`config`]: `likeness serve` settings (file, environment, flags);
//! - [`server`]: the HTTP API;
//! - [`batch`]: `likeness run`, styling photos in-process;
//! - [`scaffold`]: `likeness styles new`, a new style crate from a template.

#![deny(missing_docs)]

pub mod admission;
pub mod batch;
pub mod breaker;
pub mod config;
pub mod diffuse;
pub mod execute;
pub mod identity;
pub mod jobs;
pub mod lanes;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod queue;
pub mod scaffold;
pub mod server;
pub mod service;
pub mod style;
pub mod transfer;
pub mod wasm;
