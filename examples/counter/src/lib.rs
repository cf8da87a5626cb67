//! An actor: one long-lived sandbox that keeps state between calls, which
//! run one at a time in the order they were made.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p counter
//! fabric run examples/target/wasm32-wasip2/release/counter.wasm
//! ```

#[fabric::actor]
struct Counter {
    value: i64,
}

#[fabric::actor]
impl Counter {
    fn new() -> Self {
        Counter { value: 0 }
    }

    fn increment(&mut self) -> i64 {
        self.value += 1;
        self.value
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let counter = Counter::remote()?;
    for _ in 0..5 {
        println!("{}", fabric::get(&counter.increment().remote()?)?);
    }
    Ok(())
}
