//! A streaming pipeline, the Ray way: stages are generators, and each
//! item flows on as soon as it is made.
//!
//! - `readings` is a generator task: it yields one sensor reading at a
//!   time, each its own object;
//! - `alerts` is a generator task that consumes `readings` as it streams
//!   and yields an alert for each reading over the limit: both run at
//!   once, and backpressure keeps `readings` at most 8 items ahead;
//! - the driver hands each alert, as a reference it never reads, to a
//!   `Board` actor (the host passes the value to the actor);
//! - the board's `report` is a generator method: it streams its summary
//!   lines from the actor's state.
//!
//! Run: `fabric run examples/target/wasm32-wasip2/release/stream_pipeline.wasm`

use std::collections::BTreeMap;

use fabric::Generator;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Reading {
    sensor: u32,
    tick: u64,
    celsius: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Alert {
    reading: Reading,
    over_by: f64,
}

/// `ticks` readings of each of 3 sensors, one at a time.
#[fabric::remote(backpressure = 8)]
fn readings(ticks: u64) -> Generator<Reading> {
    Generator::new((0..ticks).flat_map(|tick| {
        (0..3u32).map(move |sensor| Reading {
            sensor,
            tick,
            // A deterministic wobble around 20 degrees.
            celsius: 20.0 + ((tick * 7 + u64::from(sensor) * 5) % 11) as f64 / 2.0,
        })
    }))
}

/// An alert for every reading over `limit`, as the readings stream in.
#[fabric::remote]
fn alerts(ticks: u64, limit: f64) -> fabric::Result<Generator<Alert>> {
    let upstream = readings::remote(ticks)?;
    Ok(Generator::fallible(upstream.values().filter_map(
        move |r| match r {
            Ok(reading) if reading.celsius > limit => Some(Ok(Alert {
                over_by: reading.celsius - limit,
                reading,
            })),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        },
    )))
}

/// Collects alerts per sensor.
#[fabric::actor]
pub struct Board {
    per_sensor: BTreeMap<u32, (u64, f64)>,
}

#[fabric::actor]
impl Board {
    fn new() -> Self {
        Board {
            per_sensor: BTreeMap::new(),
        }
    }

    fn record(&mut self, alert: Alert) -> u64 {
        let e = self.per_sensor.entry(alert.reading.sensor).or_default();
        e.0 += 1;
        e.1 = e.1.max(alert.over_by);
        e.0
    }

    /// One line per sensor, streamed from the board's state.
    fn report(&self) -> Generator<'_, String> {
        Generator::new(self.per_sensor.iter().map(|(sensor, (n, worst))| {
            format!("sensor {sensor}: {n} alerts, worst {worst:.1} over")
        }))
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let board = Board::remote()?;
    let mut recorded = Vec::new();
    for alert in alerts::remote(100u64, 24.0)? {
        // The alert's value goes from the stream to the actor: the driver
        // only passes its reference on.
        recorded.push(board.record(&alert?).remote()?);
    }
    println!("{} alerts", recorded.len());
    fabric::get_all(&recorded)?;
    for line in board.report().remote()?.values() {
        println!("{}", line?);
    }
    Ok(())
}
