//! The per-call sandbox: a style instance's store state, what it may touch and what it may use.
//!
//! Every call gets a fresh [`Sandbox`]: WASI with no capability granted (no environment, no
//! arguments, no network, stdin empty, stdout/stderr captured into a bounded buffer, clocks in
//! whole milliseconds), except a
//! read-only `/assets` pre-open when the style's manifest asks for it; a memory cap enforced by a
//! [`ResourceLimiter`]; and the call's [`Budget`] (CPU time, wall-clock ceiling) checked at every
//! epoch tick.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2};
use super::budget::{Budget, Limit};
use super::clock::{CoarseMonotonicClock, CoarseWallClock};

/// Most bytes of stdout + stderr kept from one call; the rest is dropped.
const OUTPUT_CAP: usize = 64 * 1024;
/// Most `log` messages kept from one call.
const LOG_MESSAGES_CAP: usize = 64;
/// Longest `log` message kept (longer ones are cut).
const LOG_MESSAGE_CAP: usize = 4 * 1024;

/// Why a call was stopped by the sandbox rather than failing on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The call used its CPU budget or ran past its wall-clock ceiling.
    Time(Limit),
    /// The guest asked for more memory than its cap: linear memory, or host-held `canvas`
    /// images.
    Memory,
}

/// The store state of one style instance.
pub struct Sandbox {
    style: String,
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: usize,
    /// Bytes of linear memory the instance's memories hold.
    linear_bytes: usize,
    /// Bytes of pixels the instance's live `canvas` images hold (they count against the same
    /// cap as linear memory).
    image_bytes: usize,
    budget: Arc<Budget>,
    stopped: Option<Stop>,
    output: GuestOutput,
    log_messages: usize,
}

impl Sandbox {
    /// A sandbox for one call of `style`, within `budget`, with `assets` pre-opened
    /// read-only at `/assets` when given.
    pub fn new(
        style: &str,
        memory_cap: usize,
        budget: Arc<Budget>,
        assets: Option<&Path>,
    ) -> wasmtime::Result<Self> {
        let output = GuestOutput::default();
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(output.clone())
            .stderr(output.clone())
            .wall_clock(CoarseWallClock)
            .monotonic_clock(CoarseMonotonicClock::new())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = assets {
            builder.preopened_dir(dir, "/assets", FsPerms::ReadOnly)?;
        }
        Ok(Sandbox {
            style: style.to_string(),
            wasi: builder.build(),
            table: ResourceTable::new(),
            memory_cap,
            linear_bytes: 0,
            image_bytes: 0,
            budget,
            stopped: None,
            output,
            log_messages: 0,
        })
    }

    /// Why the sandbox stopped the call, if it did.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped
    }

    /// The call's budget.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Decides at an epoch tick (on the thread running the guest) whether the guest may go on.
    pub(crate) fn out_of_time(&mut self) -> bool {
        match self.budget.exceeded() {
            Some(limit) => {
                self.stopped = Some(Stop::Time(limit));
                true
            }
            None => false,
        }
    }

    /// Writes what the guest printed into the host's log, tagged with the style id.
    pub fn flush_output(&self) {
        let (bytes, dropped) = self.output.take();
        if bytes.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(&bytes).lines() {
            tracing::info!(target: "likeness::style_output", style = %self.style, "{line}");
        }
        if dropped > 0 {
            tracing::warn!(target: "likeness::style_output", style = %self.style, dropped, "style output over {OUTPUT_CAP} bytes was dropped");
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let linear = self
            .linear_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        if linear.saturating_add(self.image_bytes) > self.memory_cap {
            self.stopped = Some(Stop::Memory);
            wasmtime::bail!(
                "style '{}' asked for {} MiB of memory (holding {} MiB of canvas images); its \
                 cap is {} MiB",
                self.style,
                linear >> 20,
                self.image_bytes >> 20,
                self.memory_cap >> 20
            );
        }
        self.linear_bytes = linear;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element costs a pointer; hold tables to a small share of the memory cap.
        Ok(desired.saturating_mul(size_of::<usize>()) <= self.memory_cap / 16)
    }
}

impl Sandbox {
    /// The instance's resource table (the images of `canvas` live here).
    pub(crate) fn table(&self) -> &ResourceTable {
        &self.table
    }

    /// The instance's resource table, to change.
    pub(crate) fn table_mut(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Checks that `bytes` more of host memory (a `canvas` image about to be made, or an
    /// operation's working buffers) fit under the memory cap beside the instance's linear
    /// memory and live images; otherwise the call stops with the memory limit.
    pub(crate) fn admit_bytes(&mut self, bytes: usize, what: &str) -> wasmtime::Result<()> {
        let total = self
            .linear_bytes
            .saturating_add(self.image_bytes)
            .saturating_add(bytes);
        if total > self.memory_cap {
            self.stopped = Some(Stop::Memory);
            wasmtime::bail!(
                "style '{}': {what} needs {} MiB beside {} MiB of linear memory and {} MiB of \
                 canvas images; its cap is {} MiB",
                self.style,
                bytes.div_ceil(1 << 20),
                self.linear_bytes >> 20,
                self.image_bytes >> 20,
                self.memory_cap >> 20
            );
        }
        Ok(())
    }

    /// Counts a live image's `bytes` against the memory cap (after [`Sandbox::admit_bytes`]).
    pub(crate) fn hold_image_bytes(&mut self, bytes: usize) {
        self.image_bytes = self.image_bytes.saturating_add(bytes);
    }

    /// Stops counting a dropped image's `bytes`.
    pub(crate) fn release_image_bytes(&mut self, bytes: usize) {
        self.image_bytes = self.image_bytes.saturating_sub(bytes);
    }

    /// Fails (and stops the call with its time limit) when the call's budget is spent: checked
    /// around every native `canvas` operation, whose CPU time is the guest's own (it runs on
    /// the thread polling the guest, inside the metered slice).
    pub(crate) fn check_budget(&mut self, what: &str) -> wasmtime::Result<()> {
        if self.out_of_time() {
            wasmtime::bail!(
                "style '{}': the call's budget ran out in {what}",
                self.style
            );
        }
        Ok(())
    }

    /// A `log` call: kept up to [`LOG_MESSAGES_CAP`] messages of [`LOG_MESSAGE_CAP`] bytes.
    fn log(&mut self, level: v0_2::Level, message: String) {
        self.log_messages += 1;
        if self.log_messages > LOG_MESSAGES_CAP {
            if self.log_messages == LOG_MESSAGES_CAP + 1 {
                tracing::warn!(style = %self.style, "style logged over {LOG_MESSAGES_CAP} messages in one call; the rest are dropped");
            }
            return;
        }
        let mut message = message;
        if message.len() > LOG_MESSAGE_CAP {
            let mut end = LOG_MESSAGE_CAP;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let style = self.style.as_str();
        match level {
            v0_2::Level::Trace => {
                tracing::trace!(target: "likeness::style_log", style, "{message}")
            }
            v0_2::Level::Debug => {
                tracing::debug!(target: "likeness::style_log", style, "{message}")
            }
            v0_2::Level::Info => tracing::info!(target: "likeness::style_log", style, "{message}"),
            v0_2::Level::Warn => tracing::warn!(target: "likeness::style_log", style, "{message}"),
            v0_2::Level::Error => {
                tracing::error!(target: "likeness::style_log", style, "{message}")
            }
        }
    }
}

impl v0_2::likeness::style::log::Host for Sandbox {
    fn log(&mut self, level: v0_2::Level, message: String) -> wasmtime::Result<()> {
        Sandbox::log(self, level, message);
        Ok(())
    }
}

impl v0_1::likeness::style::log::Host for Sandbox {
    fn log(&mut self, level: v0_1::Level, message: String) {
        let level = match level {
            v0_1::Level::Trace => v0_2::Level::Trace,
            v0_1::Level::Debug => v0_2::Level::Debug,
            v0_1::Level::Info => v0_2::Level::Info,
            v0_1::Level::Warn => v0_2::Level::Warn,
            v0_1::Level::Error => v0_2::Level::Error,
        };
        Sandbox::log(self, level, message);
    }
}

impl v0_2::likeness::style::types::Host for Sandbox {}

impl v0_1::likeness::style::types::Host for Sandbox {}

/// A guest's stdout/stderr: kept up to [`OUTPUT_CAP`] bytes, the rest counted and dropped.
/// Writes never fail, so a chatty guest is never killed for printing.
#[derive(Clone, Default)]
struct GuestOutput(Arc<Mutex<OutputBuffer>>);

#[derive(Default)]
struct OutputBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl GuestOutput {
    fn push(&self, data: &[u8]) {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = OUTPUT_CAP.saturating_sub(buffer.bytes.len());
        let kept = room.min(data.len());
        buffer.bytes.extend_from_slice(&data[..kept]);
        buffer.dropped += data.len() - kept;
    }

    fn take(&self) -> (Vec<u8>, usize) {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = std::mem::take(&mut buffer.dropped);
        (std::mem::take(&mut buffer.bytes), dropped)
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(OUTPUT_CAP)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
