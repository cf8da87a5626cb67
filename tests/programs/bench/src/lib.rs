//! Microbenchmark workloads, timed inside the sandbox. The driver runs the
//! workload named by its first argument `n` times (second argument) and
//! prints `<name> <ops> <seconds>`; benches/microbenchmark.rs turns that
//! into rates.

use std::time::Instant;

const WORKLOADS: &[&str] = &[
    "tasks-sync",
    "tasks-async",
    "actor-calls-sync",
    "actor-calls-async",
    "put-calls",
    "get-calls",
    "put-gigabytes",
    "put-gigabytes-encoded",
    "idle-actors",
];

#[fabric::remote]
fn noop() -> u8 {
    0
}

#[fabric::actor]
struct Sink {
    calls: u64,
}

#[fabric::actor]
impl Sink {
    fn new() -> Self {
        Sink { calls: 0 }
    }

    fn call(&mut self) -> u8 {
        self.calls += 1;
        0
    }
}

fn report(name: &str, ops: u64, start: Instant) {
    println!("{name} {ops} {:.6}", start.elapsed().as_secs_f64());
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    match name.as_str() {
        "list" => println!("{}", WORKLOADS.join(" ")),
        "tasks-sync" => {
            let start = Instant::now();
            for _ in 0..n {
                fabric::get(&noop::remote()?)?;
            }
            report(&name, n as u64, start);
        }
        "tasks-async" => {
            let start = Instant::now();
            let refs = (0..n)
                .map(|_| noop::remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            fabric::get_all(&refs)?;
            report(&name, n as u64, start);
        }
        "actor-calls-sync" => {
            let a = Sink::remote()?;
            fabric::get(&a.call().remote()?)?;
            let start = Instant::now();
            for _ in 0..n {
                fabric::get(&a.call().remote()?)?;
            }
            report(&name, n as u64, start);
        }
        "actor-calls-async" => {
            let a = Sink::remote()?;
            fabric::get(&a.call().remote()?)?;
            let start = Instant::now();
            let refs = (0..n)
                .map(|_| a.call().remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            fabric::get_all(&refs)?;
            report(&name, n as u64, start);
        }
        "put-calls" => {
            let start = Instant::now();
            for i in 0..n {
                fabric::put(&(i as u64))?;
            }
            report(&name, n as u64, start);
        }
        "get-calls" => {
            let r = fabric::put(&7u64)?;
            let start = Instant::now();
            for _ in 0..n {
                fabric::get(&r)?;
            }
            report(&name, n as u64, start);
        }
        "put-gigabytes" => {
            // n objects of 100 MiB; prints bytes instead of ops.
            let data = vec![1u8; 100 << 20];
            let start = Instant::now();
            for _ in 0..n {
                fabric::put_bytes(&data)?;
            }
            report(&name, n as u64 * data.len() as u64, start);
        }
        "put-gigabytes-encoded" => {
            // The same through serde (encode, then store).
            let data = serde_bytes::ByteBuf::from(vec![1u8; 100 << 20]);
            let start = Instant::now();
            for _ in 0..n {
                fabric::put(&data)?;
            }
            report(&name, n as u64 * data.len() as u64, start);
        }
        "idle-actors" => {
            // Creates n actors and checks each answers; then stays up for a
            // few seconds so the harness can read the node's memory use.
            let start = Instant::now();
            let actors = (0..n)
                .map(|_| Sink::remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            let pings = actors
                .iter()
                .map(|a| a.call().remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            fabric::get_all(&pings)?;
            report(&name, n as u64, start);
            println!("actors ready");
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        other => {
            return Err(fabric::Error::InvalidArgument(format!(
                "unknown workload `{other}`"
            )));
        }
    }
    Ok(())
}
