//! Attacks on what a tenant can make a node hold or reach, for
//! tests/all/breaches.rs: chains and fans of nested objects, floods of empty
//! objects, forged `put-bytes` headers, directory grants through symbolic
//! links, and errors passed up through many tasks. The driver runs the
//! scenario named by its first argument and prints what it got back.

use std::time::Duration;

use fabric::__bindings::fabric::core::host;
use fabric::Error;
use fabric::prelude::*;

/// Every scenario; the tests check that each one has a test.
const SCENARIOS: &[&str] = &[
    "nested-chain",
    "nested-fan",
    "empty-puts",
    "put-bytes-header",
    "error-chain",
    "failed-argument",
    "read",
    "make-link",
    "swap-dir-for-link",
    "hold",
    "say-then-hold",
    "read-big",
    "touch",
    "burst",
    "queued-args",
    "fat-errors",
    "dependents",
    "long-names",
    "actor-flood",
    "victim",
];

/// What a host call failed with, as the tests match it.
fn describe(e: &Error) -> String {
    match e {
        Error::LimitExceeded { name, value, .. } => format!("limit-exceeded {name} {value}"),
        Error::InvalidArgument(m) => format!("invalid-argument: {m}"),
        Error::TaskFailed { kind, .. } => format!("task-failed {kind:?}: {e}"),
        other => format!("{other:?}"),
    }
}

fn arg(n: usize) -> String {
    std::env::args().nth(n).unwrap_or_default()
}

fn count(n: usize, default: u64) -> u64 {
    arg(n).parse().unwrap_or(default)
}

/// A one-byte MessagePack value (0).
const ZERO: &[u8] = &[0];

/// `n` objects, each nesting the one before; only the newest is held.
fn nested_chain(n: u64) -> fabric::Result<()> {
    let mut head = host::put(ZERO, &[])?;
    for _ in 1..n {
        let next = host::put(ZERO, &[&head])?;
        head = next;
    }
    println!("chain of {n}: built");
    drop(head);
    // The node freed the whole chain (in one loop, not n nested calls):
    // a fresh object still works.
    let after = fabric::put(&7u8)?;
    println!("chain of {n}: freed, then put {}", fabric::get(&after)?);
    Ok(())
}

/// One object nesting `n` others, which only it holds.
fn nested_fan(n: u64) -> fabric::Result<()> {
    let leaves: Vec<host::ObjectRef> = (0..n)
        .map(|_| host::put(ZERO, &[]))
        .collect::<Result<_, _>>()?;
    let borrowed: Vec<&host::ObjectRef> = leaves.iter().collect();
    let root = host::put(ZERO, &borrowed)?;
    drop(borrowed);
    drop(leaves);
    println!("fan of {n}: built");
    drop(root);
    let after = fabric::put(&7u8)?;
    println!("fan of {n}: freed, then put {}", fabric::get(&after)?);
    Ok(())
}

/// Empty objects until the node refuses one.
fn empty_puts() {
    let mut kept = Vec::new();
    let err = loop {
        match host::put(&[], &[]) {
            Ok(r) => kept.push(r),
            Err(e) => break Error::from(e),
        }
        if kept.len() >= 50_000_000 {
            println!("UNEXPECTED: 50000000 empty objects held");
            return;
        }
    };
    println!(
        "stored {} empty objects, then: {}",
        kept.len(),
        describe(&err)
    );
}

/// `put-bytes` with headers that are not the data's `bin` header.
fn put_bytes_header() {
    let data = vec![5u8; 16];
    let cases: [(&str, Vec<u8>); 4] = [
        ("300 MiB header", vec![0xc4; 300 << 20]),
        ("wrong length", vec![0xc4, 17]),
        ("not bin", vec![0x92, 1, 2]),
        ("bin 8 of 16", vec![0xc4, 16]),
    ];
    for (what, header) in cases {
        match host::put_bytes(&header, &data) {
            Ok(r) => {
                let stored = host::get(&r, None).map(|b| b.len()).unwrap_or(0);
                println!("{what}: stored {stored} bytes");
            }
            Err(e) => println!("{what}: {}", describe(&Error::from(e))),
        }
    }
}

/// Two children per level: deep down, a submit meets the job's
/// pending-tasks limit and its error travels back up through every level.
#[fabric::remote]
fn descend(depth: u32) -> fabric::Result<u64> {
    if depth == 0 {
        std::thread::sleep(Duration::from_millis(20));
        return Ok(1);
    }
    let left = descend::remote(depth - 1)?;
    let right = descend::remote(depth - 1)?;
    Ok(fabric::get(&left)? + fabric::get(&right)?)
}

#[fabric::remote]
fn refuse(why: String) -> fabric::Result<u64> {
    Err(Error::InvalidArgument(why))
}

#[fabric::remote]
fn double(x: u64) -> u64 {
    x * 2
}

/// Fails with a message of `mib` MiB.
#[fabric::remote]
fn fail_big(mib: u64) -> fabric::Result<u64> {
    Err(Error::InvalidArgument("E".repeat((mib << 20) as usize)))
}

#[fabric::remote]
fn read(path: String) -> String {
    match std::fs::read_to_string(&path) {
        Ok(text) => format!("READ {:?}", text.trim()),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

/// Makes a symbolic link at `link` pointing at `target` (a relative path:
/// WASI refuses absolute ones).
#[fabric::remote]
fn make_link(target: String, link: String) -> String {
    #[allow(deprecated)]
    match std::fs::soft_link(&target, &link) {
        Ok(()) => "LINKED".into(),
        Err(e) => format!("failed ({:?})", e.kind()),
    }
}

/// Moves directory `dir` aside and puts a link to `target` in its place.
#[fabric::remote]
fn swap_dir_for_link(dir: String, target: String) -> String {
    if let Err(e) = std::fs::rename(&dir, format!("{dir}-moved")) {
        return format!("rename failed ({:?})", e.kind());
    }
    #[allow(deprecated)]
    match std::fs::soft_link(&target, &dir) {
        Ok(()) => "SWAPPED".into(),
        Err(e) => format!("link failed ({:?})", e.kind()),
    }
}

/// Writes `mib` MiB of fresh memory, holds it `ms` milliseconds, and
/// gives it back.
#[fabric::remote]
fn touch(mib: u64, ms: u64) -> u64 {
    let block = vec![1u8; (mib << 20) as usize];
    std::hint::black_box(&block);
    std::thread::sleep(Duration::from_millis(ms));
    block.len() as u64
}

#[fabric::remote]
fn measure(data: serde_bytes::ByteBuf) -> u64 {
    data.len() as u64
}

/// Sits on its argument for `ms` milliseconds.
#[fabric::remote]
fn sit(data: serde_bytes::ByteBuf, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    data.len() as u64
}

#[fabric::actor]
struct Sitter {
    calls: u64,
}

#[fabric::actor]
impl Sitter {
    fn new() -> Self {
        Sitter { calls: 0 }
    }

    fn sit(&mut self, data: serde_bytes::ByteBuf, ms: u64) -> u64 {
        self.calls += 1;
        std::thread::sleep(Duration::from_millis(ms));
        data.len() as u64
    }
}

/// Queues calls with 1 MiB arguments that cannot run yet, until one is
/// refused; says how many were queued and why the next was not.
fn queue_until_refused(what: &str, mut submit: impl FnMut() -> fabric::Result<()>) {
    let mut queued = 0;
    let err = loop {
        match submit() {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
        // Four times what the quota allows: enough to show it is not.
        if queued >= 256 {
            println!("{what}: UNEXPECTED: 256 queued");
            return;
        }
    };
    println!("{what}: queued {queued}, then: {}", describe(&err));
}

/// An actor that only holds its instance.
#[fabric::actor]
struct Idle {
    n: u32,
}

#[fabric::actor]
impl Idle {
    fn new(n: u32) -> Self {
        Idle { n }
    }

    fn ping(&self) -> u32 {
        self.n
    }
}

#[fabric::remote]
fn square(x: u64) -> u64 {
    x * x
}

/// Creates up to `n` actors, each answering once, then holds them for
/// `hold_ms`; prints how many it got and the error that stopped it. `how`
/// may say `detached` (they outlive the job) and `spread` (over the nodes).
fn actor_flood(n: u64, how: &str, hold_ms: u64) -> fabric::Result<()> {
    let mut options = ActorOptions::new();
    if how.contains("detached") {
        options = options.detached();
    }
    if how.contains("spread") {
        options = options.spread();
    }
    let mut made = Vec::new();
    let mut stopped = None;
    for i in 0..n {
        match Idle::options(options.clone()).remote(i as u32) {
            Ok(a) => made.push(a),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    let mut answered = 0;
    for a in &made {
        if fabric::get(&a.ping().remote()?).is_ok() {
            answered += 1;
        }
    }
    println!(
        "created {} actors, {answered} answered, then: {}",
        made.len(),
        stopped.map_or("nothing".into(), |e| describe(&e))
    );
    std::thread::sleep(Duration::from_millis(hold_ms));
    Ok(())
}

/// Creates `actors` actors and runs `tasks` tasks, all of which must work.
fn victim(actors: u64, tasks: u64) -> fabric::Result<()> {
    let made = (0..actors)
        .map(|i| Idle::remote(i as u32))
        .collect::<fabric::Result<Vec<_>>>()?;
    let mut sum = 0;
    for a in &made {
        sum += u64::from(fabric::get(&a.ping().remote()?)?);
    }
    let squares = (0..tasks)
        .map(square::remote)
        .collect::<fabric::Result<Vec<_>>>()?;
    let total: u64 = fabric::get_all(&squares)?.into_iter().sum();
    println!("victim: {actors} actors answered {sum}, {tasks} tasks summed {total}");
    Ok(())
}

fn print_all<T: std::fmt::Display>(what: &str, r: fabric::Result<T>) {
    match r {
        Ok(v) => println!("{what}: {v}"),
        Err(e) => println!("{what}: {}", describe(&e)),
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    match arg(1).as_str() {
        "list" => println!("{}", SCENARIOS.join(" ")),
        "nested-chain" => nested_chain(count(2, 1_000_000))?,
        "nested-fan" => nested_fan(count(2, 1_000_000))?,
        "empty-puts" => empty_puts(),
        "put-bytes-header" => put_bytes_header(),
        "error-chain" => {
            let r = descend::remote(count(2, 14) as u32).and_then(|r| fabric::get(&r));
            match r {
                Ok(v) => println!("UNEXPECTED: descend returned {v}"),
                Err(e) => {
                    let text = e.to_string();
                    println!("driver got: {}", describe(&e));
                    println!("hops named: {}", text.matches("returned an error").count());
                }
            }
        }
        "failed-argument" => {
            let bad = refuse::remote("bad input".to_string())?;
            let doubled = double::remote(bad)?;
            let again = double::remote(doubled)?;
            print_all("double", fabric::get(&again));
        }
        "read" => {
            for p in std::env::args().skip(2) {
                print_all(&p, fabric::get(&read::remote(p.clone())?));
            }
        }
        "make-link" => print_all("link", fabric::get(&make_link::remote(arg(2), arg(3))?)),
        "swap-dir-for-link" => {
            // One job: read through the grant, swap the directory for a
            // link (a task), then read through the same grant again.
            let path = arg(4);
            print_all("before", fabric::get(&read::remote(path.clone())?));
            print_all(
                "swap",
                fabric::get(&swap_dir_for_link::remote(arg(2), arg(3))?),
            );
            print_all("after", fabric::get(&read::remote(path)?));
        }
        "actor-flood" => actor_flood(count(2, 1000), &arg(3), count(4, 0))?,
        "victim" => victim(count(2, 10), count(3, 100))?,
        "hold" => std::thread::sleep(Duration::from_millis(count(2, 1000))),
        "say-then-hold" => {
            // A job that is seen running, with output and tasks, one of
            // them failed (the dashboard's test).
            for i in 0..count(2, 3) {
                println!("line {i} of a running job");
            }
            let doubled: Vec<_> = (0..4).map(double::remote).collect::<fabric::Result<_>>()?;
            fabric::get_all(&doubled)?;
            let refused = fabric::get(&refuse::remote("a refusal for the dashboard".to_string())?);
            assert!(refused.is_err());
            std::thread::sleep(Duration::from_millis(count(3, 60_000)));
        }
        "fat-errors" => {
            // Tasks that fail with huge messages, all held.
            let (mib, tasks) = (count(2, 32), count(3, 40));
            let refs: Vec<_> = (0..tasks)
                .map(|_| fail_big::remote(mib))
                .collect::<fabric::Result<_>>()?;
            let mut longest = 0;
            for r in &refs {
                if let Err(Error::InvalidArgument(m)) = fabric::get(r) {
                    longest = longest.max(m.len());
                }
            }
            println!("{tasks} errors of {mib} MiB: longest kept {longest} bytes");
            // What they keep is charged: a small put may no longer fit.
            print_all("then put", fabric::put(&1u8).map(|_| "stored"));
        }
        "dependents" => {
            // A failed task, then a chain of `n` tasks each taking the one
            // before as its argument: none of them runs.
            let n = count(2, 20_000);
            let mut last = double::remote(refuse::remote("bad input".to_string())?)?;
            for _ in 1..n {
                last = double::remote(last)?;
            }
            match fabric::get(&last) {
                Err(Error::InvalidArgument(m)) => {
                    println!("after {n} tasks: {} bytes: {m}", m.len())
                }
                other => println!("UNEXPECTED: {other:?}"),
            }
        }
        "long-names" => {
            // Names and namespaces of 1 MiB: refused, never kept.
            let long = "n".repeat(1 << 20);
            let options = ActorOptions::new().name("ok").namespace(&long);
            print_all(
                "namespace",
                Sitter::options(options).remote().map(|a| a.id()),
            );
            print_all(
                "lookup",
                fabric::get_actor_in::<Sitter>(&long, "ok").map(|a| a.id()),
            );
            print_all(
                "label",
                touch::options(TaskOptions::new().on_label(&long, "x", false))
                    .remote(0, 0)
                    .map(|r| r.id().0),
            );
        }
        "queued-args" => {
            // Arguments held by calls that wait are charged to the tenant.
            let mib = serde_bytes::ByteBuf::from(vec![3u8; 1 << 20]);
            let mut tasks = Vec::new();
            queue_until_refused("tasks", || {
                tasks.push(sit::remote(mib.clone(), 60_000)?);
                Ok(())
            });
            for t in &tasks {
                fabric::cancel(t)?;
            }
            drop(tasks);
            let sitter = Sitter::remote()?;
            let mut calls = Vec::new();
            queue_until_refused("actor calls", || {
                calls.push(sitter.sit(mib.clone(), 60_000).remote()?);
                Ok(())
            });
        }
        "read-big" => {
            // One object of `mb` MB, read by `readers` tasks one after another.
            let (mb, readers) = (count(2, 100), count(3, 16));
            let big = fabric::put_bytes(&vec![7u8; (mb * 1_000_000) as usize])?;
            let mut total = 0;
            for _ in 0..readers {
                total += fabric::get(&measure::remote(&big)?)?;
            }
            println!("read {total} bytes in {readers} tasks");
        }
        "touch" => {
            // `tasks` tasks one after another, each writing `mib` MiB.
            let (mib, tasks) = (count(2, 200), count(3, 70));
            let mut total = 0;
            for _ in 0..tasks {
                total += fabric::get(&touch::remote(mib, 0)?)?;
            }
            println!("touched {} MiB in {tasks} tasks", total >> 20);
        }
        "burst" => {
            // `tasks` tasks at once, each writing `mib` MiB and holding it
            // `ms` milliseconds, each asking for `cpus` CPUs (0: all run
            // at once).
            let (tasks, mib, ms) = (count(2, 500), count(3, 3), count(4, 0));
            let cpus: f64 = arg(5).parse().unwrap_or(1.0);
            let refs: Vec<_> = (0..tasks)
                .map(|_| touch::options(TaskOptions::new().num_cpus(cpus)).remote(mib, ms))
                .collect::<fabric::Result<_>>()?;
            let total: u64 = fabric::get_all(&refs)?.into_iter().sum();
            println!("burst of {tasks} touched {} MiB", total >> 20);
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
