//! `wasi:nn/inference`: running a loaded model on a guest's tensors.
//!
//! The inference runs on a blocking thread (ONNX Runtime's own call, on
//! `[nn] threads` threads), so the node's workers keep serving others
//! meanwhile; the guest's call waits for it.

use std::sync::Arc;

use ort::session::RunOptions;
use ort::tensor::PrimitiveTensorElementType;
use ort::value::{DynValue, Tensor as OrtTensor, ValueType};
use wasmtime::component::Resource;

use super::NnView;
use super::errors::{Answer, Error, cut, quoted};
use super::generated::wasi::nn::errors::ErrorCode;
use super::generated::wasi::nn::inference as wit;
use super::generated::wasi::nn::tensor::TensorType;
use super::graph::Loaded;
use super::tensor::{Tensor, element_bytes};

/// An execution context: the model it runs.
pub struct Context {
    pub(crate) graph: Arc<Loaded>,
    pub(crate) _held: super::Held,
}

/// An output as ONNX Runtime gave it, before it is charged to the guest.
struct Output {
    name: String,
    dimensions: Vec<u32>,
    ty: TensorType,
    data: Vec<u8>,
}

impl wit::Host for NnView<'_> {}

impl wit::HostGraphExecutionContext for NnView<'_> {
    async fn compute(
        &mut self,
        context: Resource<Context>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> Answer<Vec<(String, Resource<Tensor>)>> {
        let r = self.run_model(context, inputs).await;
        self.answer(r)
    }

    fn drop(&mut self, context: Resource<Context>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        Ok(())
    }
}

impl NnView<'_> {
    async fn run_model(
        &mut self,
        context: Resource<Context>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> Result<Vec<(String, Resource<Tensor>)>, Error> {
        let graph = self.table.get(&context)?.graph.clone();
        // The guest gave its tensors to the call: all leave its table, used
        // or refused.
        let mut taken = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            taken.push((name, self.table.delete(tensor)?));
        }
        if let Some(gpu) = graph.gpu.filter(|g| !self.clock.gpus().contains(g)) {
            return Err(Error::new(
                ErrorCode::UnsupportedOperation,
                format!("this model runs on GPU {gpu}, which this call was not given"),
            ));
        }
        let inputs = matched(&graph, taken)?;
        let room = self.state.room();
        let stop = std::sync::Arc::new(
            RunOptions::new().map_err(|e| Error::runtime(format!("ONNX Runtime: {}", cut(e))))?,
        );
        let run_stop = stop.clone();
        let outputs = self
            .native(Some(stop), move || run(&graph, inputs, &run_stop, room))
            .await??;
        let mut given: Vec<(String, Resource<Tensor>)> = Vec::with_capacity(outputs.len());
        for o in outputs {
            let pushed = Tensor::checked(o.dimensions, o.ty, o.data)
                .and_then(|tensor| self.push_tensor(tensor));
            match pushed {
                Ok(tensor) => given.push((o.name, tensor)),
                Err(e) => {
                    for (_, tensor) in given {
                        self.table.delete(tensor)?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(given)
    }
}

/// Each of `inputs` with the model's input it is for (by name, or index as
/// text), its type that input's; at most one tensor per input.
fn matched(graph: &Loaded, inputs: Vec<(String, Tensor)>) -> Result<Vec<(usize, Tensor)>, Error> {
    if inputs.len() > graph.inputs.len() {
        return Err(Error::invalid(format!(
            "{} tensors for a model of {} inputs",
            inputs.len(),
            graph.inputs.len()
        )));
    }
    let mut given = vec![false; graph.inputs.len()];
    let mut matched = Vec::with_capacity(inputs.len());
    for (name, tensor) in inputs {
        let index = graph
            .input_index
            .get(&name)
            .copied()
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|i| *i < graph.inputs.len())
            })
            .ok_or_else(|| Error::invalid(format!("the model has no input {}", quoted(&name))))?;
        let port = &graph.inputs[index];
        if std::mem::replace(&mut given[index], true) {
            return Err(Error::invalid(format!(
                "input {} is given twice",
                quoted(&port.name)
            )));
        }
        if port.ty != Some(tensor.ty) {
            let takes = port.ty.map_or("no tensor of wasi:nn's types".into(), |t| {
                format!("{t:?} tensors")
            });
            return Err(Error::invalid(format!(
                "input {} takes {takes}, not {:?}",
                quoted(&port.name),
                tensor.ty
            )));
        }
        matched.push((index, tensor));
    }
    Ok(matched)
}

/// `tensor` as ONNX Runtime takes it.
fn input_value(tensor: &Tensor) -> Result<DynValue, Error> {
    let shape: Vec<i64> = tensor.dimensions.iter().map(|d| i64::from(*d)).collect();
    match tensor.ty {
        TensorType::Fp32 => typed(shape, &tensor.data, f32::from_le_bytes),
        TensorType::Fp64 => typed(shape, &tensor.data, f64::from_le_bytes),
        TensorType::U8 => typed(shape, &tensor.data, u8::from_le_bytes),
        TensorType::I32 => typed(shape, &tensor.data, i32::from_le_bytes),
        TensorType::I64 => typed(shape, &tensor.data, i64::from_le_bytes),
        TensorType::Fp16 | TensorType::Bf16 => Err(Error::new(
            ErrorCode::UnsupportedOperation,
            format!("{:?} tensors are not supported here", tensor.ty),
        )),
    }
}

/// An ONNX Runtime tensor of `T`s read from little-endian `bytes`.
fn typed<T: PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static, const N: usize>(
    shape: Vec<i64>,
    bytes: &[u8],
    from_le: fn([u8; N]) -> T,
) -> Result<DynValue, Error> {
    let elements: Vec<T> = bytes
        .chunks_exact(N)
        .map(|c| from_le(c.try_into().expect("chunks of N")))
        .collect();
    OrtTensor::from_array((shape, elements))
        .map(|t| t.into_dyn())
        .map_err(|e| Error::invalid(format!("ONNX Runtime refused the tensor: {}", cut(e))))
}

/// Runs the model, and reads back each output `wasi:nn` has a tensor for
/// (maps, sequences and strings are left out), within `room` bytes.
fn run(
    graph: &Loaded,
    inputs: Vec<(usize, Tensor)>,
    stop: &RunOptions,
    room: u64,
) -> Result<Vec<Output>, Error> {
    let mut values = Vec::with_capacity(inputs.len());
    for (index, tensor) in &inputs {
        values.push((graph.inputs[*index].name.as_str(), input_value(tensor)?));
    }
    drop(inputs);
    let mut session = graph.session.lock();
    let outputs = session
        .run_with_options(values, stop)
        .map_err(|e| Error::runtime(format!("the inference failed: {}", cut(e))))?;
    let mut read = Vec::new();
    let mut left = room;
    for (name, value) in &outputs {
        let port = graph.output_index.get(name).map(|i| &graph.outputs[*i]);
        let (Some(ty), ValueType::Tensor { shape, .. }) = (port.and_then(|p| p.ty), value.dtype())
        else {
            continue;
        };
        let bytes = shape.iter().try_fold(element_bytes(ty), |n, d| {
            n.checked_mul(u64::try_from(*d).ok()?)
        });
        left = match bytes.and_then(|b| left.checked_sub(b)) {
            Some(left) => left,
            None => {
                return Err(Error::too_large(format!(
                    "the model's outputs pass this instance's wasi-nn memory ({room} bytes left)"
                )));
            }
        };
        let (dimensions, data) = match ty {
            TensorType::Fp32 => bytes_of::<f32, 4>(&value, f32::to_le_bytes),
            TensorType::Fp64 => bytes_of::<f64, 8>(&value, f64::to_le_bytes),
            TensorType::U8 => bytes_of::<u8, 1>(&value, u8::to_le_bytes),
            TensorType::I32 => bytes_of::<i32, 4>(&value, i32::to_le_bytes),
            TensorType::I64 => bytes_of::<i64, 8>(&value, i64::to_le_bytes),
            TensorType::Fp16 | TensorType::Bf16 => continue,
        }?;
        read.push(Output {
            name: name.to_string(),
            dimensions,
            ty,
            data,
        });
    }
    Ok(read)
}

/// An output tensor's dimensions and little-endian bytes.
fn bytes_of<T: PrimitiveTensorElementType + Copy, const N: usize>(
    value: &DynValue,
    to_le: fn(T) -> [u8; N],
) -> Result<(Vec<u32>, Vec<u8>), Error> {
    let (shape, data) = value
        .try_extract_tensor::<T>()
        .map_err(|e| Error::runtime(format!("reading an output: {}", cut(e))))?;
    let mut dimensions = shape
        .iter()
        .map(|d| u32::try_from(*d))
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| Error::runtime(format!("an output's shape {shape:?} does not fit u32s")))?;
    if dimensions.is_empty() {
        dimensions.push(1); // a scalar, as wasi:nn writes one
    }
    let mut bytes = Vec::with_capacity(data.len() * N);
    for v in data {
        bytes.extend_from_slice(&to_le(*v));
    }
    Ok((dimensions, bytes))
}
