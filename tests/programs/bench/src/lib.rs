//! Microbenchmark workloads, timed inside the sandbox: the same workloads,
//! with the same names and shapes, as Ray's `ray microbenchmark`
//! (python/ray/_private/ray_perf.py), plus the scale envelope.
//!
//! The driver runs workload `<name>` `<reps>` times and prints
//! `<name> <ops> <seconds>`, where ops counts what Ray's `timeit`
//! multiplier counts (tasks, calls, puts, batches, or gigabytes as Ray
//! counts them: 0.8 per 800 MiB object). Options follow as `key=value`:
//! `clients=N` (Ray's `cpu_count() // 2`) and `mib=N` (object size of the
//! gigabyte workloads, Ray's by default). benches/microbenchmark.rs turns
//! the lines into rates.

use std::time::{Duration, Instant};

use fabric::prelude::*;
use serde_bytes::ByteBuf;

/// Ray's suite, in the order `ray microbenchmark` prints it.
const RAY_WORKLOADS: &[&str] = &[
    "single_client_get_calls",
    "single_client_put_calls",
    "multi_client_put_calls",
    "single_client_put_gigabytes",
    "single_client_tasks_and_get_batch",
    "multi_client_put_gigabytes",
    "single_client_get_object_containing_10k_refs",
    "single_client_wait_1k_refs",
    "single_client_tasks_sync",
    "single_client_tasks_async",
    "multi_client_tasks_async",
    "1_1_actor_calls_sync",
    "1_1_actor_calls_async",
    "1_1_actor_calls_concurrent",
    "1_n_actor_calls_async",
    "n_n_actor_calls_async",
    "n_n_actor_calls_with_arg_async",
    "single_client_generator_items",
    "placement_group_create_removal",
];

/// The scale envelope.
const SCALE_WORKLOADS: &[&str] = &[
    "queued_tasks",
    "idle_actors",
    "refs_as_args",
    "put_get_object",
];

#[fabric::remote]
fn small_value() -> u8 {
    0
}

/// `n` small items, streamed (Ray: a generator task).
#[fabric::remote]
fn small_items(n: u64) -> fabric::Generator<u8> {
    fabric::Generator::new((0..n).map(|_| 0u8))
}

#[fabric::remote]
fn small_value_batch(n: u64) -> u8 {
    let refs = (0..n)
        .map(|_| small_value::remote())
        .collect::<fabric::Result<Vec<_>>>()
        .expect("submit");
    fabric::get_all(&refs).expect("get");
    0
}

#[fabric::remote]
fn do_put_small() -> u8 {
    for _ in 0..100 {
        fabric::put(&0u64).expect("put");
    }
    0
}

/// Ray's `do_put`: ten fresh zeroed arrays of `mib` MiB.
#[fabric::remote]
fn do_put(mib: u64) -> u8 {
    for _ in 0..10 {
        let data = vec![0u8; (mib as usize) << 20];
        fabric::put_bytes(&data).expect("put");
    }
    0
}

#[fabric::remote]
fn create_object_containing_ref() -> Vec<ObjectRef<u64>> {
    (0..10_000)
        .map(|_| fabric::put(&1u64))
        .collect::<fabric::Result<Vec<_>>>()
        .expect("put")
}

/// Ray's `work`: `n` calls dealt round-robin over `servers`.
#[fabric::remote]
fn work(servers: Vec<ActorHandle<Server>>, n: u64) -> u8 {
    let refs = (0..n as usize)
        .map(|i| servers[i % servers.len()].small_value().remote())
        .collect::<fabric::Result<Vec<_>>>()
        .expect("call");
    fabric::get_all(&refs).expect("get");
    0
}

/// Holds every CPU of the node for `secs`, so what is submitted meanwhile queues.
#[fabric::remote]
fn hold(secs: f64) -> u8 {
    std::thread::sleep(Duration::from_secs_f64(secs));
    0
}

#[fabric::remote]
fn sum_refs(refs: Vec<ObjectRef<u64>>) -> u64 {
    fabric::get_all(&refs).expect("get").iter().sum()
}

/// Ray's `Actor`.
#[fabric::actor]
struct Server {
    calls: u64,
}

#[fabric::actor]
impl Server {
    fn new() -> Self {
        Server { calls: 0 }
    }

    fn small_value(&mut self) -> u8 {
        self.calls += 1;
        0
    }

    fn small_value_arg(&mut self, _x: u64) -> u8 {
        self.calls += 1;
        0
    }

    fn small_value_batch(&mut self, n: u64) -> u8 {
        small_value_batch(n)
    }
}

/// Ray's `Client`: calls its servers.
#[fabric::actor]
struct Client {
    servers: Vec<ActorHandle<Server>>,
}

#[fabric::actor]
impl Client {
    fn new(servers: Vec<ActorHandle<Server>>) -> Self {
        Client { servers }
    }

    fn small_value_batch(&mut self, n: u64) -> u8 {
        let mut refs = Vec::new();
        for s in &self.servers {
            for _ in 0..n {
                refs.push(s.small_value().remote().expect("call"));
            }
        }
        fabric::get_all(&refs).expect("get");
        0
    }

    fn small_value_batch_arg(&mut self, n: u64) -> u8 {
        let x = fabric::put(&0u64).expect("put");
        let mut refs = Vec::new();
        for s in &self.servers {
            for _ in 0..n {
                refs.push(s.small_value_arg(&x).remote().expect("call"));
            }
        }
        fabric::get_all(&refs).expect("get");
        0
    }
}

struct Options {
    clients: usize,
    mib: Option<u64>,
    seconds: f64,
}

fn options(args: impl Iterator<Item = String>) -> fabric::Result<Options> {
    let mut o = Options {
        clients: 1,
        mib: None,
        seconds: 10.0,
    };
    for arg in args {
        let bad = || fabric::Error::InvalidArgument(format!("bad option `{arg}`"));
        let (k, v) = arg.split_once('=').ok_or_else(bad)?;
        match k {
            "clients" => o.clients = v.parse::<usize>().map_err(|_| bad())?.max(1),
            "mib" => o.mib = Some(v.parse().map_err(|_| bad())?),
            "seconds" => o.seconds = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    Ok(o)
}

/// Ray's `1_1_actor_calls_concurrent` actor (max_concurrency=16): here a
/// concurrent actor whose calls interleave on one state.
#[fabric::actor]
struct ConcurrentServer {
    calls: std::cell::Cell<u64>,
}

#[fabric::actor]
impl ConcurrentServer {
    fn new() -> Self {
        ConcurrentServer {
            calls: Default::default(),
        }
    }

    async fn small_value(&self) -> u8 {
        self.calls.set(self.calls.get() + 1);
        0
    }
}

fn servers(n: usize) -> fabric::Result<Vec<ActorHandle<Server>>> {
    let servers = (0..n)
        .map(|_| Server::remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    // Wait until every one is up, so creation is not timed.
    let pings = servers
        .iter()
        .map(|s| s.small_value().remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    fabric::get_all(&pings)?;
    Ok(servers)
}

/// Runs `f` `reps` times and reports `reps * multiplier` ops.
fn timeit(
    name: &str,
    reps: usize,
    multiplier: f64,
    mut f: impl FnMut() -> fabric::Result<()>,
) -> fabric::Result<()> {
    let start = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    println!(
        "{name} {} {:.6}",
        reps as f64 * multiplier,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Ray's shape: `n` groups of one bundle of a thousandth of `custom`,
/// each waited for, then all removed.
fn groups_batch(n: usize) -> fabric::Result<()> {
    use fabric::util::{PlacementGroup, PlacementStrategy, remove_placement_group};
    let bundle = fabric::Resources::new().custom("custom", 0.001);
    let groups = (0..n)
        .map(|_| PlacementGroup::builder(vec![bundle.clone()], PlacementStrategy::Pack).create())
        .collect::<fabric::Result<Vec<_>>>()?;
    for g in &groups {
        if !g.wait(Duration::from_secs(30))? {
            return Err(fabric::Error::Timeout);
        }
    }
    for g in &groups {
        remove_placement_group(g)?;
    }
    Ok(())
}

fn tasks_batch(n: usize) -> fabric::Result<()> {
    let refs = (0..n)
        .map(|_| small_value::remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    fabric::get_all(&refs)?;
    Ok(())
}

fn calls_batch(a: &ActorHandle<Server>, n: usize) -> fabric::Result<()> {
    let refs = (0..n)
        .map(|_| a.small_value().remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    fabric::get_all(&refs)?;
    Ok(())
}

fn ray_workload(name: &str, reps: usize, o: &Options) -> fabric::Result<()> {
    let clients = o.clients;
    match name {
        "single_client_get_calls" => {
            let value = fabric::put(&0u64)?;
            timeit(name, reps, 1.0, || fabric::get(&value).map(drop))
        }
        "single_client_put_calls" => timeit(name, reps, 1.0, || fabric::put(&0u64).map(drop)),
        "multi_client_put_calls" => timeit(name, reps, 1000.0, || {
            let refs = (0..10)
                .map(|_| do_put_small::remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            fabric::get_all(&refs).map(drop)
        }),
        "single_client_put_gigabytes" => {
            let mib = o.mib.unwrap_or(800);
            let arr = vec![0u8; (mib as usize) << 20];
            timeit(name, reps, mib as f64 / 1000.0, || {
                fabric::put_bytes(&arr).map(drop)
            })
        }
        "single_client_tasks_and_get_batch" => timeit(name, reps, 1.0, || tasks_batch(1000)),
        "multi_client_put_gigabytes" => {
            let mib = o.mib.unwrap_or(80);
            timeit(name, reps, 10.0 * 10.0 * mib as f64 / 1000.0, || {
                let refs = (0..10)
                    .map(|_| do_put::remote(mib))
                    .collect::<fabric::Result<Vec<_>>>()?;
                fabric::get_all(&refs).map(drop)
            })
        }
        "single_client_get_object_containing_10k_refs" => {
            let obj = create_object_containing_ref::remote()?;
            fabric::get(&obj)?;
            timeit(name, reps, 1.0, || {
                let refs = fabric::get(&obj)?;
                assert_eq!(refs.len(), 10_000);
                Ok(())
            })
        }
        "single_client_wait_1k_refs" => timeit(name, reps, 1.0, || {
            let mut not_ready = (0..1000)
                .map(|_| small_value::remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            for _ in 0..1000 {
                (_, not_ready) = fabric::wait(&not_ready, 1, None)?;
            }
            assert!(not_ready.is_empty());
            Ok(())
        }),
        "single_client_tasks_sync" => timeit(name, reps, 1.0, || {
            fabric::get(&small_value::remote()?).map(drop)
        }),
        "single_client_tasks_async" => timeit(name, reps, 1000.0, || tasks_batch(1000)),
        "multi_client_tasks_async" => {
            let (n, m) = (10_000u64, 4);
            let actors = servers(m)?;
            timeit(name, reps, (n as usize * m) as f64, || {
                let refs = actors
                    .iter()
                    .map(|a| a.small_value_batch(n).remote())
                    .collect::<fabric::Result<Vec<_>>>()?;
                fabric::get_all(&refs).map(drop)
            })
        }
        "1_1_actor_calls_sync" => {
            let a = &servers(1)?[0];
            timeit(name, reps, 1.0, || {
                fabric::get(&a.small_value().remote()?).map(drop)
            })
        }
        "1_1_actor_calls_async" => {
            let a = &servers(1)?[0];
            timeit(name, reps, 1000.0, || calls_batch(a, 1000))
        }
        // Ray's actor runs 16 calls at once on threads; ours interleaves up
        // to 16 on one instance (a concurrent actor).
        "1_1_actor_calls_concurrent" => {
            let a = ConcurrentServer::options(ActorOptions::new().max_concurrency(16)).remote()?;
            fabric::get(&a.small_value().remote()?)?;
            timeit(name, reps, 1000.0, || {
                let refs = (0..1000)
                    .map(|_| a.small_value().remote())
                    .collect::<fabric::Result<Vec<_>>>()?;
                fabric::get_all(&refs).map(drop)
            })
        }
        "1_n_actor_calls_async" => {
            let n = 5000;
            let actors = servers(clients)?;
            let client = Client::remote(actors)?;
            timeit(name, reps, (n * clients) as f64, || {
                fabric::get(&client.small_value_batch(n as u64).remote()?).map(drop)
            })
        }
        "n_n_actor_calls_async" => {
            let (n, m) = (5000u64, 4);
            let actors = servers(clients)?;
            timeit(name, reps, (n as usize * m) as f64, || {
                let refs = (0..m)
                    .map(|_| work::remote(actors.clone(), n))
                    .collect::<fabric::Result<Vec<_>>>()?;
                fabric::get_all(&refs).map(drop)
            })
        }
        "n_n_actor_calls_with_arg_async" => {
            let n = 1000u64;
            let clients = servers(clients)?
                .into_iter()
                .map(|a| Client::remote(vec![a]))
                .collect::<fabric::Result<Vec<_>>>()?;
            timeit(name, reps, (n as usize * clients.len()) as f64, || {
                let refs = clients
                    .iter()
                    .map(|c| c.small_value_batch_arg(n).remote())
                    .collect::<fabric::Result<Vec<_>>>()?;
                fabric::get_all(&refs).map(drop)
            })
        }
        // One generator task of 1000 items, each taken and read as it
        // comes (Ray: `for ref in gen.remote(1000): ray.get(ref)`).
        "placement_group_create_removal" => timeit(name, reps, 100.0, || groups_batch(100)),
        "single_client_generator_items" => timeit(name, reps, 1000.0, || {
            for item in small_items::remote(1000u64)? {
                fabric::get(&item?)?;
            }
            Ok(())
        }),
        _ => unreachable!("checked by the caller"),
    }
}

fn scale_workload(name: &str, n: usize, o: &Options) -> fabric::Result<()> {
    match name {
        // `n` tasks submitted while a task holds every CPU, so all of them
        // queue at once; then all run. Prints the submit time too.
        "queued_tasks" => {
            let gate =
                hold::options(TaskOptions::new().num_cpus(o.clients as f64)).remote(o.seconds)?;
            let start = Instant::now();
            let refs = (0..n)
                .map(|_| small_value::remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            let submitted = start.elapsed().as_secs_f64();
            let (ready, _) = fabric::wait(std::slice::from_ref(&gate), 1, Some(Duration::ZERO))?;
            println!(
                "queued {n} in {submitted:.3} s; gate still closed: {}",
                ready.is_empty()
            );
            println!("tasks queued");
            fabric::get(&gate)?;
            let start = Instant::now();
            fabric::get_all(&refs)?;
            println!("{name} {n} {:.6}", start.elapsed().as_secs_f64());
            Ok(())
        }
        // Creates n actors and checks each answers; then stays up for a few
        // seconds so the harness can read the node's memory use.
        "idle_actors" => {
            let start = Instant::now();
            let actors = (0..n)
                .map(|_| Server::remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            let pings = actors
                .iter()
                .map(|a| a.small_value().remote())
                .collect::<fabric::Result<Vec<_>>>()?;
            fabric::get_all(&pings)?;
            println!("{name} {n} {:.6}", start.elapsed().as_secs_f64());
            println!("actors ready");
            std::thread::sleep(Duration::from_secs_f64(o.seconds));
            Ok(())
        }
        // One task gets `n` object refs as its argument and reads them all.
        "refs_as_args" => {
            let refs = (0..n as u64)
                .map(|i| fabric::put(&i))
                .collect::<fabric::Result<Vec<_>>>()?;
            let start = Instant::now();
            let sum = fabric::get(&sum_refs::remote(refs)?)?;
            let secs = start.elapsed().as_secs_f64();
            let n = n as u64;
            assert_eq!(sum, n * n.saturating_sub(1) / 2);
            println!("{name} {n} {secs:.6}");
            Ok(())
        }
        // Put of one object of `mib` MiB, then a get of it; prints both.
        "put_get_object" => {
            let bytes = (o.mib.unwrap_or(1024) as usize) << 20;
            let data = vec![7u8; bytes];
            let start = Instant::now();
            let r = fabric::put_bytes(&data)?;
            let put = start.elapsed().as_secs_f64();
            // The caller-allocated read (`read-bytes`): into fresh memory
            // (`data` still holds the block the guest freed last, so this
            // buffer is new linear memory, first touched by the copy)...
            let start = Instant::now();
            let mut buf = fabric::get_bytes(&r)?;
            let fresh = start.elapsed().as_secs_f64();
            assert!(buf.len() == bytes && buf.iter().step_by(4096).all(|b| *b == 7));
            buf.iter_mut().step_by(4096).for_each(|b| *b = 0);
            // ...and again into that buffer, warm (a guest reusing it).
            let start = Instant::now();
            fabric::get_bytes_into(&r, 0, &mut buf)?;
            let warm = start.elapsed().as_secs_f64();
            assert!(buf.iter().step_by(4096).all(|b| *b == 7));
            drop((data, buf));
            let start = Instant::now();
            let back: ByteBuf = fabric::get(&r)?;
            let get = start.elapsed().as_secs_f64();
            assert_eq!(back.len(), bytes);
            assert!(back.iter().step_by(4096).all(|b| *b == 7));
            println!("put_object {bytes} {put:.6}");
            println!("get_object {bytes} {get:.6}");
            println!("get_bytes_fresh {bytes} {fresh:.6}");
            println!("get_bytes_warm {bytes} {warm:.6}");
            Ok(())
        }
        _ => unreachable!("checked by the caller"),
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let opts = options(args)?;
    if name == "list" {
        println!("{}", RAY_WORKLOADS.join(" "));
        println!("{}", SCALE_WORKLOADS.join(" "));
    } else if RAY_WORKLOADS.contains(&name.as_str()) {
        ray_workload(&name, reps, &opts)?;
    } else if SCALE_WORKLOADS.contains(&name.as_str()) {
        scale_workload(&name, reps, &opts)?;
    } else {
        return Err(fabric::Error::InvalidArgument(format!(
            "unknown workload `{name}`"
        )));
    }
    Ok(())
}
