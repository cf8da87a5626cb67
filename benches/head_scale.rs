//! The head under 100, 500 and 1,000 nodes, simulated: a real head (a
//! `fabric start --head` process) and, in this process, nodes that each
//! open their own TLS connection to it, register with the cluster secret
//! and heartbeat every 500 ms (a node's default), as `fabric start` does.
//! Then, with 1,000 nodes, the nodes register actors (each actor a node
//! creates costs one `RegisterActor` on the head). Three times, each
//! against a new head: nodes that ask for the whole view with every
//! heartbeat (as before views came as changes: the baseline), nodes that
//! hold the view and get what changed, and the same with every node's free
//! resources changing every beat (a busy cluster, the worst case).
//!
//! Run it (release build):
//! ```text
//! cargo bench --bench head_scale
//! ```
//! With `-- --baseline-head PATH` (a `fabric` binary built from an earlier
//! commit), the busy mode runs once more against a head of that build, in
//! the same run: an A/B of a change to the head.
//! What it prints for each level, over a 10 s window: heartbeats the head
//! answered per second (the nodes ask for 2 per node per second), the
//! head's CPU (user + system, from `/proc`) as a share of one core and per
//! heartbeat, its resident memory, the size of a heartbeat's reply and its
//! latency as a node saw it, and the simulator's own CPU (both share this
//! machine's cores, so a saturated machine shows as fewer heartbeats).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fabric_host::security::{ClusterSecurity, SECRET_HEADER};
use prost::Message as _;
use tokio::sync::watch;
use tonic::codegen::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::head_client::HeadClient;

const LEVELS: [usize; 3] = [100, 500, 1000];
const INTERVAL: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(10);
const ACTORS: usize = 5_000;
const ACTORS_IN_FLIGHT: usize = 64;

/// The head process.
struct Head {
    child: Child,
    dir: PathBuf,
    address: String,
    security: ClusterSecurity,
}

impl Drop for Head {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a head with a node's default timing (heartbeats every 500 ms, a
/// node silent for 3 s declared dead).
fn start_head(fabric: &std::path::Path) -> Head {
    let dir = std::env::temp_dir().join(format!("fabric-head-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let child = Command::new(fabric)
        .args([
            "--log-level",
            "error",
            "start",
            "--block",
            "--head",
            "--port",
            "0",
        ])
        .args(["--num-cpus", "2", "--num-gpus", "0", "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the head");
    let record = dir.join("nodes").join(child.id().to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&record) {
            break t;
        }
        assert!(Instant::now() < deadline, "the head did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let address = text
        .split_whitespace()
        .nth(1)
        .expect("an address")
        .to_string();
    let join = std::fs::read_to_string(dir.join("security/cluster.join")).expect("join file");
    Head {
        child,
        dir,
        address,
        security: ClusterSecurity::from_join_file(&join).expect("credentials"),
    }
}

/// CPU seconds (user + system) a process has used, and its resident bytes.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let seconds = (cpu(11) + cpu(12)) / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (seconds, rss_kib << 10)
}

/// Adds the cluster secret to every call, as a node does.
#[derive(Clone)]
struct Secret(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Secret {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert(SECRET_HEADER, self.0.clone());
        Ok(r)
    }
}

type Client = HeadClient<InterceptedService<Channel, Secret>>;

/// What the simulated nodes saw.
#[derive(Default)]
struct Seen {
    heartbeats: AtomicU64,
    reply_bytes: AtomicU64,
    reregistered: AtomicU64,
    /// Registrations and heartbeats that got an error (each tried again).
    failed_registrations: AtomicU64,
    failed_heartbeats: AtomicU64,
    /// Heartbeat latencies in microseconds.
    latencies: std::sync::Mutex<Vec<u32>>,
}

fn id_of(i: usize, kind: u8) -> Vec<u8> {
    let mut id = vec![kind; 16];
    id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    id
}

fn client(head: &Head) -> Client {
    let endpoint = Endpoint::from_shared(format!("https://{}", head.address))
        .expect("address")
        .tls_config(head.security.peer_tls())
        .expect("tls")
        .tcp_nodelay(true);
    let secret = Secret(head.security.secret.parse().expect("ascii"));
    HeadClient::new(InterceptedService::new(endpoint.connect_lazy(), secret))
        .max_decoding_message_size(256 << 20)
}

async fn register(client: &mut Client, i: usize) -> Result<(), tonic::Status> {
    let req = pb::RegisterRequest {
        node_id: id_of(i, 0xa0).into(),
        // Never dialled: no work goes to these nodes.
        address: format!("127.0.0.1:{}", 20_000 + i),
        total: Some(pb::Resources {
            cpu: 2_000,
            ..Default::default()
        }),
        labels: Default::default(),
        object_store_capacity: 1 << 30,
    };
    client.register(req).await.map(|_| ())
}

/// How the simulated nodes behave.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Ask for the whole view every heartbeat (as nodes did before views
    /// came as changes): the baseline.
    Whole,
    /// Hold the view and ask for changes, free resources steady (an idle
    /// cluster).
    Changes,
    /// The same, every node's free resources changing every beat (a busy
    /// cluster: the worst case for changes).
    ChangesBusy,
}

impl Mode {
    fn describe(self) -> &'static str {
        match self {
            Mode::Whole => "nodes asking for the whole view every heartbeat (as before 2026-12-07)",
            Mode::Changes => "nodes holding the view, asking for changes (as nodes do now), idle",
            Mode::ChangesBusy => {
                "nodes holding the view, asking for changes, each node's free CPUs changing every beat"
            }
        }
    }
}

/// One simulated node: registers, then heartbeats until `stop`, as `mode`
/// says.
async fn node(
    i: usize,
    mut client: Client,
    mode: Mode,
    seen: Arc<Seen>,
    mut stop: watch::Receiver<bool>,
) {
    let mut held = (0, 0);
    let mut beat = 0i64;
    while register(&mut client, i).await.is_err() {
        seen.failed_registrations.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Spread over the interval, as nodes started at different times are.
    tokio::time::sleep(INTERVAL * (i % 97) as u32 / 97).await;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        beat += 1;
        let busy = if mode == Mode::ChangesBusy {
            beat % 2
        } else {
            0
        };
        let req = pb::HeartbeatRequest {
            node_id: id_of(i, 0xa0).into(),
            free: Some(pb::Resources {
                cpu: 2_000 - 1_000 * busy,
                ..Default::default()
            }),
            view_epoch: held.0,
            view_version: held.1,
            ..Default::default()
        };
        let start = Instant::now();
        match client.heartbeat(req).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                seen.latencies
                    .lock()
                    .expect("latencies")
                    .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                seen.heartbeats.fetch_add(1, Ordering::Relaxed);
                seen.reply_bytes
                    .fetch_add(reply.encoded_len() as u64, Ordering::Relaxed);
                if reply.reregister {
                    seen.reregistered.fetch_add(1, Ordering::Relaxed);
                    let _ = register(&mut client, i).await;
                    held = (0, 0);
                } else if mode != Mode::Whole {
                    held = (reply.view_epoch, reply.view_version);
                }
            }
            Err(_) => {
                seen.failed_heartbeats.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1e3
}

/// Measures one window: what the head and the simulator used while the
/// nodes heartbeat.
async fn window(nodes: usize, head_pid: u32, seen: &Seen) {
    let me = std::process::id();
    seen.latencies.lock().expect("latencies").clear();
    let (h0, m0) = (usage(head_pid), usage(me));
    let (b0, r0) = (
        seen.heartbeats.load(Ordering::Relaxed),
        seen.reply_bytes.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let secs = start.elapsed().as_secs_f64();
    let (h1, m1) = (usage(head_pid), usage(me));
    let beats = (seen.heartbeats.load(Ordering::Relaxed) - b0) as f64;
    let bytes = (seen.reply_bytes.load(Ordering::Relaxed) - r0) as f64;
    let mut lat = std::mem::take(&mut *seen.latencies.lock().expect("latencies"));
    lat.sort_unstable();
    println!(
        "{nodes:>6} {:>10.0} {:>9.0} {:>9.1}% {:>10.0} {:>9.1} {:>10.1} {:>7.2}/{:<7.2} {:>9.1}% {:>5}",
        beats / secs,
        nodes as f64 / INTERVAL.as_secs_f64(),
        (h1.0 - h0.0) / secs * 100.0,
        (h1.0 - h0.0) / beats.max(1.0) * 1e6,
        h1.1 as f64 / (1u64 << 20) as f64,
        bytes / beats.max(1.0) / 1024.0,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        (m1.0 - m0.0) / secs * 100.0,
        seen.reregistered.load(Ordering::Relaxed),
    );
}

/// Registers `ACTORS` actors through the nodes' connections, with
/// `ACTORS_IN_FLIGHT` at once; prints their rate and the head's CPU each.
async fn actors(clients: &[Client], head_pid: u32) {
    let (h0, start) = (usage(head_pid), Instant::now());
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..ACTORS_IN_FLIGHT)
        .map(|w| {
            let mut client = clients[w % clients.len()].clone();
            let (next, refused) = (next.clone(), refused.clone());
            let nodes = clients.len();
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if k >= ACTORS {
                        return;
                    }
                    let node = id_of(k % nodes, 0xa0);
                    let info = pb::ActorInfo {
                        actor_id: id_of(k, 0xc0).into(),
                        class: "Simulated".into(),
                        node_id: node.clone().into(),
                        owner_node_id: node.into(),
                        job_id: id_of(0, 0xb0).into(),
                        tenant: "admin".into(),
                        ..Default::default()
                    };
                    let req = pb::RegisterActorRequest {
                        actor: Some(info),
                        ..Default::default()
                    };
                    match client
                        .register_actor(req)
                        .await
                        .map(|r| r.into_inner().outcome)
                    {
                        Ok(Some(pb::register_actor_reply::Outcome::Registered(_))) => {}
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("an actor worker");
    }
    let secs = start.elapsed().as_secs_f64();
    let h1 = usage(head_pid);
    println!(
        "\n{ACTORS} actors registered by the nodes ({ACTORS_IN_FLIGHT} at once, {} refused): {:.0} actors/s, head CPU {:.0} us per actor, head RSS {:.1} MiB after",
        refused.load(Ordering::Relaxed),
        ACTORS as f64 / secs,
        (h1.0 - h0.0) / ACTORS as f64 * 1e6,
        h1.1 as f64 / (1u64 << 20) as f64,
    );
}

/// Runs the levels against a new head (of the `fabric` binary at
/// `fabric`), the nodes behaving as `mode` says; registers actors at the
/// end.
fn run(mode: Mode, fabric: &std::path::Path) {
    let head = start_head(fabric);
    let head_pid = head.child.id();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (idle_cpu, idle_rss) = usage(head_pid);
        println!(
            "\n{} [{}]: head idle at {:.1} MiB ({:.2} CPU s to start)",
            mode.describe(),
            fabric.display(),
            idle_rss as f64 / (1u64 << 20) as f64,
            idle_cpu,
        );
        println!(
            "{:>6} {:>10} {:>9} {:>10} {:>10} {:>9} {:>10} {:>15} {:>10} {:>5}",
            "nodes",
            "beats/s",
            "asked/s",
            "head CPU",
            "us/beat",
            "RSS MiB",
            "reply KiB",
            "p50/p99 ms",
            "sim CPU",
            "rereg"
        );
        let seen = Arc::new(Seen::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut clients = Vec::new();
        for level in LEVELS {
            while clients.len() < level {
                let c = client(&head);
                let i = clients.len();
                tokio::spawn(node(i, c.clone(), mode, seen.clone(), stop_rx.clone()));
                clients.push(c);
            }
            // Let every node register and settle into its rhythm.
            tokio::time::sleep(Duration::from_secs(3)).await;
            window(level, head_pid, &seen).await;
        }
        actors(&clients, head_pid).await;
        let _ = stop.send(true);
        println!(
            "calls that failed (and were tried again): {} registrations, {} heartbeats",
            seen.failed_registrations.load(Ordering::Relaxed),
            seen.failed_heartbeats.load(Ordering::Relaxed),
        );
    });
}

fn main() {
    println!(
        "head scale: one `fabric start --head` process and simulated nodes (this process), each with its own TLS connection, heartbeating every {} ms, on this {}-core machine",
        INTERVAL.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut args = std::env::args().skip(1);
    let mut baseline = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--baseline-head" => {
                let path = args
                    .next()
                    .expect("--baseline-head needs a `fabric` binary");
                baseline = Some(PathBuf::from(path));
            }
            "--bench" => {}
            other => panic!("unknown argument {other} (--baseline-head PATH)"),
        }
    }
    let fabric = std::path::Path::new(env!("CARGO_BIN_EXE_fabric"));
    run(Mode::Whole, fabric);
    run(Mode::Changes, fabric);
    run(Mode::ChangesBusy, fabric);
    if let Some(old) = baseline {
        run(Mode::ChangesBusy, &old);
    }
}
