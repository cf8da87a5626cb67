//! The object store: `put` stores an immutable value once; any task or actor
//! that gets a reference can read it.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p put-get
//! fabric run examples/target/wasm32-wasip2/release/put_get.wasm
//! ```

#[fabric::remote]
fn total(values: Vec<i32>) -> i32 {
    values.iter().sum()
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let data = fabric::put(&vec![1, 2, 3, 4, 5])?;
    println!("{:?}", fabric::get(&data)?);
    // A task receives the value behind a reference, as in Ray.
    println!("sum = {}", fabric::get(&total::remote(&data)?)?);
    Ok(())
}
