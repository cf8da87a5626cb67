//! Fault tolerance for actors: a counter that survives crashes.
//!
//! With `max_restarts`, an actor whose instance panics or traps (or whose
//! node dies) is started again; its constructor reads the state it last
//! saved with `fabric::checkpoint::save`, so the count goes on instead of
//! starting from zero. The call that crashed fails; the calls after it run
//! on the restarted actor.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p durable-counter
//! fabric run examples/target/wasm32-wasip2/release/durable_counter.wasm
//! ```

#[fabric::actor]
struct Counter {
    value: u64,
}

#[fabric::actor(max_restarts = 3)]
impl Counter {
    fn new() -> fabric::Result<Self> {
        // `None` on the first start; the last saved count after a restart.
        let value = fabric::checkpoint::load()?.unwrap_or(0);
        Ok(Counter { value })
    }

    fn increment(&mut self) -> fabric::Result<u64> {
        self.value += 1;
        fabric::checkpoint::save(&self.value)?;
        Ok(self.value)
    }

    fn crash(&mut self) -> u64 {
        panic!("crashing at {}", self.value);
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let counter = Counter::remote()?;
    for _ in 0..3 {
        println!("{}", fabric::get(&counter.increment().remote()?)?);
    }
    match fabric::get(&counter.crash().remote()?) {
        Err(fabric::Error::TaskFailed { message, .. }) => println!("crashed: {message}"),
        other => println!("unexpected: {other:?}"),
    }
    for _ in 0..2 {
        println!("{}", fabric::get(&counter.increment().remote()?)?);
    }
    Ok(())
}
