//! Helpers shared by the integration tests and the benchmarks: a shared
//! engine (each component compiles once per test process), nodes sized per
//! test, and running a guest program to completion.

#![allow(dead_code)]

pub mod curl;
pub mod procs;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fabric_host::logs::MemorySink;
use fabric_host::runtime::engine::{EngineSettings, FabricEngine};
use fabric_host::{JobOutcome, Node, NodeConfig};

#[allow(unused_imports)]
pub use fabric_test_artifacts::{examples, programs, wat};

/// The repository's root (the tests are built by `host/cli`'s package).
pub const REPO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A path under the temp dir that no other test (or test process) uses;
/// nothing is created there.
pub fn unique_temp_path(name: &str) -> std::path::PathBuf {
    use std::hash::{BuildHasher, RandomState};
    std::env::temp_dir().join(format!(
        "fabric-{name}-{}-{:016x}",
        std::process::id(),
        RandomState::new().hash_one(Instant::now())
    ))
}

/// The tests' cache directory (`XDG_CACHE_HOME` of the `fabric` they run):
/// Python builds and compiled components, under `target/`.
pub fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(REPO_ROOT).join("target/cache")
}

/// One engine for the whole test process.
pub fn engine() -> FabricEngine {
    static ENGINE: OnceLock<FabricEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            FabricEngine::new(&EngineSettings {
                max_instances: 2_000,
                // Components compile as on a real node: in a bounded child
                // process of the `fabric` binary.
                compile: Some(compile_sandbox()),
                // Compiled once for every test process, and kept: a Python
                // component takes seconds of Cranelift.
                compiled_dir: Some(cache_dir().join("wasmfabric/compiled")),
                ..EngineSettings::default()
            })
            .expect("engine")
        })
        .clone()
}

/// The `fabric` binary as the bounded compiler, with the default bounds.
pub fn compile_sandbox() -> fabric_host::runtime::compile::CompileSandbox {
    fabric_host::runtime::compile::CompileSandbox::new(env!("CARGO_BIN_EXE_fabric").into())
}

/// A node with `cpus` CPUs, no GPU, a 1 GiB object store.
pub fn node(cpus: f64) -> Node {
    node_with(NodeConfig {
        num_cpus: Some(cpus),
        ..test_config()
    })
}

/// The defaults tests build on: no detection of this machine's GPUs.
pub fn test_config() -> NodeConfig {
    NodeConfig {
        num_gpus: Some(0),
        memory: Some(4 << 30),
        object_store_memory: Some(1 << 30),
        ..NodeConfig::default()
    }
}

pub fn node_with(config: NodeConfig) -> Node {
    Node::start_with_engine(config, engine()).expect("node")
}

/// The breaches guest made distinct (its own digest, its own compile) by an
/// unused core module holding the global `n`: custom sections would not do,
/// a node drops them before it digests a component.
pub fn distinct_component(n: u32) -> Vec<u8> {
    // (module (global i32 (i32.const n))), n as a 5-byte signed LEB128.
    let mut global = vec![1, 0x7f, 0x00, 0x41];
    let v = n & 0x0fff_ffff;
    global.extend_from_slice(&[
        (v as u8 & 0x7f) | 0x80,
        ((v >> 7) as u8 & 0x7f) | 0x80,
        ((v >> 14) as u8 & 0x7f) | 0x80,
        ((v >> 21) as u8 & 0x7f) | 0x80,
        0x00,
    ]);
    global.push(0x0b);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.push(6);
    leb128(global.len() as u64, &mut module);
    module.extend_from_slice(&global);
    let mut wasm = std::fs::read(programs::BREACHES).expect("the breaches guest");
    wasm.push(1); // a core module section
    leb128(module.len() as u64, &mut wasm);
    wasm.extend_from_slice(&module);
    wasm
}

/// `wasm` with a custom section of `len` bytes (pattern `fill`) appended.
pub fn with_custom_section(mut wasm: Vec<u8>, len: usize, fill: u8) -> Vec<u8> {
    let name = b"padding";
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.resize(body.len() + len, fill);
    wasm.push(0);
    leb128(body.len() as u64, &mut wasm);
    wasm.extend_from_slice(&body);
    wasm
}

/// `v` as unsigned LEB128 (how wasm writes sizes).
fn leb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A finished job and what it printed.
pub struct Run {
    pub outcome: JobOutcome,
    pub logs: Arc<MemorySink>,
}

impl Run {
    pub fn stdout(&self) -> String {
        self.logs.stdout()
    }

    pub fn stderr(&self) -> String {
        self.logs.stderr()
    }
}

/// Runs the driver of the component at `wasm` with `args`.
pub async fn run(node: &Node, wasm: &str, args: &[&str]) -> Run {
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("reading {wasm}: {e}"));
    let app = node.load(&bytes).await.expect("load");
    let logs = Arc::new(MemorySink::default());
    let outcome = node
        .run_job(
            app,
            args.iter().map(|s| s.to_string()).collect(),
            logs.clone(),
        )
        .await;
    Run { outcome, logs }
}

/// Runs a driver that must succeed and returns its stdout. Afterwards the
/// node must have freed every object and given back every resource.
pub async fn run_ok(node: &Node, wasm: &str, args: &[&str]) -> String {
    let r = run(node, wasm, args).await;
    if let Err(e) = &r.outcome.result {
        panic!(
            "job {wasm} {args:?} failed: {e}\nstdout:\n{}\nstderr:\n{}",
            r.stdout(),
            r.stderr()
        );
    }
    assert_released(node).await;
    r.stdout()
}

/// Waits (up to 5 s) until the node holds no objects, no tasks, no
/// streams and no leased resources, and fails the test if it does not get there.
pub async fn assert_released(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = node.stats();
        let clean = s.objects == 0
            && s.object_store_used == 0
            && s.running_tasks == 0
            && s.queued_tasks == 0
            && s.streams == 0
            && s.free == s.total;
        if clean {
            return;
        }
        if Instant::now() > deadline {
            panic!("the node did not release everything after the job: {s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An in-process cluster: real nodes talking real gRPC over loopback, in
/// this test process (they share one engine, so components compile once).
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub handles: Vec<fabric_host::cluster::ClusterHandle>,
    pub security: fabric_host::security::ClusterSecurity,
    pub tokens: Arc<fabric_host::security::Tokens>,
    pub ingress: fabric_host::config::IngressLimits,
}

/// The admin token of every in-process test cluster.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token";

impl TestCluster {
    pub fn head(&self) -> &Node {
        &self.nodes[0]
    }

    /// The id of node `i` as guests see it (hex).
    pub fn id(&self, i: usize) -> String {
        self.nodes[i].id().to_string()
    }

    /// Adds a worker and waits until the head's node sees it.
    pub async fn add(&mut self, config: NodeConfig) {
        let node = node_with(config);
        let mut cfg = fabric_host::cluster::ClusterConfig::worker(
            "127.0.0.1:0".parse().unwrap(),
            self.handles[0].address(),
            self.security.clone(),
        );
        cfg.heartbeat_interval = Duration::from_millis(100);
        cfg.ingress = self.ingress.clone();
        let handle = fabric_host::cluster::join(&node, cfg).await.expect("join");
        self.nodes.push(node);
        self.handles.push(handle);
        let n = self.nodes.len();
        self.wait_for_alive(n).await;
    }

    /// Waits until every node sees `n` live nodes.
    pub async fn wait_for_alive(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self
                .handles
                .iter()
                .all(|h| h.peers().iter().filter(|p| p.alive).count() == n)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not converge on {n} live nodes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every node released every object and resource.
    pub async fn assert_released(&self) {
        for node in &self.nodes {
            assert_released(node).await;
        }
    }
}

/// A head (first config) and workers (the rest), with fast heartbeats.
pub async fn test_cluster(configs: Vec<NodeConfig>) -> TestCluster {
    test_cluster_on(engine(), configs).await
}

/// [`test_cluster`] on an engine of its own (whose compiles a test counts).
pub async fn test_cluster_on(engine: FabricEngine, configs: Vec<NodeConfig>) -> TestCluster {
    build_cluster(
        engine,
        fabric_host::config::IngressLimits::default(),
        configs,
    )
    .await
}

/// [`test_cluster`] whose nodes bound their callers with `ingress`.
pub async fn test_cluster_with_ingress(
    ingress: fabric_host::config::IngressLimits,
    configs: Vec<NodeConfig>,
) -> TestCluster {
    build_cluster(engine(), ingress, configs).await
}

async fn build_cluster(
    engine: FabricEngine,
    ingress: fabric_host::config::IngressLimits,
    configs: Vec<NodeConfig>,
) -> TestCluster {
    let mut configs = configs.into_iter();
    let head =
        Node::start_with_engine(configs.next().expect("a head config"), engine).expect("node");
    let security = fabric_host::security::ClusterSecurity::generate().expect("credentials");
    let tokens = Arc::new(fabric_host::security::Tokens::in_memory(TEST_ADMIN_TOKEN));
    let mut cfg = fabric_host::cluster::ClusterConfig::head(
        "127.0.0.1:0".parse().unwrap(),
        security.clone(),
        tokens.clone(),
    );
    cfg.heartbeat_interval = Duration::from_millis(100);
    cfg.node_timeout = Duration::from_secs(1);
    cfg.ingress = ingress.clone();
    let handle = fabric_host::cluster::join(&head, cfg).await.expect("head");
    let mut cluster = TestCluster {
        nodes: vec![head],
        handles: vec![handle],
        security,
        tokens,
        ingress,
    };
    for c in configs {
        cluster.add(c).await;
    }
    cluster
}
