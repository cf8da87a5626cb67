//! Data-parallel training without a parameter server: Ray's parameter-server
//! example rebuilt on an allreduce among the workers.
//!
//! Each of 4 workers holds a replica of a linear model (10 inputs, 1
//! output) and its own shard of 2,000 samples, made where it runs (no data
//! passes through the driver). Rank 0 draws the starting weights and
//! `broadcast`s them; then, for 40 steps of full-batch gradient descent,
//! every worker computes the gradient on its shard and the workers
//! `allreduce` (sum) their gradients, so each applies the very same update
//! and the replicas stay identical, with no central actor holding the
//! model. The driver only starts the training and reads the results.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p parameter-server
//! fabric run examples/target/wasm32-wasip2/release/parameter_server.wasm
//! ```

use fabric::util::collective::{self, ReduceOp};

const WORKERS: usize = 4;
const FEATURES: usize = 10;
const SAMPLES_PER_WORKER: usize = 500;
const STEPS: usize = 40;
const LEARNING_RATE: f64 = 0.5;
const GROUP: &str = "trainers";

/// A small deterministic generator, so every run trains on the same data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// The weights the data is drawn from (and the bias, 0.5).
fn true_weights() -> Vec<f64> {
    (0..FEATURES).map(|i| (i as f64 - 4.5) / 2.0).collect()
}

/// One worker: its shard and its replica of the model (weights, then the
/// bias last).
#[fabric::actor]
struct Worker {
    xs: Vec<Vec<f64>>,
    ys: Vec<f64>,
    model: Vec<f64>,
}

#[fabric::actor]
impl Worker {
    /// Makes shard `shard` of the data here.
    fn new(shard: u64) -> Self {
        let mut rng = Rng::new(shard + 1);
        let w = true_weights();
        let mut xs = Vec::with_capacity(SAMPLES_PER_WORKER);
        let mut ys = Vec::with_capacity(SAMPLES_PER_WORKER);
        for _ in 0..SAMPLES_PER_WORKER {
            let x: Vec<f64> = (0..FEATURES).map(|_| rng.next_f64()).collect();
            let y = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + 0.5 + 0.01 * rng.next_f64();
            xs.push(x);
            ys.push(y);
        }
        Worker {
            xs,
            ys,
            model: Vec::new(),
        }
    }

    /// Trains for `steps` steps in step with the other workers; returns the
    /// mean squared error over all shards before each step.
    fn train(&mut self, steps: usize) -> fabric::Result<Vec<f64>> {
        // Rank 0 draws the starting model; every replica starts from it.
        let rank = collective::get_rank(GROUP)?;
        let start = match rank {
            0 => {
                let mut rng = Rng::new(42);
                (0..=FEATURES).map(|_| rng.next_f64()).collect()
            }
            _ => Vec::new(),
        };
        self.model = collective::broadcast(start, 0, GROUP)?;
        let mut losses = Vec::with_capacity(steps);
        for _ in 0..steps {
            // Gradient sums, the squared-error sum and the sample count:
            // one allreduce per step.
            let local = self.gradient_sums();
            let total = collective::allreduce(local, GROUP, ReduceOp::Sum)?;
            let n = total[FEATURES + 2];
            losses.push(total[FEATURES + 1] / n);
            for (m, g) in self.model.iter_mut().zip(&total[..=FEATURES]) {
                *m -= LEARNING_RATE * 2.0 * g / n;
            }
        }
        Ok(losses)
    }

    /// This replica of the model.
    fn model(&self) -> Vec<f64> {
        self.model.clone()
    }
}

impl Worker {
    /// Over this shard: the sums of the error times each input (and times
    /// 1, for the bias), of the squared error, and the number of samples.
    fn gradient_sums(&self) -> Vec<f64> {
        let mut sums = vec![0.0; FEATURES + 3];
        let (w, b) = self.model.split_at(FEATURES);
        for (x, y) in self.xs.iter().zip(&self.ys) {
            let err = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b[0] - y;
            for (s, a) in sums.iter_mut().zip(x) {
                *s += err * a;
            }
            sums[FEATURES] += err;
            sums[FEATURES + 1] += err * err;
        }
        sums[FEATURES + 2] = self.xs.len() as f64;
        sums
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let workers = (0..WORKERS as u64)
        .map(Worker::remote)
        .collect::<fabric::Result<Vec<_>>>()?;
    collective::create_collective_group(&workers, GROUP)?;
    println!(
        "{WORKERS} workers, {} samples, {FEATURES} features",
        WORKERS * SAMPLES_PER_WORKER
    );
    let runs = workers
        .iter()
        .map(|w| w.train(STEPS).remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    let losses = fabric::get_all(&runs)?;
    for (step, loss) in losses[0].iter().enumerate().step_by(5) {
        println!("step {step}: loss {loss:.9}");
    }
    let models = workers
        .iter()
        .map(|w| w.model().remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    let models = fabric::get_all(&models)?;
    let same = models.iter().all(|m| *m == models[0]) && losses.iter().all(|l| *l == losses[0]);
    println!("replicas identical: {same}");
    let (w, b) = models[0].split_at(FEATURES);
    let rounded: Vec<f64> = w.iter().map(|x| (x * 100.0).round() / 100.0).collect();
    println!("weights {rounded:?} bias {:.3}", b[0]);
    collective::destroy_collective_group(GROUP)?;
    Ok(())
}
