"""`fabric.nn` from a Python job (tests/all/serve_nn.rs): its refusals are
typed, and what each call takes on the node is given back (a node bounds
the models, tensors and errors one instance holds, about 4,000), so
thousands of calls run in one instance."""

import fabric
from fabric import nn

ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
        0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2,
        14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]


def refusal(load):
    try:
        load()
        return "loaded"
    except nn.NnError as e:
        return f"{e.code.name} {isinstance(e, fabric.errors.FabricError)}"


def on_the_gpu(model_bytes):
    """Asks for the model on the GPU this work holds: why not, if not."""
    try:
        nn.Model.onnx(model_bytes, gpu=True)
        return "loaded on the GPU"
    except nn.NnError as e:
        return f"{e.code.name}: {e.message}"


@fabric.remote(num_gpus=1)
def on_a_gpu(model_bytes):
    return on_the_gpu(model_bytes)


@fabric.remote(num_gpus=0.5)
def on_half_a_gpu(model_bytes):
    """Half a GPU is one shared by fractions: only the reason's first part."""
    return ": ".join(on_the_gpu(model_bytes).split(": ")[:2])


@fabric.main
def main():
    print("not a model:", refusal(lambda: nn.Model.onnx(b"not a model")))
    codes = {refusal(lambda: nn.Model.onnx(b"")) for _ in range(5000)}
    print("5000 refusals:", sorted(codes))
    try:
        with open("/model/model.onnx", "rb") as f:
            model_bytes = f.read()
    except OSError as e:
        print("no model directory:", type(e).__name__)
        return
    print("on a GPU, given none:", refusal(lambda: nn.Model.onnx(model_bytes, gpu=True)))
    print("on a GPU, given one:", fabric.get(on_a_gpu.remote(model_bytes)))
    print("on a GPU, given half:", fabric.get(on_half_a_gpu.remote(model_bytes)))
    model = nn.Model.onnx(model_bytes)
    digits = set()
    for _ in range(5000):
        out = model.run({"X": nn.Tensor.f32([1, 64], ZERO)})
        digits.add(tuple(out["label"].to_list()))
    print("5000 runs:", sorted(digits))
    try:
        model.run({"X": nn.Tensor.i64([1, 64], ZERO)})
    except nn.NnError as e:
        print("wrong type:", e.code.name)
    model.close()
    print("closed")
