"""A streaming pipeline, the Ray way: stages are generators, and each item
flows on as soon as it is made. Prints what examples/stream-pipeline prints.

- `readings` is a generator task: it yields one sensor reading at a time,
  each its own object;
- `alerts` is a generator task that consumes `readings` as it streams and
  yields an alert for each reading over the limit: both run at once, and
  backpressure keeps `readings` at most 8 items ahead;
- the driver hands each alert, as a reference it never reads, to a `Board`
  actor (the host passes the value to the actor);
- the board's `report` is a generator method: it streams its summary lines
  from the actor's state.

    fabric run examples/python/stream_pipeline.py
"""

import fabric


@fabric.remote(backpressure=8)
def readings(ticks):
    """`ticks` readings of each of 3 sensors, one at a time."""
    for tick in range(ticks):
        for sensor in range(3):
            # A deterministic wobble around 20 degrees.
            celsius = 20.0 + ((tick * 7 + sensor * 5) % 11) / 2.0
            yield {"sensor": sensor, "tick": tick, "celsius": celsius}


@fabric.remote
def alerts(ticks, limit):
    """An alert for every reading over `limit`, as the readings stream in."""
    for ref in readings.remote(ticks):
        reading = fabric.get(ref)
        if reading["celsius"] > limit:
            yield {"reading": reading, "over_by": reading["celsius"] - limit}


@fabric.remote
class Board:
    """Collects alerts per sensor."""

    def __init__(self):
        self.per_sensor = {}

    def record(self, alert):
        count, worst = self.per_sensor.get(alert["reading"]["sensor"], (0, 0.0))
        self.per_sensor[alert["reading"]["sensor"]] = (count + 1, max(worst, alert["over_by"]))
        return count + 1

    def report(self):
        """One line per sensor, streamed from the board's state."""
        for sensor, (n, worst) in sorted(self.per_sensor.items()):
            yield f"sensor {sensor}: {n} alerts, worst {worst:.1f} over"


@fabric.main
def main():
    board = Board.remote()
    # The alert's value goes from the stream to the actor: the driver only
    # passes its reference on.
    recorded = [board.record.remote(alert) for alert in alerts.remote(100, 24.0)]
    print(f"{len(recorded)} alerts")
    fabric.get(recorded)
    for line in board.report.remote():
        print(fabric.get(line))
