"""Training a linear model (10 inputs, 1 output) by stochastic gradient
descent on 1,000 random samples for 5 epochs. The data is put in the object
store once; each epoch is a task that takes the previous epoch's model by
reference, so the weights move through the object store. Prints what
examples/linear-regression prints: the same generator, the same data, the
same arithmetic, so the same losses to the last digit.

    fabric run examples/python/linear_regression.py
"""

import math

import fabric

FEATURES = 10
SAMPLES = 1_000
EPOCHS = 5
LEARNING_RATE = 0.01
MASK = (1 << 64) - 1


class Rng:
    """The Rust example's xorshift generator, so both train on the same data."""

    def __init__(self, seed):
        self.state = seed

    def next_f64(self):
        s = self.state
        s ^= (s << 13) & MASK
        s ^= s >> 7
        s ^= (s << 17) & MASK
        self.state = s
        return (s >> 11) / float(1 << 53) * 2.0 - 1.0


def make_data():
    rng = Rng(0x5EED_1234_ABCD_9876)
    true_w = [(i - 4.5) / 2.0 for i in range(FEATURES)]
    data = []
    for _ in range(SAMPLES):
        x = [rng.next_f64() for _ in range(FEATURES)]
        y = 0.0
        for a, w in zip(x, true_w):
            y += a * w
        y = y + 0.5 + 0.01 * rng.next_f64()
        data.append({"x": x, "y": y})
    return data


@fabric.remote
def train_epoch(model, data):
    weights = list(model["weights"])
    bias = model["bias"]
    total = 0.0
    for s in data:
        pred = 0.0
        for a, w in zip(s["x"], weights):
            pred += a * w
        pred += bias
        err = pred - s["y"]
        total += err * err
        weights = [w - LEARNING_RATE * err * a for w, a in zip(weights, s["x"])]
        bias -= LEARNING_RATE * err
    return {"weights": weights, "bias": bias, "loss": total / len(data)}


def rust_float(x):
    """A float as Rust's `{:?}` writes it."""
    return repr(x)


def rust_round(x):
    """Rust's `f64::round`: halves away from zero (Python's `round` takes
    them to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


@fabric.main
def main():
    data = fabric.put(make_data())
    model = fabric.put({"weights": [0.0] * FEATURES, "bias": 0.0, "loss": float("nan")})
    for epoch in range(1, EPOCHS + 1):
        # The previous model goes in by reference: no copy through the driver.
        model = train_epoch.remote(model, data)
        print(f"epoch {epoch}: loss {fabric.get(model)['loss']:.9f}")
    last = fabric.get(model)
    weights = ", ".join(rust_float(rust_round(w * 100.0) / 100.0) for w in last["weights"])
    print(f"weights [{weights}] bias {last['bias']:.3f}")
