"""Trains the digits classifier that examples/digits serves, and writes
model.onnx and a held-out test set (test.json) beside this file.

Run with scikit-learn, skl2onnx and onnx installed:
    python3 train.py
"""
import json
import pathlib

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skl2onnx import to_onnx

here = pathlib.Path(__file__).parent
digits = load_digits()  # 1,797 8x8 images, pixels 0..16
x = digits.data.astype(np.float32)
train_x, test_x, train_y, test_y = train_test_split(
    x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
model = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=1000, random_state=0))
model.fit(train_x, train_y)
print(f"scikit-learn accuracy on the {len(test_y)} held-out digits: {model.score(test_x, test_y):.4f}")
onnx = to_onnx(model, train_x[:1], options={"zipmap": False}, target_opset=17)
(here / "model.onnx").write_bytes(onnx.SerializeToString())
(here / "test.json").write_text(json.dumps({
    "images": test_x.astype(int).tolist(),
    "labels": test_y.tolist(),
}, separators=(",", ":")))
