//! The wasmfabric microbenchmark: Ray's `ray microbenchmark` suite under the
//! same names, then the scale envelope (a million queued tasks, 100,000
//! idle actors, 10,000 refs as arguments, a 1 GiB object, instantiation
//! latency), all on embedded nodes in this process.
//!
//! Run it (release build; guests always build in release):
//! ```text
//! cargo bench --bench microbenchmark                    # everything
//! cargo bench --bench microbenchmark -- --ray-only      # Ray's suite only
//! cargo bench --bench microbenchmark -- --scale-only    # the scale envelope only
//! cargo bench --bench microbenchmark -- --only single_client_tasks_sync,1_1_actor_calls_sync
//! cargo bench --bench microbenchmark -- --ray-only --metrics # metrics served and scraped
//! cargo bench --bench microbenchmark -- --ray-only --no-task-events # nodes keep no task events
//! cargo bench --bench microbenchmark -- --json out.json # also write the figures as JSON
//! ```
//! Ray's task and actor-call shapes also run as Python guests (see
//! `python.rs`; componentize-py must be installed).
//!
//! Each workload runs inside the sandbox (tests/programs/bench) and is timed
//! there, in several runs of about half a second each; every figure is the
//! mean and standard deviation of those runs. `benches/ray_side_by_side.py`
//! runs Ray's suite and this one back to back.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fabric_host::limits::Limits;
use fabric_host::logs::{LogSink, LogSource, Stream};
use fabric_host::runtime::engine::EngineSettings;
use fabric_host::{AppComponent, Node, NodeConfig};
use tokio::sync::Notify;

use support::programs;

// The allocator of the `fabric` binary, set up as it does, so figures are
// the node's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod python;

#[path = "../host/cli/allocator.rs"]
mod allocator;

/// Ray 2.60's `placement group create/removal` here (441 ± 34 groups/s,
/// `TESTS_TO_RUN=placement ray microbenchmark`, 2026-12-05).
const RAY_PG_RATE: f64 = 441.0;

/// Ray's suite: name, Ray 2.60's figure measured on this kind of machine
/// (2 cores; `benches/ray_side_by_side.py` measures it afresh), unit.
const RAY_SUITE: &[(&str, f64, &str)] = &[
    ("single_client_tasks_sync", 542.0, "tasks/s"),
    ("single_client_tasks_async", 1_864.0, "tasks/s"),
    ("multi_client_tasks_async", 1_871.0, "tasks/s"),
    ("1_1_actor_calls_sync", 1_111.0, "calls/s"),
    ("1_1_actor_calls_async", 5_178.0, "calls/s"),
    ("1_1_actor_calls_concurrent", 5_796.0, "calls/s"),
    ("1_n_actor_calls_async", 4_771.0, "calls/s"),
    ("n_n_actor_calls_async", 5_864.0, "calls/s"),
    ("n_n_actor_calls_with_arg_async", 1_759.0, "calls/s"),
    ("single_client_put_calls", 2_160.0, "puts/s"),
    ("single_client_get_calls", 13_155.0, "gets/s"),
    ("multi_client_put_calls", 1_437.0, "puts/s"),
    ("single_client_put_gigabytes", 12.35, "GB/s"),
    ("multi_client_put_gigabytes", 9.64, "GB/s"),
    ("single_client_tasks_and_get_batch", 1.92, "batches/s"),
    ("single_client_wait_1k_refs", 1.62, "iters/s"),
    (
        "single_client_get_object_containing_10k_refs",
        17.96,
        "gets/s",
    ),
    // Not in `ray microbenchmark`: benches/ray_side_by_side.py times Ray's
    // streaming generator itself (3,686 ± 299 items/s here, 2026-12-04).
    ("single_client_generator_items", 3_686.0, "items/s"),
    // 100 groups of one bundle created, waited for, removed.
    ("placement_group_create_removal", RAY_PG_RATE, "groups/s"),
];

struct Args {
    runs: usize,
    /// Seconds one timed run should take.
    run_seconds: f64,
    only: Option<Vec<String>>,
    ray_only: bool,
    scale_only: bool,
    json: Option<String>,
    idle_actors: usize,
    queued_tasks: usize,
    /// Serve the node's metrics and scrape them every second meanwhile
    /// (the overhead figure: one run with, one without).
    metrics: bool,
    /// Keep no task events (the overhead figure of `fabric timeline`'s
    /// record: one run with, one without).
    no_task_events: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        runs: 5,
        run_seconds: 0.5,
        only: None,
        ray_only: false,
        scale_only: false,
        json: None,
        idle_actors: 100_000,
        queued_tasks: 1_000_000,
        metrics: false,
        no_task_events: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().unwrap_or_else(|| panic!("{arg} needs {what}"));
        match arg.as_str() {
            "--bench" => {} // cargo bench passes it
            "--runs" => a.runs = value("a count").parse().expect("--runs N"),
            "--run-seconds" => a.run_seconds = value("seconds").parse().expect("--run-seconds S"),
            "--only" => a.only = Some(value("names").split(',').map(String::from).collect()),
            "--ray-only" => a.ray_only = true,
            "--metrics" => a.metrics = true,
            "--no-task-events" => a.no_task_events = true,
            "--scale-only" => a.scale_only = true,
            "--json" => a.json = Some(value("a path")),
            "--idle-actors" => a.idle_actors = value("a count").parse().expect("--idle-actors N"),
            "--queued-tasks" => {
                a.queued_tasks = value("a count").parse().expect("--queued-tasks N")
            }
            other => {
                panic!("unknown argument `{other}` (see the top of benches/microbenchmark.rs)")
            }
        }
    }
    a
}

/// Collects stdout lines and wakes a waiter on each.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    notify: Notify,
}

impl Lines {
    fn find(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    /// Waits up to `limit` for a line starting with `prefix`.
    async fn wait_for(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let notified = self.notify.notified();
            if let Some(l) = self.find(prefix) {
                return Some(l);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        None
    }
}

impl LogSink for Lines {
    fn line(&self, _: &LogSource, stream: Stream, line: &[u8]) {
        if stream == Stream::Stdout {
            self.lines
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned());
            self.notify.notify_waiters();
        }
    }
}

/// A `<name> <ops> <seconds>` line, parsed.
fn ops_secs(line: &str) -> (f64, f64) {
    let p: Vec<&str> = line.split_whitespace().collect();
    (p[1].parse().unwrap(), p[2].parse().unwrap())
}

/// Runs the guest's workload `args` and returns its output lines.
async fn run(node: &Node, app: &Arc<AppComponent>, args: &[String]) -> Arc<Lines> {
    let sink = Arc::new(Lines::default());
    let outcome = node.run_job(app.clone(), args.to_vec(), sink.clone()).await;
    outcome.result.unwrap_or_else(|e| panic!("{args:?}: {e}"));
    sink
}

/// Runs workload `name` `reps` times; (ops, seconds) as the guest timed them.
async fn timed(
    node: &Node,
    app: &Arc<AppComponent>,
    name: &str,
    reps: usize,
    extra: &[String],
) -> (f64, f64) {
    let mut args = vec![name.to_string(), reps.to_string()];
    args.extend_from_slice(extra);
    let lines = run(node, app, &args).await;
    let line = lines
        .find(&format!("{name} "))
        .unwrap_or_else(|| panic!("{name}: no result"));
    ops_secs(&line)
}

/// A node started with `config` (no GPUs) and the benchmark loaded on it.
async fn loaded_node(config: NodeConfig, wasm: &[u8]) -> (Node, Arc<AppComponent>) {
    let node = Node::start(NodeConfig {
        num_gpus: Some(0),
        ..config
    })
    .expect("node");
    let app = node.load(wasm).await.expect("load");
    (node, app)
}

/// A small instance pool, for the scale envelope's extra nodes: each engine
/// reserves address space for its pool (4 GiB a slot), and this process
/// already has the suite's node and may get the dense one.
fn small_pool() -> EngineSettings {
    EngineSettings {
        max_instances: 64,
        ..EngineSettings::default()
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
        / xs.len().max(2).saturating_sub(1) as f64;
    (mean, var.sqrt())
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
}

fn rss_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// The process's proportional set size: its physical memory, each page
/// once. `VmRSS` counts a page once per mapping of it, and every instance
/// of a component maps the component's copy-on-write memory image (for a
/// Python component, 11 MB of CPython's heap): pages an idle instance only
/// read are shared, yet `VmRSS` counts them in every instance.
fn pss_bytes() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Peak RSS since the last [`reset_peak_rss`].
fn peak_rss_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

struct Figure {
    mean: f64,
    sd: f64,
    unit: String,
}

/// Every figure of a run, by name (what `--json` writes).
#[derive(Default)]
struct Figures(BTreeMap<String, Figure>);

impl Figures {
    fn put(&mut self, name: &str, mean: f64, sd: f64, unit: &str) {
        let unit = unit.to_string();
        self.0.insert(name.to_string(), Figure { mean, sd, unit });
    }

    fn write_json(&self, path: &str) {
        let json: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    serde_json::json!({"mean": f.mean, "sd": f.sd, "unit": f.unit}),
                )
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).expect("write json");
    }
}

fn main() {
    allocator::configure();
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let wasm = std::fs::read(programs::BENCH).unwrap();
        let cpus = fabric_host::resources::detect::cpus();
        println!(
            "wasmfabric microbenchmark: {cpus} CPUs, {} runs of ~{}s per figure (mean ± sd)\n",
            args.runs, args.run_seconds
        );
        let mut figures = Figures::default();

        // Ray's suite, on a node shaped like `ray.init()`'s (with the
        // `custom` resource its placement-group row gives the node).
        let (node, app) = loaded_node(
            NodeConfig {
                object_store_memory: Some(4 << 30),
                custom: fabric_host::resources::ResourceSet::parse_custom("custom=100").unwrap(),
                // Every engine in this process reserves address space for its
                // instance pool (4 GiB a slot); leave room for the dense node.
                engine: EngineSettings {
                    max_instances: 1_000,
                    ..EngineSettings::default()
                },
                task_events: fabric_host::task_events::TaskEventBounds {
                    enabled: !args.no_task_events,
                    ..Default::default()
                },
                ..NodeConfig::default()
            },
            &wasm,
        )
        .await;
        let _metrics = match args.metrics {
            true => Some(scrape_metrics(&node).await),
            false => None,
        };
        if !args.scale_only {
            ray_suite(&node, &app, &args, cpus, &mut figures).await;
            python::python_suite(&node, &args, &mut figures).await;
        }
        if !args.ray_only {
            println!("\nscale envelope");
            scale(&node, &app, &wasm, &args, cpus, &mut figures).await;
            python::python_scale(&args, &mut figures).await;
        }
        if let Some(path) = &args.json {
            figures.write_json(path);
        }
    });
}

/// Serves `node`'s metrics on loopback (plain HTTP) and scrapes them once
/// a second, as a Prometheus would (more often than its default 15 s);
/// the server stops when the returned value drops.
async fn scrape_metrics(node: &Node) -> fabric_host::metrics::MetricsServer {
    use fabric_host::metrics::{Access, MetricsConfig, Source};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = MetricsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        access: Access::Open,
    };
    let source = Source {
        node: node.clone(),
        meters: None,
        head: None,
        serve: Vec::new(),
        ingress: None,
    };
    let server = fabric_host::metrics::serve(config, source).await.unwrap();
    let address = server.address();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Ok(mut s) = tokio::net::TcpStream::connect(address).await else {
                return; // the server stopped
            };
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await;
            let mut page = Vec::new();
            let _ = s.read_to_end(&mut page).await;
            assert!(page.starts_with(b"HTTP/1.0 200"), "a failed scrape");
        }
    });
    println!("metrics on http://{address}/metrics, scraped every second\n");
    server
}

/// Ray's suite under Ray's names, each against Ray's figure.
async fn ray_suite(
    node: &Node,
    app: &Arc<AppComponent>,
    args: &Args,
    cpus: usize,
    figures: &mut Figures,
) {
    let extra = vec![format!("clients={}", (cpus / 2).max(1))];
    println!(
        "{:<46} {:>22} {:>10} {:>9}",
        "metric", "wasmfabric", "Ray 2.60", "ratio"
    );
    for (name, ray, unit) in RAY_SUITE {
        if args
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|x| x == name))
        {
            continue;
        }
        // Warm up with one rep, then size runs to the target time.
        let (_, secs) = timed(node, app, name, 1, &extra).await;
        let (_, secs2) = timed(node, app, name, 1, &extra).await;
        let per_rep = secs.min(secs2).max(1e-7);
        let reps = ((args.run_seconds / per_rep) as usize).clamp(1, 10_000_000);
        let mut rates = Vec::new();
        for _ in 0..args.runs {
            let (ops, secs) = timed(node, app, name, reps, &extra).await;
            rates.push(ops / secs);
        }
        let (m, sd) = mean_sd(&rates);
        println!(
            "{:<46} {:>22} {:>10} {:>8.1}x  {unit}",
            name,
            format!("{} ± {}", fmt_rate(m), fmt_rate(sd)),
            fmt_rate(*ray),
            m / ray
        );
        figures.put(name, m, sd, unit);
    }
}

async fn scale(
    node: &Node,
    app: &Arc<AppComponent>,
    wasm: &[u8],
    args: &Args,
    cpus: usize,
    figures: &mut Figures,
) {
    let want = |section: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == section))
    };
    if want("instantiate") {
        instantiate_latency(node, app, figures).await;
    }
    if want("refs_as_args") {
        refs_as_args(node, app, args, figures).await;
    }
    if want("put_get_object") {
        put_get_object(wasm, args, figures).await;
    }
    if want("queued_tasks") {
        queued_tasks(wasm, args, cpus, figures).await;
    }
    if want("idle_actors") {
        idle_actors(wasm, args, figures).await;
    }
}

/// Instantiation latency of the benchmark component.
async fn instantiate_latency(node: &Node, app: &Arc<AppComponent>, figures: &mut Figures) {
    let mut lat: Vec<f64> = node
        .measure_instantiate(app.clone(), 5_000)
        .await
        .expect("instantiate")
        .iter()
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
    println!(
        "{:<46} p50 {p50:.1} us, p99 {p99:.1} us",
        "instantiate latency"
    );
    figures.put("instantiate_p50_us", p50, 0.0, "us");
    figures.put("instantiate_p99_us", p99, 0.0, "us");
}

/// 10,000 object refs as the argument of one task.
async fn refs_as_args(node: &Node, app: &Arc<AppComponent>, args: &Args, figures: &mut Figures) {
    let mut rates = Vec::new();
    for _ in 0..args.runs {
        let lines = run(node, app, &["refs_as_args".into(), "10000".into()]).await;
        let (n, secs) = ops_secs(&lines.find("refs_as_args ").unwrap());
        rates.push(secs * 1e3 / (n / 10_000.0));
    }
    let (m, sd) = mean_sd(&rates);
    println!(
        "{:<46} {:>22}",
        "task with 10,000 refs as args, submit to result",
        format!("{m:.2} ± {sd:.2} ms")
    );
    figures.put("refs_as_args_10k_ms", m, sd, "ms");
}

/// A 1 GiB object, put and get, in a guest with room for two copies.
async fn put_get_object(wasm: &[u8], args: &Args, figures: &mut Figures) {
    let (big, big_app) = loaded_node(
        NodeConfig {
            // A quarter of the store caches freed buffers: room for one 1 GiB.
            object_store_memory: Some(5 << 30),
            limits: Limits {
                memory: 4 << 30,
                object_bytes: 2 << 30,
                ..Limits::default()
            },
            engine: small_pool(),
            ..NodeConfig::default()
        },
        wasm,
    )
    .await;
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    let (mut fresh, mut warm) = (Vec::new(), Vec::new());
    // The first run meets a fresh node (no buffer to reuse); later ones,
    // a node that has held an object of this size before.
    for _ in 0..=args.runs {
        let lines = run(
            &big,
            &big_app,
            &["put_get_object".into(), "1".into(), "mib=1024".into()],
        )
        .await;
        let (b, s) = ops_secs(&lines.find("put_object ").unwrap());
        puts.push(b / s / 1e9);
        let (b, s) = ops_secs(&lines.find("get_object ").unwrap());
        gets.push(b / s / 1e9);
        let (b, s) = ops_secs(&lines.find("get_bytes_fresh ").unwrap());
        fresh.push(b / s / 1e9);
        let (b, s) = ops_secs(&lines.find("get_bytes_warm ").unwrap());
        warm.push(b / s / 1e9);
    }
    drop(big);
    let (pm, ps) = mean_sd(&puts[1..]);
    let (gm, gs) = mean_sd(&gets[1..]);
    let (fm, fs) = mean_sd(&fresh[1..]);
    let (wm, ws) = mean_sd(&warm[1..]);
    // What each get times: from the call to the value in guest memory. The
    // `get` decodes MessagePack into a second buffer; `get_bytes` reads the
    // bytes with `read-bytes` into a buffer it allocates (its first touch
    // is the copy: page faults), `get_bytes_into` into one already touched.
    for (what, (m, sd), first) in [
        ("1 GiB object put", (pm, ps), puts[0]),
        ("1 GiB object get (into the guest)", (gm, gs), gets[0]),
        (
            "1 GiB get_bytes into fresh guest memory",
            (fm, fs),
            fresh[0],
        ),
        (
            "1 GiB get_bytes_into a warm guest buffer",
            (wm, ws),
            warm[0],
        ),
    ] {
        println!(
            "{what:<46} {:>22}   first on a fresh node: {first:.2} GB/s",
            format!("{m:.2} ± {sd:.2} GB/s")
        );
    }
    figures.put("put_1gib_gbps", pm, ps, "GB/s");
    figures.put("get_1gib_gbps", gm, gs, "GB/s");
    figures.put("get_bytes_fresh_1gib_gbps", fm, fs, "GB/s");
    figures.put("get_bytes_warm_1gib_gbps", wm, ws, "GB/s");
}

/// A million tasks queued at once behind a task that holds every CPU.
async fn queued_tasks(wasm: &[u8], args: &Args, cpus: usize, figures: &mut Figures) {
    let n = args.queued_tasks;
    let (queue, queue_app) = loaded_node(
        NodeConfig {
            limits: Limits {
                pending_tasks: n as u64 + 16,
                ..Limits::default()
            },
            engine: small_pool(),
            ..NodeConfig::default()
        },
        wasm,
    )
    .await;
    let before = rss_bytes();
    reset_peak_rss();
    let gate_secs = 30;
    let lines = run(
        &queue,
        &queue_app,
        &[
            "queued_tasks".into(),
            n.to_string(),
            format!("clients={cpus}"),
            format!("seconds={gate_secs}"),
        ],
    )
    .await;
    let peak = peak_rss_bytes().saturating_sub(before);
    let queued = lines.find("queued ").unwrap();
    let (ops, secs) = ops_secs(&lines.find("queued_tasks ").unwrap());
    drop(queue);
    println!("{:<46} {queued}", format!("{n} tasks queued on one node"));
    println!(
        "{:<46} {:>22}   then ran at {:.0} tasks/s",
        "  peak RSS growth",
        format!(
            "{:.0} MiB ({:.0} B/task)",
            mib(peak),
            peak as f64 / n as f64
        ),
        ops / secs
    );
    figures.put("queued_tasks_peak_rss_mib", mib(peak), 0.0, "MiB");
}

/// 100,000 idle actors on one node whose instance pool is sized for them.
/// What a job that holds actors left resident, measured by
/// [`held_when_ready`].
struct Held {
    lines: Arc<Lines>,
    /// Whether the guest printed `actors ready` in time.
    ready: bool,
    /// How much the process's resident memory grew until then, in bytes.
    grown: u64,
    /// How much the process's physical memory (`pss_bytes`) grew.
    pss_grown: u64,
    /// Memory mappings of the process then.
    mappings: usize,
    outcome: fabric_host::JobOutcome,
}

/// Runs `args` as a job of `app` and measures the process's resident
/// memory before it and once the guest prints `actors ready` (it then
/// holds its actors a while before it ends).
async fn held_when_ready(
    node: &Node,
    app: &Arc<AppComponent>,
    args: Vec<String>,
    limit: Duration,
) -> Held {
    let (before, pss_before) = (rss_bytes(), pss_bytes());
    let lines = Arc::new(Lines::default());
    let mut job = {
        let (node, app, lines) = (node.clone(), app.clone(), lines.clone());
        tokio::spawn(async move { node.run_job(app, args, lines).await })
    };
    // A job that ends before its actors are ready (an error) ends the wait.
    let (ready, ended) = tokio::select! {
        ready = lines.wait_for("actors ready", limit) => (ready.is_some(), None),
        outcome = &mut job => (false, Some(outcome.unwrap())),
    };
    let grown = rss_bytes().saturating_sub(before);
    let pss_grown = pss_bytes().saturating_sub(pss_before);
    let mappings = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    let outcome = match ended {
        Some(outcome) => outcome,
        None => job.await.unwrap(),
    };
    Held {
        lines,
        ready,
        grown,
        pss_grown,
        mappings,
        outcome,
    }
}

async fn idle_actors(wasm: &[u8], args: &Args, figures: &mut Figures) {
    let n = args.idle_actors;
    let map_count: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // Each live instance maps its memory, table and stack slots apart from
    // the reserved rest: about 6 mappings each (measured: printed below).
    if map_count < n as u64 * 7 {
        println!(
            "  note: vm.max_map_count is {map_count}; {n} live instances need about {} mappings \
             (sysctl -w vm.max_map_count={})",
            n * 6,
            (n * 7).next_power_of_two()
        );
    }
    let (dense, dense_app) = loaded_node(
        NodeConfig {
            engine: EngineSettings {
                max_instances: n as u32 + 64,
                max_instance_memory: 64 << 20,
                ..EngineSettings::default()
            },
            // A job may hold 10,000 live actors on a node by default.
            limits: Limits {
                memory: 64 << 20,
                live_actors: n as u64 + 64,
                live_instances: n as u64 + 64,
                ..Limits::default()
            },
            ..NodeConfig::default()
        },
        wasm,
    )
    .await;
    let args = vec!["idle_actors".into(), n.to_string(), "seconds=5".into()];
    let Held {
        lines: sink,
        ready,
        grown,
        pss_grown,
        mappings,
        outcome,
    } = held_when_ready(&dense, &dense_app, args, Duration::from_secs(1800)).await;
    if let Err(e) = outcome.result {
        println!("{:<46} failed: {e}", format!("{n} idle actors"));
        return;
    }
    assert!(ready, "the idle actors never came up");
    let (created, secs) = ops_secs(&sink.find("idle_actors ").unwrap());
    let per_actor = grown as f64 / n as f64;
    println!(
        "{:<46} {:>22}   Ray: 5.5 actors/s, 77.6 MiB each",
        format!("{n} idle actors on one node"),
        format!(
            "{:.0} actors/s, {:.1} KiB each",
            created / secs,
            per_actor / 1024.0
        )
    );
    println!(
        "{:<46} {:>22}   ({mappings} memory mappings in the process)",
        "  RSS of all of them (PSS: each page once)",
        format!("{:.0} MiB ({:.0} MiB)", mib(grown), mib(pss_grown))
    );
    figures.put("idle_actors_per_s", created / secs, 0.0, "actors/s");
    figures.put("idle_actor_rss_kib", per_actor / 1024.0, 0.0, "KiB");
}
