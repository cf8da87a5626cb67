//! Model inference through `wasi:nn` (the SDK's `nn` feature): load an ONNX
//! model from bytes once, then run it on tensors.
//!
//! The node runs the model in ONNX Runtime, on the CPU its task or replica
//! holds; a job gets this only when its manifest asks for it
//! (`[capabilities] nn = true`), the operator allows it (`grant-nn`) and
//! the node has ONNX Runtime (`fabric start --onnxruntime FILE-OR-DIR`).
//!
//! ```no_run
//! use fabric::nn::{Model, Tensor};
//! # fn demo(model_bytes: &[u8], pixels: &[f32]) -> Result<(), fabric::nn::NnError> {
//! let model = Model::onnx(model_bytes)?; // once: in a replica's constructor
//! let outputs = model.run(&[("X", Tensor::f32(&[1, 64], pixels))])?;
//! let digit = outputs.get("label").and_then(Tensor::to_i64).unwrap()[0];
//! # Ok(()) }
//! ```
//!
//! examples/digits is a whole replica.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit/deps/wasi-nn",
        world: "ml",
        runtime_path: "::fabric::__rt::wit_bindgen_rt",
    });
}

use bindings::wasi::nn::{errors, graph, inference, tensor};

/// The `wasi:nn` bindings themselves. Not a stable API.
#[doc(hidden)]
pub use bindings::wasi::nn as raw;

pub use errors::ErrorCode;
pub use tensor::TensorType;

/// A failed `wasi:nn` call: its code and the node's message.
#[derive(Debug, Clone, PartialEq)]
pub struct NnError {
    /// What kind of failure (`InvalidArgument`, `TooLarge`, `Security`, ...).
    pub code: ErrorCode,
    /// What the node said, for people.
    pub message: String,
}

impl std::fmt::Display for NnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasi-nn {:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for NnError {}

impl From<errors::Error> for NnError {
    fn from(e: errors::Error) -> Self {
        NnError {
            code: e.code(),
            message: e.data(),
        }
    }
}

/// A model loaded on the node, with an execution context to run it.
pub struct Model {
    // Declared first: the context goes before the graph it runs.
    context: inference::GraphExecutionContext,
    _graph: graph::Graph,
}

impl Model {
    /// Loads an ONNX model (with its weights inside it) to run on the CPU.
    /// The bytes are copied to the host (`wasi:nn` takes a list it owns).
    pub fn onnx(bytes: &[u8]) -> Result<Model, NnError> {
        Self::load(bytes, graph::ExecutionTarget::Cpu)
    }

    /// Loads an ONNX model to run on the GPU this task or replica was given
    /// (`num_gpus`), through CUDA; refused (`UnsupportedOperation`) when it
    /// was given none or the node's ONNX Runtime has no CUDA.
    pub fn onnx_on_gpu(bytes: &[u8]) -> Result<Model, NnError> {
        Self::load(bytes, graph::ExecutionTarget::Gpu)
    }

    fn load(bytes: &[u8], target: graph::ExecutionTarget) -> Result<Model, NnError> {
        let graph = graph::load(&[bytes.to_vec()], graph::GraphEncoding::Onnx, target)?;
        let context = graph.init_execution_context()?;
        Ok(Model {
            context,
            _graph: graph,
        })
    }

    /// Runs the model on `inputs` (by input name), returning its outputs.
    /// A tensor whose bytes do not fill its dimensions is refused here (the
    /// host would trap the instance on it).
    pub fn run(&self, inputs: &[(&str, Tensor)]) -> Result<Outputs, NnError> {
        for (name, t) in inputs {
            t.check().map_err(|message| NnError {
                code: ErrorCode::InvalidArgument,
                message: format!("input `{name}`: {message}"),
            })?;
        }
        let inputs = inputs
            .iter()
            .map(|(name, t)| {
                let tensor = tensor::Tensor::new(&t.dimensions, t.ty, &t.data);
                (name.to_string(), tensor)
            })
            .collect();
        let outputs = self.context.compute(inputs)?;
        Ok(Outputs(
            outputs
                .into_iter()
                .map(|(name, t)| {
                    let tensor = Tensor {
                        dimensions: t.dimensions(),
                        ty: t.ty(),
                        data: t.data(),
                    };
                    (name, tensor)
                })
                .collect(),
        ))
    }
}

/// A model's outputs, by name.
#[derive(Debug, Clone)]
pub struct Outputs(pub Vec<(String, Tensor)>);

impl Outputs {
    /// The output named `name`, if the model has it (outputs that are no
    /// tensors, such as maps and sequences, are left out).
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// A tensor: its dimensions, element type and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dimensions: Vec<u32>,
    pub ty: TensorType,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor of `f32`s (`values` in row-major order).
    pub fn f32(dimensions: &[u32], values: &[f32]) -> Tensor {
        Tensor {
            dimensions: dimensions.to_vec(),
            ty: TensorType::Fp32,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A tensor of `i64`s.
    pub fn i64(dimensions: &[u32], values: &[i64]) -> Tensor {
        Tensor {
            dimensions: dimensions.to_vec(),
            ty: TensorType::I64,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Its values, if it holds `f32`s.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.ty == TensorType::Fp32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// Its values, if it holds `i64`s.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        (self.ty == TensorType::I64).then(|| {
            self.data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        })
    }

    /// Whether its bytes fill its 1 to 16 dimensions exactly.
    fn check(&self) -> Result<(), String> {
        if self.dimensions.is_empty() || self.dimensions.len() > 16 {
            return Err(format!("{} dimensions (1 to 16)", self.dimensions.len()));
        }
        let size = match self.ty {
            TensorType::U8 => 1,
            TensorType::Fp16 | TensorType::Bf16 => 2,
            TensorType::Fp32 | TensorType::I32 => 4,
            TensorType::Fp64 | TensorType::I64 => 8,
        };
        let needs = self
            .dimensions
            .iter()
            .try_fold(size, |n: u64, d| n.checked_mul(u64::from(*d)));
        match needs {
            Some(n) if n == self.data.len() as u64 => Ok(()),
            _ => Err(format!(
                "dimensions {:?} of {:?} need {needs:?} bytes, got {}",
                self.dimensions,
                self.ty,
                self.data.len()
            )),
        }
    }
}
