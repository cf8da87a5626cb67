//! Task scenarios for the integration tests. The driver runs the scenario
//! named by its first argument and prints what the test checks.

use std::time::Duration;

use fabric::prelude::*;
use fabric::{Error, FailureKind};

/// Every scenario; the tests check that each one has a test.
const SCENARIOS: &[&str] = &[
    "nested",
    "dag",
    "panic",
    "app-error",
    "timeout",
    "infeasible",
    "wait",
    "cancel",
    "nested-refs",
    "unknown-function",
    "gpu",
    "large-object",
    "put-bytes",
    "huge-object",
    "pinned-elsewhere",
    "store-full",
    "retry",
    "options",
    "custom-resource",
    "decode-error",
    "zeroed-blocks",
    "overfill",
    "fib",
];

#[fabric::remote]
fn level(n: u32) -> fabric::Result<u32> {
    if n == 0 {
        return Ok(0);
    }
    let below = level::remote(n - 1)?;
    Ok(fabric::get(&below)? + 1)
}

/// Naive recursive Fibonacci, one task per call: fib(n) makes
/// 2 fib(n + 1) - 1 tasks in a tree n - 1 levels deep.
#[fabric::remote]
fn fib(n: u32) -> fabric::Result<u64> {
    if n < 2 {
        return Ok(u64::from(n));
    }
    let a = fib::remote(n - 1)?;
    let b = fib::remote(n - 2)?;
    Ok(fabric::get(&a)? + fabric::get(&b)?)
}

#[fabric::remote]
fn source(x: i64) -> i64 {
    x
}

#[fabric::remote]
fn double(x: i64) -> i64 {
    2 * x
}

#[fabric::remote]
fn increment(x: i64) -> i64 {
    x + 1
}

#[fabric::remote]
fn combine(a: i64, b: i64) -> i64 {
    a * 100 + b
}

#[fabric::remote]
fn boom(answer: u32) -> u32 {
    panic!("boom: the answer is {answer}");
}

#[fabric::remote]
fn reject(input: String) -> Result<String, String> {
    Err(format!("bad input `{input}`"))
}

#[fabric::remote]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[fabric::remote(num_gpus = 4)]
fn needs_four_gpus() -> u32 {
    4
}

#[fabric::remote(num_gpus = 1)]
fn gpu_ids() -> Vec<u32> {
    fabric::context().gpu_ids
}

#[fabric::remote(resources(ssd = 1))]
fn on_ssd() -> String {
    "ran on ssd".into()
}

#[fabric::remote]
fn sum_refs(refs: Vec<ObjectRef<i64>>) -> fabric::Result<i64> {
    Ok(fabric::get_all(&refs)?.into_iter().sum())
}

#[fabric::remote]
fn checksum(data: serde_bytes::ByteBuf) -> (usize, u64) {
    (data.len(), data.iter().map(|b| u64::from(*b)).sum())
}

#[fabric::remote]
fn cpus_seen() -> String {
    "ok".into()
}

#[fabric::remote]
fn takes_number(n: u64) -> u64 {
    n
}

#[fabric::actor]
struct Attempts {
    n: u32,
}

#[fabric::actor]
impl Attempts {
    fn new() -> Self {
        Attempts { n: 0 }
    }

    fn next(&mut self) -> u32 {
        self.n += 1;
        self.n
    }
}

/// Fails until its third attempt (counted by an actor).
#[fabric::remote]
fn flaky(attempts: ActorHandle<Attempts>) -> fabric::Result<u32> {
    let n = fabric::get(&attempts.next().remote()?)?;
    if n < 3 {
        panic!("attempt {n} fails");
    }
    Ok(n)
}

fn describe(e: &Error) -> String {
    match e {
        Error::TaskFailed {
            function,
            kind,
            message,
            ..
        } => format!("TaskFailed {function} {kind:?}: {message}"),
        other => format!("{other:?}"),
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "list" => println!("{}", SCENARIOS.join(" ")),
        "nested" => {
            let r = level::remote(3)?;
            println!("nested depth {}", fabric::get(&r)?);
        }
        "fib" => {
            let n: u32 = std::env::args()
                .nth(2)
                .and_then(|a| a.parse().ok())
                .unwrap_or(20);
            let started = std::time::Instant::now();
            let r = fabric::get(&fib::remote(n)?)?;
            println!("fib({n}) = {r}");
            eprintln!("fib({n}) took {:.1} s", started.elapsed().as_secs_f64());
        }
        "dag" => {
            let a = source::remote(5)?;
            let b = double::remote(&a)?;
            let c = increment::remote(&a)?;
            let d = combine::remote(b, c)?;
            println!("dag {}", fabric::get(&d)?);
        }
        "panic" => {
            let r = boom::remote(42)?;
            println!("{}", describe(&fabric::get(&r).unwrap_err()));
        }
        "app-error" => {
            let r = reject::remote("x".to_string())?;
            println!("{}", describe(&fabric::get(&r).unwrap_err()));
        }
        "timeout" => {
            let r = sleep_ms::remote(2_000)?;
            let e = fabric::get_timeout(&r, Duration::from_millis(100)).unwrap_err();
            println!("{}", describe(&e));
            println!("then {}", fabric::get(&r)?);
        }
        "infeasible" => {
            let e = needs_four_gpus::remote().unwrap_err();
            println!("{}", describe(&e));
            let e = cpus_seen::options(TaskOptions::new().num_cpus(64.0))
                .remote()
                .unwrap_err();
            println!("{}", describe(&e));
        }
        "wait" => {
            let slow = sleep_ms::remote(3_000)?;
            let fast = sleep_ms::remote(10)?;
            let (ready, pending) = fabric::wait(&[slow.clone(), fast.clone()], 1, None)?;
            println!(
                "ready {:?} pending {}",
                fabric::get_all(&ready)?,
                pending.len()
            );
            let (ready, pending) = fabric::wait(&[slow], 1, Some(Duration::from_millis(50)))?;
            println!(
                "after timeout ready {} pending {}",
                ready.len(),
                pending.len()
            );
        }
        "cancel" => {
            let r = sleep_ms::remote(60_000)?;
            std::thread::sleep(Duration::from_millis(200));
            fabric::cancel(&r)?;
            println!("{}", describe(&fabric::get(&r).unwrap_err()));
            let queued: Vec<_> = (0..4)
                .map(|_| sleep_ms::remote(60_000))
                .collect::<fabric::Result<_>>()?;
            for q in &queued {
                fabric::cancel(q)?;
            }
            let outcomes: Vec<String> = queued
                .iter()
                .map(|q| describe(&fabric::get(q).unwrap_err()))
                .collect();
            println!("queued {}", outcomes.join(","));
        }
        "nested-refs" => {
            let refs: Vec<ObjectRef<i64>> = (1..=4)
                .map(|i| fabric::put(&i))
                .collect::<fabric::Result<_>>()?;
            let boxed = fabric::put(&refs)?;
            drop(refs);
            let r = sum_refs::remote(&boxed)?;
            println!("sum {}", fabric::get(&r)?);
            let back: Vec<ObjectRef<i64>> = fabric::get(&boxed)?;
            println!("first {}", fabric::get(&back[0])?);
        }
        "unknown-function" => {
            let r = fabric::__rt::submit::<u32>(
                "no_such_function",
                fabric::__rt::ArgList::new(),
                &TaskOptions::new(),
            )?;
            println!("{}", describe(&fabric::get(&r).unwrap_err()));
        }
        "gpu" => {
            let r = gpu_ids::remote()?;
            println!("gpu ids {:?}", fabric::get(&r)?);
        }
        "large-object" => {
            let data = serde_bytes::ByteBuf::from(vec![7u8; 32 << 20]);
            let r = fabric::put(&data)?;
            let back = fabric::get(&r)?;
            let sum = checksum::remote(&r)?;
            println!(
                "large {} {:?}",
                back.len() == data.len(),
                fabric::get(&sum)?
            );
        }
        "huge-object" => {
            // More than wasmtime's default 128 MiB per host call.
            let r = fabric::put_bytes(&vec![9u8; 200 << 20])?;
            let (len, sum) = fabric::get(&checksum::remote(&r)?)?;
            println!("huge {len} {}", sum == 9 * (200 << 20));
        }
        "pinned-elsewhere" => {
            let other = "00000000000000000000000000000001";
            let e = cpus_seen::options(TaskOptions::new().on_node(other, false))
                .remote()
                .and_then(|r| fabric::get(&r));
            println!("{}", describe(&e.unwrap_err()));
            let soft = cpus_seen::options(TaskOptions::new().on_node(other, true)).remote()?;
            println!("soft {}", fabric::get(&soft)?);
        }
        "put-bytes" => {
            // Every size class of the MessagePack bin header, and a large one.
            for len in [0usize, 10, 300, 70_000, 3 << 20] {
                let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                let r = fabric::put_bytes(&data)?;
                let back: serde_bytes::ByteBuf = fabric::get(&r)?;
                let (n, sum) = fabric::get(&checksum::remote(&r)?)?;
                println!(
                    "{len} {} {}",
                    back.into_vec() == data,
                    n as u64 * 1000 + sum % 1000
                );
            }
        }
        "overfill" => {
            // n objects of 1 MiB, each with its own bytes, on a store that
            // holds 8 MiB: all stay referenced, so the store must spill.
            let n: usize = std::env::args()
                .nth(2)
                .and_then(|a| a.parse().ok())
                .unwrap_or(24);
            let fill = |i: usize| -> Vec<u8> {
                (0..1usize << 20)
                    .map(|j| ((i * 31 + j) % 251) as u8)
                    .collect()
            };
            let refs = (0..n)
                .map(|i| fabric::put_bytes(&fill(i)))
                .collect::<fabric::Result<Vec<_>>>()?;
            let mut correct = 0;
            // Twice, in two orders: loading one back spills another.
            for i in (0..n).chain((0..n).rev()) {
                let back: serde_bytes::ByteBuf = fabric::get(&refs[i])?;
                if back.into_vec() == fill(i) && i < n {
                    correct += 1;
                }
            }
            println!("overfill {n} correct {}", correct / 2);
        }
        "zeroed-blocks" => {
            // Large zeroed blocks are zeroed by the host (the SDK's
            // allocator): reusing a dirty block must still give zeros, and
            // the blocks around it must keep their bytes.
            let mut ok = true;
            for len in [1usize << 20, (3 << 20) + 123, 8 << 20] {
                let before = vec![7u8; 5000];
                let dirty = vec![0x5au8; len];
                let after = vec![9u8; 5000];
                drop(dirty);
                let zeroed = vec![0u8; len];
                let wide = vec![0u64; len / 8 + 1];
                ok &= zeroed.iter().all(|b| *b == 0) && wide.iter().all(|w| *w == 0);
                ok &= before.iter().all(|b| *b == 7) && after.iter().all(|b| *b == 9);
                let back: serde_bytes::ByteBuf = fabric::get(&fabric::put_bytes(&zeroed)?)?;
                ok &= back.len() == len && back.iter().all(|b| *b == 0);
            }
            println!("zeroed {ok}");
        }
        "store-full" => {
            // Run on a node whose store holds 8 MiB: the second 5 MiB object
            // does not fit, and freeing the first makes room again.
            let first = fabric::put_bytes(&vec![1u8; 5 << 20])?;
            println!(
                "{}",
                describe(&fabric::put_bytes(&vec![2u8; 5 << 20]).unwrap_err())
            );
            drop(first);
            let again = fabric::put_bytes(&vec![3u8; 5 << 20])?;
            println!("after free {}", fabric::get(&checksum::remote(&again)?)?.0);
        }
        "retry" => {
            let attempts = Attempts::remote()?;
            let r = flaky::options(TaskOptions::new().max_retries(5).retry_exceptions(true))
                .remote(attempts.clone())?;
            println!("retry succeeded on attempt {}", fabric::get(&r)?);
            let attempts = Attempts::remote()?;
            let r = flaky::options(TaskOptions::new().max_retries(1).retry_exceptions(true))
                .remote(attempts)?;
            println!("{}", describe(&fabric::get(&r).unwrap_err()));
        }
        "options" => {
            let refs: Vec<_> = (0..4)
                .map(|_| cpus_seen::options(TaskOptions::new().num_cpus(0.5)).remote())
                .collect::<fabric::Result<_>>()?;
            println!("options {:?}", fabric::get_all(&refs)?);
        }
        "custom-resource" => {
            println!("{}", fabric::get(&on_ssd::remote()?)?);
        }
        "decode-error" => {
            let r = fabric::__rt::submit::<u64>(
                "takes_number",
                {
                    let mut a = fabric::__rt::ArgList::new();
                    a.push(Arg::Value("not a number".to_string()))?;
                    a
                },
                &TaskOptions::new(),
            )?;
            let e = fabric::get(&r).unwrap_err();
            println!("{}", describe(&e));
            assert!(matches!(
                e,
                Error::TaskFailed {
                    kind: FailureKind::BadValue,
                    ..
                }
            ));
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown scenario `{other}`; try: {}",
                SCENARIOS.join(" ")
            )));
        }
    }
    Ok(())
}
