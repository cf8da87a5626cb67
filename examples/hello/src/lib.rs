//! The tour of wasmfabric in one program: a task, an actor, the object
//! store and a parallel map.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p hello
//! cargo run --release -p wasmfabric-host -- run examples/target/wasm32-wasip2/release/hello.wasm
//! ```

#[fabric::remote]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[fabric::remote(num_cpus = 1)]
fn square(i: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_secs(1));
    i * i
}

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
    let r = add::remote(1, 2)?;
    println!("{}", fabric::get(&r)?);
    let counter = Counter::remote()?;
    for _ in 0..5 {
        println!("{}", fabric::get(&counter.increment().remote()?)?);
    }
    let data = fabric::put(&vec![1, 2, 3, 4, 5])?;
    println!("{:?}", fabric::get(&data)?);
    let refs = (0..10)
        .map(square::remote)
        .collect::<fabric::Result<Vec<_>>>()?;
    println!("{:?}", fabric::get_all(&refs)?);
    Ok(())
}
