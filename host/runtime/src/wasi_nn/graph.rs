//! `wasi:nn/graph`: loading a guest's model into ONNX Runtime, after the
//! checks a model from a tenant must pass.

use std::collections::HashMap;
use std::sync::Arc;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;
use wasmtime::component::Resource;

use super::errors::{Answer, Error, cut};
use super::generated::wasi::nn::errors::ErrorCode;
use super::generated::wasi::nn::graph::{self as wit, ExecutionTarget, GraphEncoding};
use super::generated::wasi::nn::tensor::TensorType;
use super::inference::Context;
use super::ledger::{ITEM_BYTES, Kind};
use super::{Held, NnView};

/// A loaded model: its session (one inference at a time) and its inputs'
/// and outputs' names and types.
pub struct Graph(pub(crate) Arc<Loaded>);

pub(crate) struct Loaded {
    pub(crate) session: parking_lot::Mutex<Session>,
    pub(crate) inputs: Vec<Port>,
    pub(crate) outputs: Vec<Port>,
    /// Inputs and outputs by name (a model may have very many).
    pub(crate) input_index: HashMap<String, usize>,
    pub(crate) output_index: HashMap<String, usize>,
    /// The GPU it runs on, if not the CPU: only a call whose work still
    /// holds that GPU may run it (an actor's bundle may have been removed).
    pub(crate) gpu: Option<u32>,
    /// The model's place in the instance's bound, while a graph or an
    /// execution context on it lives.
    _held: Held,
}

impl Loaded {
    fn new(session: Session, held: Held, gpu: Option<u32>) -> Loaded {
        let inputs: Vec<Port> = session
            .inputs
            .iter()
            .map(|i| port(&i.name, &i.input_type))
            .collect();
        let outputs: Vec<Port> = session
            .outputs
            .iter()
            .map(|o| port(&o.name, &o.output_type))
            .collect();
        let index = |ports: &[Port]| {
            ports
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect()
        };
        Loaded {
            input_index: index(&inputs),
            output_index: index(&outputs),
            inputs,
            outputs,
            session: parking_lot::Mutex::new(session),
            gpu,
            _held: held,
        }
    }
}

/// A model's input or output.
pub(crate) struct Port {
    pub(crate) name: String,
    /// `None`: a type `wasi:nn` has no tensor for (a map, a sequence, a
    /// string tensor).
    pub(crate) ty: Option<TensorType>,
}

impl wit::Host for NnView<'_> {
    async fn load(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> Answer<Resource<Graph>> {
        let r = self.load_model(builders, encoding, target).await;
        self.answer(r)
    }

    fn load_by_name(&mut self, name: String) -> Answer<Resource<Graph>> {
        let r = self.backend().and_then(|_| {
            Err(Error::new(
                ErrorCode::NotFound,
                format!(
                    "no model is named {} on this node: load one from its bytes",
                    super::errors::quoted(&name)
                ),
            ))
        });
        self.answer(r)
    }
}

impl NnView<'_> {
    /// Loads the one ONNX model in `builders`, within the instance's bounds.
    async fn load_model(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> Result<Resource<Graph>, Error> {
        let threads = self.backend()?.settings.threads;
        let model = self.checked_model(builders, encoding)?;
        let gpu = self.gpu_for(target)?;
        let gpu_memory = self.backend()?.settings.max_held;
        // A model counts twice its size: ONNX Runtime keeps the weights
        // it read and the copies its optimizations make.
        let size = model.len() as u64;
        let held = self
            .state
            .hold(size.saturating_mul(2), Kind::Model, "this model")?;
        // The model stays counted while ONNX Runtime reads it, even if the
        // call stops waiting for it.
        let loaded = self
            .native(None, move || {
                session(&model, threads, gpu.map(|id| (id, gpu_memory)))
                    .map(|session| Loaded::new(session, held, gpu))
            })
            .await??;
        Ok(self.table.push(Graph(Arc::new(loaded)))?)
    }

    /// The node's ONNX Runtime, if this instance may use it.
    pub(crate) fn backend(&self) -> Result<&Arc<super::NnBackend>, Error> {
        match (&self.state.backend, self.state.granted) {
            (Some(b), _) => Ok(b),
            (None, false) => Err(Error::new(
                ErrorCode::Security,
                "wasi-nn is not granted to this job: its manifest must ask for it \
                 ([capabilities] nn = true) and the operator's policy allow it (grant-nn)",
            )),
            (None, true) => Err(Error::new(
                ErrorCode::UnsupportedOperation,
                "this node has no ONNX Runtime (`[nn] onnxruntime` in its settings)",
            )),
        }
    }

    /// The GPU a model for `target` runs on: none for the CPU; for the
    /// GPU, the first the call's work was given, when this node's ONNX
    /// Runtime can run models with CUDA.
    fn gpu_for(&self, target: ExecutionTarget) -> Result<Option<u32>, Error> {
        match target {
            ExecutionTarget::Cpu => Ok(None),
            ExecutionTarget::Tpu => Err(Error::new(
                ErrorCode::UnsupportedOperation,
                "this node runs models on the CPU, or a GPU with CUDA, not a TPU",
            )),
            ExecutionTarget::Gpu => {
                let Some(&gpu) = self.clock.gpus().first() else {
                    return Err(Error::new(
                        ErrorCode::UnsupportedOperation,
                        "this task or replica was given no whole GPU: ask for one \
                         (num_gpus = 1; a model is not put on a GPU shared by fractions)",
                    ));
                };
                if !self.backend()?.has_cuda() {
                    return Err(Error::new(
                        ErrorCode::UnsupportedOperation,
                        "this node's ONNX Runtime cannot run models on a GPU (no CUDA \
                         execution provider: the node needs onnxruntime-gpu 1.22, CUDA 12)",
                    ));
                }
                Ok(Some(gpu))
            }
        }
    }

    /// The one builder of an ONNX model, within the node's bound and with
    /// no data outside it.
    fn checked_model(
        &self,
        mut builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
    ) -> Result<Vec<u8>, Error> {
        let max = self.backend()?.settings.max_model;
        if !matches!(encoding, GraphEncoding::Onnx | GraphEncoding::Autodetect) {
            return Err(Error::new(
                ErrorCode::InvalidEncoding,
                format!("this node runs ONNX models only, not {encoding:?}"),
            ));
        }
        if builders.len() != 1 {
            return Err(Error::invalid(format!(
                "an ONNX model is one builder, not {}",
                builders.len()
            )));
        }
        let model = builders.pop().unwrap_or_default();
        if model.len() as u64 > max {
            return Err(Error::too_large(format!(
                "the model is {} bytes, past the node's [nn] max-model of {max}",
                model.len()
            )));
        }
        super::onnx_check::refuse_external_data(&model)?;
        Ok(model)
    }
}

/// An ONNX Runtime session for `model`, on `threads` threads (and, with
/// `gpu`, on that GPU through CUDA, within that many bytes of its memory),
/// set up for a tenant's model: read as ONNX only (not ONNX Runtime's own
/// format, whose parser `onnx_check` does not know), no constant folding
/// (which would compute a model's constants, of any size, while it
/// loads), no memory arena on the CPU (what a run took goes back when it
/// ends), its log quiet (its text is the model's).
fn session(model: &[u8], threads: u16, gpu: Option<(u32, u64)>) -> Result<Session, Error> {
    use ort::execution_providers::cuda::CuDNNConvAlgorithmSearch;
    use ort::execution_providers::{
        ArenaExtendStrategy, CPUExecutionProvider, CUDAExecutionProvider, ExecutionProviderDispatch,
    };
    let refused =
        |e: ort::Error| Error::invalid(format!("ONNX Runtime refused the model: {}", cut(e)));
    let cpu = CPUExecutionProvider::default()
        .with_arena_allocator(false)
        .build();
    let mut providers: Vec<ExecutionProviderDispatch> = Vec::with_capacity(2);
    if let Some((device, memory)) = gpu {
        // Its arena grows by what each run asks, up to the bound; a
        // model's operators CUDA lacks run on the CPU beside it.
        // cuDNN's exhaustive search of convolution algorithms takes its
        // workspace outside the arena's limit (gigabytes): a heuristic
        // choice, with no maximal workspace, keeps within it.
        let cuda = CUDAExecutionProvider::default()
            .with_device_id(device as i32)
            .with_memory_limit(memory as usize)
            .with_arena_extend_strategy(ArenaExtendStrategy::SameAsRequested)
            .with_conv_algorithm_search(CuDNNConvAlgorithmSearch::Heuristic)
            .with_conv_max_workspace(false)
            .build()
            .error_on_failure();
        providers.push(cuda);
    }
    providers.push(cpu);
    let on_gpu = gpu.is_some();
    let quiet = Session::builder()
        .and_then(|b| b.with_config_entry("session.load_model_format", "ONNX"))
        .and_then(|b| b.with_log_level(ort::logging::LogLevel::Fatal))
        .map_err(|e| Error::runtime(format!("ONNX Runtime: {}", cut(e))))?;
    let placed = quiet
        .with_execution_providers(providers)
        .map_err(|_| match on_gpu {
            // CUDA, cuDNN or the driver is missing here (the library the GPU
            // wheel ships lists CUDA even then).
            true => Error::new(
                ErrorCode::UnsupportedOperation,
                "this node's ONNX Runtime could not start CUDA for this model",
            ),
            false => Error::runtime("ONNX Runtime could not start its CPU provider"),
        })?;
    placed
        .with_intra_threads(usize::from(threads))
        .and_then(|b| b.with_inter_threads(1))
        .and_then(|b| b.with_intra_op_spinning(false))
        .and_then(|b| b.with_memory_pattern(false))
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
        .and_then(|b| b.with_disabled_optimizers("ConstantFolding"))
        .map_err(|e| Error::runtime(format!("ONNX Runtime: {}", cut(e))))?
        .commit_from_memory(model)
        .map_err(refused)
}

fn port(name: &str, ty: &ValueType) -> Port {
    use ort::tensor::TensorElementType as E;
    let ty = match ty {
        ValueType::Tensor { ty, .. } => match ty {
            E::Float32 => Some(TensorType::Fp32),
            E::Float64 => Some(TensorType::Fp64),
            E::Float16 => Some(TensorType::Fp16),
            E::Bfloat16 => Some(TensorType::Bf16),
            E::Uint8 => Some(TensorType::U8),
            E::Int32 => Some(TensorType::I32),
            E::Int64 => Some(TensorType::I64),
            _ => None,
        },
        _ => None,
    };
    Port {
        name: name.to_string(),
        ty,
    }
}

impl wit::HostGraph for NnView<'_> {
    fn init_execution_context(&mut self, graph: Resource<Graph>) -> Answer<Resource<Context>> {
        let graph = self.table.get(&graph)?.0.clone();
        let r = self
            .state
            .hold(ITEM_BYTES, Kind::Small, "an execution context")
            .map(|held| Context { graph, _held: held });
        let r = match r {
            Ok(context) => self.table.push(context).map_err(Error::from),
            Err(e) => Err(e),
        };
        self.answer(r)
    }

    fn drop(&mut self, graph: Resource<Graph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}
