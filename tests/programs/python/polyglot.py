"""The Python half of a two-component job (tests/all/python.rs): called from
the Rust driver of tests/programs/polyglot, calling back into its
component, which the job names `rust`."""

import fabric


@fabric.remote
def features(reading):
    values = reading["values"]
    return {"sensor": reading["sensor"], "mean": sum(values) / len(values), "count": len(values)}


@fabric.remote
def fail(why):
    raise ValueError(why)


@fabric.remote
def rescale(reading, factor):
    scaled = {"sensor": reading["sensor"], "values": [v * factor for v in reading["values"]]}
    return {"scaled": fabric.put(scaled)}


@fabric.remote
class Scorer:
    def __init__(self, base):
        self.base = base
        self.total = 0

    def score(self, x):
        # Back into a Rust task of the same job.
        doubled = fabric.get(fabric.function("rust", "double").remote(x))
        return self.base + doubled

    def add(self, by):
        self.total += by
        return self.total

    def language(self):
        return "python"

    def node(self):
        return fabric.context().node_id
