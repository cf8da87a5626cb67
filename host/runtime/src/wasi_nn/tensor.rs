//! `wasi:nn/tensor`: tensors a guest makes and reads, held on the host
//! (and charged to the instance) until the guest drops them.

use wasmtime::component::Resource;

use super::errors::Error;
use super::generated::wasi::nn::tensor::{self as wit, TensorType};
use super::ledger::Kind;
use super::{Held, NnView};

/// Most dimensions a tensor may have.
pub(crate) const MAX_DIMENSIONS: usize = 16;

/// A tensor on the host: its shape, element type and little-endian bytes.
pub struct Tensor {
    pub(crate) dimensions: Vec<u32>,
    pub(crate) ty: TensorType,
    pub(crate) data: Vec<u8>,
    /// Its place in the instance's bound, while the guest holds it.
    _held: Option<Held>,
}

/// Bytes of one element of `ty`.
pub(crate) fn element_bytes(ty: TensorType) -> u64 {
    match ty {
        TensorType::U8 => 1,
        TensorType::Fp16 | TensorType::Bf16 => 2,
        TensorType::Fp32 | TensorType::I32 => 4,
        TensorType::Fp64 | TensorType::I64 => 8,
    }
}

impl Tensor {
    /// A tensor whose bytes are exactly its shape's worth.
    pub(crate) fn checked(
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> Result<Tensor, Error> {
        if dimensions.is_empty() || dimensions.len() > MAX_DIMENSIONS {
            return Err(Error::invalid(format!(
                "a tensor has 1 to {MAX_DIMENSIONS} dimensions, not {}",
                dimensions.len()
            )));
        }
        let elements = dimensions
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(u64::from(*d)));
        let expected = elements.and_then(|n| n.checked_mul(element_bytes(ty)));
        if expected != Some(data.len() as u64) {
            return Err(Error::invalid(format!(
                "a {ty:?} tensor of dimensions {dimensions:?} needs {} bytes, got {}",
                expected.map_or("more than 2^64".into(), |e| e.to_string()),
                data.len()
            )));
        }
        Ok(Tensor {
            dimensions,
            ty,
            data,
            _held: None,
        })
    }

    /// Host bytes this tensor holds.
    pub(crate) fn held(&self) -> u64 {
        (self.data.len() + self.dimensions.len() * 4) as u64
    }
}

impl NnView<'_> {
    /// Puts `tensor` in the guest's table, held within the instance's bound.
    pub(crate) fn push_tensor(&mut self, mut tensor: Tensor) -> Result<Resource<Tensor>, Error> {
        tensor._held = Some(self.state.hold(tensor.held(), Kind::Data, "a tensor")?);
        Ok(self.table.push(tensor)?)
    }
}

impl wit::Host for NnView<'_> {}

impl wit::HostTensor for NnView<'_> {
    /// A tensor that does not fit its shape, or past the instance's bound,
    /// traps: the constructor has no error to return.
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<Tensor>> {
        let tensor = Tensor::checked(dimensions, ty, data)
            .map_err(|e| wasmtime::format_err!("wasi-nn tensor: {e}"))?;
        self.push_tensor(tensor)
            .map_err(|e| wasmtime::format_err!("wasi-nn tensor: {e}"))
    }

    fn dimensions(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<TensorType> {
        Ok(self.table.get(&tensor)?.ty)
    }

    fn data(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<()> {
        self.table.delete(tensor)?;
        Ok(())
    }
}
