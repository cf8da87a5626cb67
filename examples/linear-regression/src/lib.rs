//! Training a linear model (10 inputs, 1 output) by stochastic gradient
//! descent on 1,000 random samples for 5 epochs. The data is put in the
//! object store once; each epoch is a task that takes the previous epoch's
//! model by reference, so the weights move through the object store.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p linear-regression
//! fabric run examples/target/wasm32-wasip2/release/linear_regression.wasm
//! ```

use serde::{Deserialize, Serialize};

const FEATURES: usize = 10;
const SAMPLES: usize = 1_000;
const EPOCHS: usize = 5;
const LEARNING_RATE: f64 = 0.01;

#[derive(Serialize, Deserialize, Clone)]
struct Sample {
    x: Vec<f64>,
    y: f64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Model {
    weights: Vec<f64>,
    bias: f64,
    /// Mean squared error over the epoch that produced this model.
    loss: f64,
}

/// A small deterministic generator, so every run trains on the same data.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn make_data() -> Vec<Sample> {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let true_w: Vec<f64> = (0..FEATURES).map(|i| (i as f64 - 4.5) / 2.0).collect();
    (0..SAMPLES)
        .map(|_| {
            let x: Vec<f64> = (0..FEATURES).map(|_| rng.next_f64()).collect();
            let y = x.iter().zip(&true_w).map(|(a, w)| a * w).sum::<f64>()
                + 0.5
                + 0.01 * rng.next_f64();
            Sample { x, y }
        })
        .collect()
}

/// One epoch of SGD over `data`, starting from `model`.
#[fabric::remote]
fn train_epoch(model: Model, data: Vec<Sample>) -> Model {
    let Model {
        mut weights,
        mut bias,
        ..
    } = model;
    let mut total = 0.0;
    for s in &data {
        let pred = s.x.iter().zip(&weights).map(|(a, w)| a * w).sum::<f64>() + bias;
        let err = pred - s.y;
        total += err * err;
        for (w, a) in weights.iter_mut().zip(&s.x) {
            *w -= LEARNING_RATE * err * a;
        }
        bias -= LEARNING_RATE * err;
    }
    Model {
        weights,
        bias,
        loss: total / data.len() as f64,
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let data = fabric::put(&make_data())?;
    let mut model = fabric::put(&Model {
        weights: vec![0.0; FEATURES],
        bias: 0.0,
        loss: f64::NAN,
    })?;
    for epoch in 1..=EPOCHS {
        // The previous model goes in by reference: no copy through the driver.
        model = train_epoch::remote(&model, &data)?;
        println!("epoch {epoch}: loss {:.9}", fabric::get(&model)?.loss);
    }
    let last = fabric::get(&model)?;
    println!(
        "weights {:?} bias {:.3}",
        last.weights
            .iter()
            .map(|w| (w * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        last.bias
    );
    Ok(())
}
