//! Parallel tasks: ten one-second tasks, each holding one CPU, finish in
//! about ceil(10 / CPUs) seconds.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p squares
//! fabric run examples/target/wasm32-wasip2/release/squares.wasm --num-cpus 2
//! ```

use std::time::{Duration, Instant};

#[fabric::remote(num_cpus = 1)]
fn square(i: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(1));
    i * i
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let start = Instant::now();
    let refs = (0..10)
        .map(square::remote)
        .collect::<fabric::Result<Vec<_>>>()?;
    println!("{:?}", fabric::get_all(&refs)?);
    eprintln!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
