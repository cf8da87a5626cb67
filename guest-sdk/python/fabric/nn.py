"""Model inference through `wasi:nn`: load an ONNX model from bytes once,
then run it on tensors (the Rust SDK's `fabric::nn`, in Python).

The node runs the model in ONNX Runtime, on the CPU its task or replica
holds; a job gets this only when its manifest asks for it
(`[capabilities] nn = true`), the operator allows it (`grant-nn`) and the
node has ONNX Runtime (`fabric start --onnxruntime FILE-OR-DIR`).

    from fabric import nn

    model = nn.Model.onnx(model_bytes)       # once: in a replica's constructor
    outputs = model.run({"X": nn.Tensor.f32([1, 64], pixels)})
    digit = outputs["label"].to_list()[0]

A tensor's values are kept on the guest's side as bytes (little-endian);
each `run` hands them to the node and takes the outputs back, and frees
the node's copies before it returns (a node bounds what one instance's
tensors and models hold). examples/python/digits is a whole replica.
"""

import array
import sys

from componentize_py_types import Err
from wit_world.imports import errors as _errors
from wit_world.imports import graph as _graph
from wit_world.imports import tensor as _tensor

from .errors import FabricError

TensorType = _tensor.TensorType
ErrorCode = _errors.ErrorCode

# The `array` typecode of each element type this module converts.
_TYPECODES = {
    TensorType.FP32: "f",
    TensorType.FP64: "d",
    TensorType.U8: "B",
    TensorType.I32: "i",
    TensorType.I64: "q",
}


class NnError(FabricError):
    """A failed `wasi:nn` call: its `code` (an `ErrorCode`, such as
    `INVALID_ARGUMENT`, `TOO_LARGE` or `SECURITY`) and the node's message."""

    def __init__(self, code, message):
        super().__init__(f"wasi-nn {code.name}: {message}")
        self.code = code
        self.message = message


def _nn_error(e):
    """The `NnError` for a `wasi:nn` call's failure `e` (an `Err`)."""
    error = e.value
    try:
        return NnError(error.code(), error.data())
    finally:
        _drop(error)


def _drop(resource):
    """Gives a `wasi:nn` resource back to the node now, unless it was
    given already (a tensor moved into `compute` is the node's)."""
    finalizer = getattr(resource, "finalizer", None)
    if finalizer is not None and finalizer.alive:
        resource.__exit__(None, None, None)


class Tensor:
    """A tensor: its `dimensions`, element `ty` and little-endian `data`."""

    def __init__(self, dimensions, ty, data):
        self.dimensions = [int(d) for d in dimensions]
        self.ty = ty
        self.data = bytes(data)

    @classmethod
    def _of(cls, dimensions, ty, values):
        items = array.array(_TYPECODES[ty], values)
        if sys.byteorder != "little":
            items.byteswap()
        return cls(dimensions, ty, items.tobytes())

    @classmethod
    def f32(cls, dimensions, values):
        """A tensor of 32-bit floats from `values` (any iterable of numbers)."""
        return cls._of(dimensions, TensorType.FP32, values)

    @classmethod
    def i64(cls, dimensions, values):
        """A tensor of 64-bit integers from `values`."""
        return cls._of(dimensions, TensorType.I64, values)

    def to_list(self):
        """The values as a flat list (for FP32, FP64, U8, I32 and I64)."""
        code = _TYPECODES.get(self.ty)
        if code is None:
            raise ValueError(f"a {self.ty.name} tensor has no Python values here")
        items = array.array(code)
        items.frombytes(self.data)
        if sys.byteorder != "little":
            items.byteswap()
        return items.tolist()

    def __repr__(self):
        return f"Tensor({self.dimensions}, {self.ty.name}, {len(self.data)} bytes)"


class Model:
    """A model loaded into the node's ONNX Runtime, with one execution
    context: load it once (a replica's constructor), run it per request."""

    def __init__(self, graph, context):
        self._graph = graph
        self._context = context

    @classmethod
    def onnx(cls, model_bytes, gpu=False):
        """Loads an ONNX model from its bytes, to run on the CPU, or with
        `gpu=True` on the GPU this task or replica was given (`num_gpus`),
        through CUDA (refused as `UNSUPPORTED_OPERATION` when it was given
        none or the node's ONNX Runtime has no CUDA)."""
        target = _graph.ExecutionTarget.GPU if gpu else _graph.ExecutionTarget.CPU
        try:
            graph = _graph.load([bytes(model_bytes)], _graph.GraphEncoding.ONNX, target)
        except Err as e:
            raise _nn_error(e) from None
        try:
            context = graph.init_execution_context()
        except Err as e:
            _drop(graph)
            raise _nn_error(e) from None
        return cls(graph, context)

    def run(self, inputs):
        """Runs the model on `inputs` (a dict, or pairs, of input name to
        `Tensor`); the outputs as a dict of name to `Tensor`."""
        pairs = inputs.items() if isinstance(inputs, dict) else inputs
        given = []
        try:
            for name, t in pairs:
                given.append((str(name), _tensor.Tensor(t.dimensions, t.ty, t.data)))
            try:
                outputs = self._context.compute(given)
            except Err as e:
                raise _nn_error(e) from None
        finally:
            for _, t in given:
                _drop(t)
        answer = {}
        try:
            for name, t in outputs:
                answer[name] = Tensor(t.dimensions(), t.ty(), t.data())
        finally:
            for _, t in outputs:
                _drop(t)
        return answer

    def close(self):
        """Frees the model on the node now (else when the instance ends)."""
        if self._context is not None:
            _drop(self._context)
            _drop(self._graph)
            self._context = self._graph = None
