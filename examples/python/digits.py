"""The digits classifier of examples/digits, in Python: a Serve replica that
loads the ONNX model once, from the directory its manifest grants, and runs
it through `wasi:nn` (`fabric.nn`) for each request.

`POST /digits` with `{"images": [[64 pixels, 0..16], ...]}` answers
`{"digits": [...]}`, one digit per image. Serve it with a deployment

    [[deployment]]
    name = "digits"
    component = "digits.py"
    class = "Classifier"
    route = "/digits"
    public = true
    manifest = "digits-nn.toml"

whose manifest asks for `wasi:nn` and grants the model's directory:

    [capabilities]
    nn = true
    [[capabilities.dir]]
    host = "/absolute/path/to/examples/digits"   # holds model.onnx
    guest = "/model"
    mode = "ro"

then `fabric serve serve.toml --onnxruntime .../onnxruntime/capi`.
"""

import json

import fabric
from fabric import nn

PIXELS = 64
MAX_IMAGES = 1024


@fabric.remote
class Classifier:
    def __init__(self):
        # Loaded once per replica: each request only runs it.
        with open("/model/model.onnx", "rb") as f:
            self.model = nn.Model.onnx(f.read())

    def call(self, request):
        try:
            images = json.loads(request["body"])["images"]
        except (ValueError, KeyError, TypeError) as e:
            return {"status": 400, "body": f"send {{\"images\": [...]}}: {e}".encode()}
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
            return {"status": 400, "body": f"send 1 to {MAX_IMAGES} images".encode()}
        pixels = []
        for i, image in enumerate(images):
            if not isinstance(image, list) or len(image) != PIXELS:
                return {"status": 400, "body": f"image {i} does not have {PIXELS} pixels".encode()}
            if not all(isinstance(p, (int, float)) for p in image):
                return {"status": 400, "body": f"image {i} has a pixel that is no number".encode()}
            pixels.extend(image)
        outputs = self.model.run({"X": nn.Tensor.f32([len(images), PIXELS], pixels)})
        return {"digits": outputs["label"].to_list()}
