//! `wasi:nn`: model inference for guests, on ONNX Runtime, off unless the
//! operator enables it.
//!
//! A guest loads an ONNX model from bytes it holds (`graph.load`), opens an
//! execution context on it and computes: tensors in, tensors out. The model
//! runs in ONNX Runtime, native code outside the sandbox, loaded at run time
//! from the library an `onnxruntime` wheel ships (`[nn] onnxruntime` in the
//! node's settings), so it is off on a node that names none, and a job gets
//! it only when its manifest asks (`[capabilities] nn = true`) and the
//! operator's policy allows it (`grant-nn = true`). Because the model is
//! parsed by native code, [`graph`] refuses models that reference files
//! (external data) and models past `[nn] max-model`, and the memory a
//! guest's models and tensors hold on the host is bounded per instance and
//! charged to its tenant (SECURITY.md says what is left to trust).
//!
//! ```
//! use fabric_runtime::config::{NodeConfig, NodeFile};
//! let file = NodeFile::parse(r#"
//!     [nn]
//!     onnxruntime = "/opt/ort/libonnxruntime.so.1.22.1"
//!     max-model = "64 MiB"
//!     [policy]
//!     grant-nn = true
//! "#).unwrap();
//! let mut cfg = NodeConfig::default();
//! file.apply(&mut cfg).unwrap();
//! assert_eq!(cfg.nn.unwrap().max_model, 64 << 20);
//! assert!(NodeFile::parse("[nn]\nthreads = 1\nbogus = 1").is_err(), "unknown keys are errors");
//! ```
//!
//! One file per WIT interface: [`graph`] (loading), [`inference`]
//! (computing), [`tensor`] and [`errors`]; [`onnx_check`] reads a model's
//! structure before ONNX Runtime does, [`backend`] loads ONNX Runtime,
//! [`ledger`] keeps what each instance holds within its bounds, and
//! [`places`] shares the node's CPUs between tenants' native work.

mod backend;
mod errors;
mod graph;
mod inference;
mod ledger;
mod onnx_check;
mod places;
mod tensor;

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::error::FabricError;
use crate::limits::exceeded;
use crate::runtime::engine::EPOCH_TICK;
use crate::runtime::instance::InstanceState;

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        world: "wasi:nn/ml",
        path: "../../wit/deps/wasi-nn",
        with: {
            "wasi:nn/graph.graph": super::graph::Graph,
            "wasi:nn/tensor.tensor": super::tensor::Tensor,
            "wasi:nn/inference.graph-execution-context": super::inference::Context,
            "wasi:nn/errors.error": super::errors::Error,
        },
        imports: {
            // ONNX Runtime reads models and runs them on blocking threads,
            // not on the node's workers: only these two wait.
            "wasi:nn/graph.load": async | trappable,
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            default: trappable,
        },
    });
}

pub use backend::{NnBackend, NnSettings};
pub(crate) use ledger::{Held, NnState};

/// What the generated traits are implemented on.
pub(crate) struct NnView<'a> {
    state: &'a mut NnState,
    table: &'a mut ResourceTable,
    clock: CpuClock<'a>,
}

/// The current call's CPU time, which ONNX Runtime's work counts in: it
/// runs on the guest's behalf, as its wasm does.
pub(crate) struct CpuClock<'a> {
    pub(crate) ticks: &'a mut u64,
    pub(crate) max_ticks: u64,
    pub(crate) breach: &'a mut Option<FabricError>,
    /// The call's work: a model may run on the first GPU it holds whole.
    pub(crate) exec: Option<&'a crate::runtime::instance::ExecContext>,
}

impl CpuClock<'_> {
    /// The GPUs the call's work holds whole (read only by GPU models:
    /// every other `wasi:nn` call leaves the lease alone).
    pub(crate) fn gpus(&self) -> Vec<u32> {
        self.exec
            .map_or_else(Vec::new, crate::host_api::context::whole_gpu_ids)
    }
}

impl CpuClock<'_> {
    /// CPU time the call has left.
    fn left(&self) -> Duration {
        let ticks = self.max_ticks.saturating_sub(*self.ticks);
        EPOCH_TICK.saturating_mul(ticks.min(u64::from(u32::MAX)) as u32)
    }

    /// Counts `spent` (with what earlier calls left of a tick, in `carry`);
    /// past the limit, the call ends as its wasm would.
    fn count(&mut self, spent: Duration, carry: &mut Duration) -> Result<(), errors::Error> {
        let total = carry.saturating_add(spent);
        let ticks = (total.as_nanos() / EPOCH_TICK.as_nanos()).min(u128::from(u32::MAX)) as u32;
        *carry = total.saturating_sub(EPOCH_TICK.saturating_mul(ticks));
        *self.ticks = self.ticks.saturating_add(u64::from(ticks));
        if *self.ticks <= self.max_ticks {
            return Ok(());
        }
        Err(self.exhausted())
    }

    /// The call is out of CPU time: it ends as its wasm would, with a
    /// `cpu-time` breach.
    fn exhausted(&mut self) -> errors::Error {
        let ms = self.max_ticks.saturating_mul(EPOCH_TICK.as_millis() as u64);
        *self.breach = Some(exceeded(
            "cpu-time",
            ms,
            format!("the call ran for over {ms} ms of CPU time (in wasi-nn)"),
        ));
        errors::Error::trap("CPU time limit reached")
    }
}

/// Asks ONNX Runtime to stop a run when dropped, unless the run ended:
/// a call that stops waiting (its deadline, its CPU time, its instance
/// killed) leaves no native work behind.
struct StopOnDrop(Option<std::sync::Arc<ort::session::RunOptions>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(run) = self.0.take() {
            let _ = run.terminate();
        }
    }
}

impl NnView<'_> {
    /// Runs `work` (ONNX Runtime's) on a blocking thread, within the call's
    /// CPU time, which it counts in. It holds one of the node's places for
    /// native work (of its tenant's share) while it runs, even after the
    /// call stopped waiting, so abandoned work still bounds what more can
    /// start.
    async fn native<T: Send + 'static>(
        &mut self,
        stop: Option<std::sync::Arc<ort::session::RunOptions>>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, errors::Error> {
        let backend = self.backend()?;
        let (places, threads) = (backend.places.clone(), backend.settings.threads);
        let mut guard = StopOnDrop(stop);
        let place = places.take(&self.state.tenant).await?;
        let task = tokio::task::spawn_blocking(move || {
            let _place = place;
            let started = Instant::now();
            (work(), started.elapsed())
        });
        // Its time counts once per thread, so it may run this long.
        let left = self.clock.left() / u32::from(threads);
        match tokio::time::timeout(left, task).await {
            Ok(Ok((value, spent))) => {
                guard.0 = None;
                // Each of its threads may have been busy all along.
                let spent = spent.saturating_mul(u32::from(threads));
                self.clock.count(spent, &mut self.state.cpu_carry)?;
                Ok(value)
            }
            Ok(Err(e)) => Err(errors::Error::runtime(format!(
                "ONNX Runtime's work stopped: {e}"
            ))),
            // Out of CPU time: the guard stops the run.
            Err(_) => {
                *self.clock.ticks = self.clock.max_ticks.saturating_add(1);
                Err(self.clock.exhausted())
            }
        }
    }
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = NnView<'a>;
}

fn view(s: &mut InstanceState) -> NnView<'_> {
    let (state, table, clock) = s.nn_parts();
    NnView {
        state,
        table,
        clock,
    }
}

/// Links `wasi:nn` into `linker`. Every guest may import it; only a granted
/// one gets past `load`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    use generated::wasi::nn;
    nn::errors::add_to_linker::<_, HasNn>(linker, view)?;
    nn::tensor::add_to_linker::<_, HasNn>(linker, view)?;
    nn::graph::add_to_linker::<_, HasNn>(linker, view)?;
    nn::inference::add_to_linker::<_, HasNn>(linker, view)?;
    Ok(())
}
