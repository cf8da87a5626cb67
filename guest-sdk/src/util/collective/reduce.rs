//! What `allreduce` combines: numbers, and vectors of them element by
//! element.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How `allreduce` combines the members' values (Ray's `ReduceOp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Product,
    Min,
    Max,
}

/// A value `allreduce` can combine. Implemented for the integer and float
/// types (integers wrap on overflow, as NCCL's do) and for `Vec`s of any
/// `Reduce` type, element by element (every member's must be as long).
pub trait Reduce: Serialize + DeserializeOwned {
    /// Combines `other` into `self`.
    fn reduce(&mut self, other: Self, op: ReduceOp) -> Result<()>;
}

macro_rules! reduce_int {
    ($($t:ty),*) => {$(
        impl Reduce for $t {
            fn reduce(&mut self, other: Self, op: ReduceOp) -> Result<()> {
                *self = match op {
                    ReduceOp::Sum => self.wrapping_add(other),
                    ReduceOp::Product => self.wrapping_mul(other),
                    ReduceOp::Min => (*self).min(other),
                    ReduceOp::Max => (*self).max(other),
                };
                Ok(())
            }
        }
    )*};
}

macro_rules! reduce_float {
    ($($t:ty),*) => {$(
        impl Reduce for $t {
            fn reduce(&mut self, other: Self, op: ReduceOp) -> Result<()> {
                *self = match op {
                    ReduceOp::Sum => *self + other,
                    ReduceOp::Product => *self * other,
                    ReduceOp::Min => self.min(other),
                    ReduceOp::Max => self.max(other),
                };
                Ok(())
            }
        }
    )*};
}

reduce_int!(i8, i16, i32, i64, u8, u16, u32, u64);
reduce_float!(f32, f64);

impl<T: Reduce> Reduce for Vec<T> {
    fn reduce(&mut self, other: Self, op: ReduceOp) -> Result<()> {
        if self.len() != other.len() {
            return Err(Error::InvalidArgument(format!(
                "allreduce of vectors of different lengths ({} and {})",
                self.len(),
                other.len()
            )));
        }
        for (mine, theirs) in self.iter_mut().zip(other) {
            mine.reduce(theirs, op)?;
        }
        Ok(())
    }
}
