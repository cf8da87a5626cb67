//! Attack guests for the hostile-guest suite (tests/all/hostile.rs), and
//! the well-behaved victim job that runs beside each attack. The driver
//! runs the scenario named by its first argument and prints what it got
//! back: every attack should end in a typed error, never in success.

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;

use fabric::__bindings::fabric::core::host;
use fabric::__bindings::fabric::core::types::Id;
use fabric::Error;
use fabric::prelude::*;

mod nn;

/// Every scenario; the tests check that each one has a test.
const SCENARIOS: &[&str] = &[
    "victim",
    "infinite-loop",
    "memory-bomb",
    "deep-recursion",
    "fork-bomb",
    "object-flood",
    "huge-argument",
    "forged-ids",
    "steal-object",
    "steal-actor",
    "steal-named-actor",
    "read-passwd",
    "write-outside",
    "socket",
    "env",
    "log-flood",
    "ctor-panic",
    "own-result",
    "sleep-forever",
    "busy",
    "concurrency",
    "streams",
    "stuck-stream",
    "watches",
    "nn",
    "nn-spin",
];

fn id(raw: u128) -> Id {
    Id {
        hi: (raw >> 64) as u64,
        lo: raw as u64,
    }
}

/// What a host call failed with, as the tests match it.
fn describe(e: &Error) -> String {
    match e {
        Error::LimitExceeded { name, value, .. } => format!("limit-exceeded {name} {value}"),
        Error::NotFound(_) => "not-found".into(),
        Error::InvalidArgument(m) => format!("invalid-argument: {m}"),
        Error::ActorDied(m) => format!("actor-died: {m}"),
        Error::TaskFailed {
            function,
            kind,
            message,
            ..
        } => format!("task-failed {function} {kind:?}: {message}"),
        other => format!("{other:?}"),
    }
}

fn report<T: std::fmt::Debug>(what: &str, r: fabric::Result<T>) {
    match r {
        Ok(v) => println!("{what}: UNEXPECTED SUCCESS {v:?}"),
        Err(e) => println!("{what}: {}", describe(&e)),
    }
}

// ---------------------------------------------------------------- streams

/// A generator that ignores every refusal and yields without end.
#[fabric::remote]
fn stubborn() -> u64 {
    let mut refused = 0u64;
    loop {
        if host::yield_item(&[0x01], &[]).is_err() {
            refused += 1;
        }
        black_box(refused);
    }
}

fn raw_options(backpressure: Option<u32>) -> fabric::__bindings::fabric::core::types::TaskOptions {
    use fabric::__bindings::fabric::core::types::{Resources, TaskOptions as Raw};
    Raw {
        resources: Resources {
            num_cpus: None,
            num_gpus: None,
            memory: None,
            custom: Vec::new(),
        },
        placement: None,
        max_retries: None,
        retry_exceptions: false,
        name: None,
        num_returns: None,
        backpressure,
    }
}

/// Streams misused through the raw interface: a yield outside any
/// generator, bad backpressure, a generator that ignores refusals, and a
/// flood of streams dropped unread.
fn streams_attack() {
    let outside = host::yield_item(&[0x01], &[]).map_err(Error::from);
    report("yield outside", outside);
    for bad in [0, 1 << 20] {
        let r = host::submit_stream("stubborn", &[], &[], &raw_options(Some(bad)));
        report(
            &format!("backpressure {bad}"),
            r.map(drop).map_err(Error::from),
        );
    }
    let many = host::submit_stream("stubborn", &[], &[], &raw_options(Some(1)))
        .map_err(Error::from)
        .and_then(|s| {
            let took = (0..2)
                .map(|_| s.next(Some(5_000)).map_err(Error::from))
                .collect::<fabric::Result<Vec<_>>>()?;
            Ok(took.iter().filter(|r| r.is_some()).count())
        });
    println!("stubborn: took {:?}, then dropped", many);
    let mut opened = 0;
    for _ in 0..2_000 {
        if host::submit_stream("stubborn", &[], &[], &raw_options(Some(1))).is_ok() {
            opened += 1;
        }
    }
    println!("flood: {opened} streams opened and dropped");
}

/// A concurrent actor whose generator method yields without end.
#[fabric::actor]
struct Hoarder;

#[fabric::actor]
impl Hoarder {
    fn new() -> Self {
        Hoarder
    }

    /// Endless items: a plain generator method waits in the host for its
    /// caller to take them, and the actor's other calls wait too.
    fn endless(&self) -> Generator<'_, u64> {
        Generator::new(0..)
    }

    /// Waits for `r`'s object (another call may run meanwhile).
    async fn wait_for(&self, r: Vec<ObjectRef<u64>>) -> fabric::Result<u64> {
        fabric::get_async(&r[0]).await
    }
}

/// A concurrent actor's stream whose caller takes one item and then none:
/// the generator waits for room in the host, yet the call that started
/// 1.5 s before it still fails at its own wall time (3 s), not the
/// stream's; the stream ends with the wall-time limit too. A yield for a
/// call outside an actor's run is refused.
fn stuck_stream() -> fabric::Result<()> {
    let outside = host::yield_call_item(0, &[0x01], &[], false).map_err(Error::from);
    report("yield-call-item outside", outside);
    let hoarder = Hoarder::remote()?;
    let started = std::time::Instant::now();
    let never = nap::remote(u64::MAX / 2)?;
    let waiting = hoarder.wait_for(vec![never.clone()]).remote()?;
    // 1.5 s in the host's wait, which is no CPU time (a WASI sleep is).
    fabric::wait(
        std::slice::from_ref(&never),
        1,
        Some(Duration::from_millis(1500)),
    )?;
    let mut items = hoarder.endless().backpressure(1).remote()?;
    let first = fabric::get(&items.next_ref()?.expect("one item"))?;
    println!("first item {first}");
    report("waiting call", fabric::get(&waiting));
    let by = started.elapsed();
    println!(
        "it failed before the stream's deadline: {}",
        by < Duration::from_millis(4200)
    );
    // Past the stream's own deadline (4.5 s), taking nothing meanwhile.
    let later = nap::remote(u64::MAX / 2)?;
    let left = Duration::from_millis(5500).saturating_sub(started.elapsed());
    fabric::wait(std::slice::from_ref(&later), 1, Some(left))?;
    let rest: Vec<_> = std::iter::from_fn(|| items.next()).collect();
    let taken = rest.iter().filter(|r| r.is_ok()).count();
    let end = rest.into_iter().find_map(|r| r.err());
    println!(
        "then {taken} more items and: {:?}",
        end.as_ref().map(describe)
    );
    Ok(())
}

// ---------------------------------------------------------------- victim

#[fabric::remote]
fn square(x: u64) -> u64 {
    x * x
}

#[fabric::actor]
struct Vault {
    secret: String,
}

#[fabric::actor]
impl Vault {
    fn new(secret: String) -> Self {
        Vault { secret }
    }

    fn secret(&self) -> String {
        self.secret.clone()
    }
}

/// The well-behaved job: sums squares with tasks, keeps an object and an
/// actor (printing their ids for the attacker), and checks all is intact
/// after `hold_ms`.
fn victim(hold_ms: u64) -> fabric::Result<()> {
    let secret = fabric::put(&"alice's secret".to_string())?;
    let vault = Vault::options(ActorOptions::new().name("vault").namespace("shared"))
        .remote("alice's vault".to_string())?;
    println!("object {}", secret.id().0);
    println!("actor {}", vault.id());
    let _ = std::io::stdout().flush();
    let deadline = std::time::Instant::now() + Duration::from_millis(hold_ms);
    let mut rounds = 0;
    loop {
        let refs: Vec<_> = (1..=20)
            .map(square::remote)
            .collect::<fabric::Result<_>>()?;
        let sum: u64 = fabric::get_all(&refs)?.into_iter().sum();
        assert_eq!(sum, 2870, "sum of squares 1..=20");
        rounds += 1;
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kept = fabric::get(&secret)?;
    let told = fabric::get(&vault.secret().remote()?)?;
    println!(
        "victim ok: sum 2870 in {} rounds, {kept}, {told}",
        rounds.min(1)
    );
    Ok(())
}

// ---------------------------------------------------------------- attacks

#[fabric::remote]
fn spin() -> u64 {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

#[fabric::remote]
fn hog_memory() -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![1u8; 1 << 20]);
        black_box(&chunks);
    }
}

/// Unbounded recursion on the wasm stack itself (no locals in linear
/// memory, so Rust's shadow stack does not overflow first).
fn recurse(n: u64) -> u64 {
    // Never true: the recursion is unbounded, but the compiler cannot know.
    if black_box(n) == u64::MAX {
        return n;
    }
    recurse(n + 1).wrapping_mul(black_box(3)).wrapping_add(n)
}

#[fabric::remote]
fn overflow_stack() -> u64 {
    recurse(0)
}

#[fabric::remote]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[fabric::remote]
fn length(data: serde_bytes::ByteBuf) -> usize {
    data.len()
}

#[fabric::remote]
fn read_file(path: String) -> String {
    match std::fs::read_to_string(&path) {
        Ok(text) => format!("READ {} bytes", text.len()),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

#[fabric::remote]
fn write_file(path: String) -> String {
    match std::fs::write(&path, b"written by a guest") {
        Ok(()) => "WROTE".into(),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

#[fabric::remote]
fn connect(address: String) -> String {
    match std::net::TcpStream::connect(address.as_str()) {
        Ok(_) => "CONNECTED".into(),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

#[fabric::remote]
fn environment() -> Vec<String> {
    std::env::vars().map(|(k, _)| k).collect()
}

#[fabric::remote]
fn shout(lines: u64) -> u64 {
    let line = "x".repeat(1000);
    for _ in 0..lines {
        println!("{line}");
    }
    lines
}

#[fabric::actor]
struct Bomb {
    _x: u8,
}

#[fabric::actor]
impl Bomb {
    fn new() -> Self {
        panic!("the constructor blows up");
    }

    fn ping(&self) -> u8 {
        1
    }
}

#[fabric::actor]
struct Mailbox {
    id: Option<u128>,
}

#[fabric::actor]
impl Mailbox {
    fn new() -> Self {
        Mailbox { id: None }
    }

    fn post(&mut self, id: u128) {
        self.id = Some(id);
    }

    fn read(&self) -> Option<u128> {
        self.id
    }
}

/// Waits for its own result's id in the mailbox, then `get`s it.
#[fabric::remote]
fn get_own_result(mailbox: ActorHandle<Mailbox>) -> fabric::Result<String> {
    let own = loop {
        if let Some(id) = fabric::get(&mailbox.read().remote()?)? {
            break id;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let handle = host::adopt(id(own)).map_err(Error::from)?;
    Ok(match host::get(&handle, Some(2_000)) {
        Ok(_) => "UNEXPECTED: got its own result".into(),
        Err(e) => describe(&Error::from(e)),
    })
}

/// When this task ran: (start, end) in nanoseconds of the wall clock.
#[fabric::remote]
fn window(ms: u64) -> (u64, u64) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let start = now();
    std::thread::sleep(Duration::from_millis(ms));
    (start, now())
}

/// The most windows open at one instant.
fn max_overlap(windows: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = windows
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    // At equal times, an end comes before a start.
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn arg(n: usize) -> String {
    std::env::args().nth(n).unwrap_or_default()
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let scenario = arg(1);
    match scenario.as_str() {
        "list" => println!("{}", SCENARIOS.join(" ")),
        "victim" => victim(arg(2).parse().unwrap_or(500))?,
        "infinite-loop" => report("spin", fabric::get(&spin::remote()?)),
        "memory-bomb" => report("hog", fabric::get(&hog_memory::remote()?)),
        "deep-recursion" => report("recurse", fabric::get(&overflow_stack::remote()?)),
        "fork-bomb" => {
            let mut refs = Vec::new();
            let err = loop {
                match nap::remote(10_000) {
                    Ok(r) => refs.push(r),
                    Err(e) => break e,
                }
                if refs.len() > 100_000 {
                    println!("UNEXPECTED: 100000 tasks pending");
                    return Ok(());
                }
            };
            println!("submitted {}, then: {}", refs.len(), describe(&err));
            for r in &refs {
                fabric::cancel(r)?;
            }
        }
        "object-flood" => {
            let chunk = vec![7u8; 1 << 20];
            let mut kept = Vec::new();
            let err = loop {
                match fabric::put_bytes(&chunk) {
                    Ok(r) => kept.push(r),
                    Err(e) => break e,
                }
            };
            println!("stored {} MiB, then: {}", kept.len(), describe(&err));
        }
        "huge-argument" => {
            let big = serde_bytes::ByteBuf::from(vec![0u8; 1 << 30]);
            report("1 GiB argument", length::remote(big).map(|_| ()));
        }
        "forged-ids" => {
            let mut found = 0;
            let guesses: Vec<u128> = (0..100u128)
                .chain([u128::MAX, 1 << 64, 0xdead_beef])
                .chain(
                    (0..100u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
                )
                .collect();
            for g in &guesses {
                if host::adopt(id(*g)).is_ok() {
                    found += 1;
                }
            }
            let mine = fabric::put(&1u8)?;
            let neighbour = mine.id().0.wrapping_add(1);
            report(
                "neighbour id",
                host::adopt(id(neighbour)).map(|_| ()).map_err(Error::from),
            );
            println!("guessed {} ids, found {found}", guesses.len());
        }
        "steal-object" => {
            let raw: u128 = arg(2).parse().expect("object id");
            report(
                "adopt",
                host::adopt(id(raw)).map(|_| ()).map_err(Error::from),
            );
        }
        "steal-actor" => {
            let raw: u128 = arg(2).parse().expect("actor id");
            // Bytes shaped exactly like a handle to the victim's actor
            // (MessagePack fixext 16, type 2, the id): no handle results.
            let mut forged = vec![0xd8, 0x02];
            forged.extend_from_slice(&raw.to_be_bytes());
            let decoded = rmp_serde::from_slice::<ActorHandle<Vault>>(&forged);
            match decoded {
                Ok(h) => println!("forged handle: UNEXPECTED SUCCESS {h:?}"),
                Err(e) if e.to_string().contains("not found") => {
                    println!("forged handle: not-found")
                }
                Err(e) => println!("forged handle: {e}"),
            }
            // A handle that is really another object's reference.
            let own = host::put(&[0xc0], &[])?;
            let called = host::call_actor(&own, "secret", &[], &[]).map(|_| ());
            report("object as handle", called.map_err(Error::from));
            report(
                "kill object as handle",
                host::kill_actor(&own).map_err(Error::from),
            );
            report(
                "watch object as handle",
                host::watch_actor(&own).map(|_| ()).map_err(Error::from),
            );
        }
        "steal-named-actor" => {
            report(
                "get_actor_in(shared, vault)",
                fabric::get_actor_in::<Vault>("shared", "vault").map(|h| h.id()),
            );
            // The same name in this tenant is a different actor.
            let mine = Vault::options(ActorOptions::new().name("vault").namespace("shared"))
                .remote("mallory's own".to_string())?;
            println!("own vault says: {}", fabric::get(&mine.secret().remote()?)?);
        }
        "read-passwd" => {
            println!(
                "/etc/passwd: {}",
                fabric::get(&read_file::remote("/etc/passwd".to_string())?)?
            );
            println!(
                "/data/../etc/passwd: {}",
                fabric::get(&read_file::remote("/data/../../etc/passwd".to_string())?)?
            );
            println!(
                "/data/inside.txt: {}",
                fabric::get(&read_file::remote("/data/inside.txt".to_string())?)?
            );
        }
        "write-outside" => {
            for p in [
                "/data/ok.txt",
                "/data/../escape.txt",
                "/tmp/escape.txt",
                "/ro/nope.txt",
            ] {
                println!("{p}: {}", fabric::get(&write_file::remote(p.to_string())?)?);
            }
        }
        "socket" => {
            for a in std::env::args().skip(2) {
                println!("{a}: {}", fabric::get(&connect::remote(a.clone())?)?);
            }
        }
        "env" => {
            let mut vars = fabric::get(&environment::remote()?)?;
            vars.sort();
            println!("task sees env {vars:?}");
            let mut mine: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            mine.sort();
            println!("driver sees env {mine:?}");
        }
        "log-flood" => {
            println!("shout returned {}", fabric::get(&shout::remote(20_000)?)?);
        }
        "ctor-panic" => {
            let bomb = Bomb::remote()?;
            report("ping", bomb.ping().remote().and_then(|r| fabric::get(&r)));
        }
        "own-result" => {
            let mailbox = Mailbox::remote()?;
            let r = get_own_result::remote(mailbox.clone())?;
            fabric::get(&mailbox.post(r.id().0).remote()?)?;
            println!("task says: {}", fabric::get(&r)?);
        }
        "busy" => {
            let (n, ms): (u64, u64) = (arg(2).parse().unwrap_or(10), arg(3).parse().unwrap_or(100));
            let refs: Vec<_> = (0..n)
                .map(|_| nap::remote(ms))
                .collect::<fabric::Result<_>>()?;
            fabric::get_all(&refs)?;
            println!("busy done: {n} tasks");
        }
        "concurrency" => {
            let n: u32 = arg(2).parse().unwrap_or(8);
            let refs: Vec<_> = (0..n)
                .map(|_| window::remote(50))
                .collect::<fabric::Result<_>>()?;
            let windows = fabric::get_all(&refs)?;
            println!("max concurrent {}", max_overlap(&windows));
        }
        "streams" => streams_attack(),
        "stuck-stream" => stuck_stream()?,
        "watches" => watches_attack()?,
        "nn" => nn::attacks()?,
        "nn-spin" => nn::spin()?,
        "sleep-forever" => {
            report("nap", fabric::get(&nap::remote(u64::MAX / 2)?));
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

// ---------------------------------------------------------------- watches

/// The host's own calls to actors (a stop, a watch) have method names a
/// guest cannot send; watches on one actor are bounded, and they fire
/// when it ends.
fn watches_attack() -> fabric::Result<()> {
    let vault = Vault::options(ActorOptions::new().name("mine")).remote("mine".to_string())?;
    let raw = host::get_actor("mine", None)?;
    for method in ["", "\0watch", "x\0"] {
        let called = host::call_actor(&raw, method, &[], &[]).map(|_| ());
        report(&format!("method {method:?}"), called.map_err(Error::from));
    }
    let mut watches = Vec::new();
    for _ in 0..4100 {
        watches.push(host::watch_actor(&raw)?);
    }
    let all: Vec<&host::ObjectRef> = watches.iter().collect();
    let done = host::wait(&all, all.len() as u32, Some(200))?;
    println!("watches answered while the actor lives: {}", done.len());
    if let Some(&first) = done.first() {
        let refused = host::get(all[first as usize], Some(0)).map(|_| ());
        report(
            &format!("watch {}", first + 1),
            refused.map_err(Error::from),
        );
    }
    vault.kill()?;
    let fired = host::get(all[0], Some(5_000)).map_err(Error::from);
    match fired {
        Err(Error::ActorDied(m)) if m.ends_with("was killed") => {
            println!("a watch after the kill: actor-died, killed")
        }
        other => report("a watch after the kill", other),
    }
    Ok(())
}
