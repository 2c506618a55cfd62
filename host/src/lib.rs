//! Likeness: turns a person's photo into an artistic style and keeps the person recognisable.
//!
//! The host owns everything heavy and shared; each style is a sandboxed WebAssembly component
//! (see `wit/style.wit`) that chooses the identity method, builds the prompts and
//! post-processes the image. Module map:
//!
//! - [`runtime`]: the wasmtime engine, the per-call sandbox and typed call errors;
//! - [`style`]: style packages (manifest, validation), the hot-reloading registry, `styles build`;
//! - [`server`]: the HTTP API.

pub mod runtime;
pub mod server;
pub mod style;
