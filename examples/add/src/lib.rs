//! A remote function: `add::remote(1, 2)` runs `add` as a task in its own
//! sandbox and returns a reference to the result.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p add
//! fabric run examples/target/wasm32-wasip2/release/add.wasm
//! ```

#[fabric::remote]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let r = add::remote(1, 2)?;
    println!("{}", fabric::get(&r)?);
    Ok(())
}
