//! The hostile-guest suite. Each test runs one attack (tests/programs/
//! hostile, as tenant `mallory`) while tenant `alice` runs a well-behaved
//! job on the same node at the same time, and checks both: the attack ends
//! in a typed error naming what stopped it, and alice's job finishes with
//! correct results (so the node kept running and was not starved).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_host::error::{FabricError, LoadError};
use fabric_host::limits::Limits;
use fabric_host::logs::MemorySink;
use fabric_host::manifest::Policy;
use fabric_host::quota::Quota;
use fabric_host::{JobOptions, JobOutcome, Node, NodeConfig};

use crate::support::{node_with, programs, test_config};

/// What a finished job printed.
pub(crate) struct Job {
    pub(crate) outcome: JobOutcome,
    pub(crate) logs: Arc<MemorySink>,
}

impl Job {
    pub(crate) fn stdout(&self) -> String {
        self.logs.stdout()
    }

    /// Its stdout, after checking that the driver itself succeeded.
    pub(crate) fn ok(&self) -> String {
        if let Err(e) = &self.outcome.result {
            panic!(
                "the job failed: {e}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.logs.stderr()
            );
        }
        self.stdout()
    }
}

/// A node of 2 CPUs where manifests may raise limits up to the runtime's
/// maximum and grant anything under the system's temp directory and any
/// loopback port (what each test grants is in its manifest).
pub(crate) fn arena() -> Node {
    node_with(NodeConfig {
        num_cpus: Some(2.0),
        max_limits: Some(Limits::max()),
        policy: Policy {
            grant_dirs: vec![std::env::temp_dir()],
            grant_network: vec!["127.0.0.1:*".into()],
            grant_env: true,
            ..Policy::default()
        },
        ..test_config()
    })
}

/// The limits the attacker runs under unless a test says otherwise.
const ATTACK_LIMITS: &str = r#"
[limits]
memory = "64 MiB"
cpu-time = "1s"
wall-time = "3s"
pending-tasks = 50
log-bytes = "64 KiB"
"#;

async fn start(
    node: &Node,
    tenant: &str,
    manifest: &str,
    args: &[&str],
) -> (tokio::task::JoinHandle<JobOutcome>, Arc<MemorySink>) {
    start_program(node, programs::HOSTILE, tenant, manifest, args).await
}

/// Starts the driver of the guest at `wasm` as a job of `tenant`.
pub(crate) async fn start_program(
    node: &Node,
    wasm: &str,
    tenant: &str,
    manifest: &str,
    args: &[&str],
) -> (tokio::task::JoinHandle<JobOutcome>, Arc<MemorySink>) {
    let bytes = std::fs::read(wasm).expect("guest program");
    let app = node.load(&bytes).await.expect("load");
    let logs = Arc::new(MemorySink::default());
    let options = JobOptions {
        manifest: manifest.to_string(),
        tenant: Some(tenant.to_string()),
        ..Default::default()
    };
    let (_, running) = node.start_job_with(
        app,
        args.iter().map(|s| s.to_string()).collect(),
        logs.clone(),
        options,
    );
    (tokio::spawn(running), logs)
}

pub(crate) async fn finish(job: (tokio::task::JoinHandle<JobOutcome>, Arc<MemorySink>)) -> Job {
    Job {
        outcome: job.0.await.expect("job task"),
        logs: job.1,
    }
}

/// Alice's job: tasks, an object and a named actor, checked after `hold_ms`.
pub(crate) async fn start_victim(
    node: &Node,
    hold_ms: u64,
) -> (tokio::task::JoinHandle<JobOutcome>, Arc<MemorySink>) {
    start(node, "alice", "", &["victim", &hold_ms.to_string()]).await
}

/// The victim's ids of `what` (`object` or `actor`), once it printed them.
pub(crate) async fn victim_id(logs: &MemorySink, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = logs
            .stdout()
            .lines()
            .find(|l| l.starts_with(&format!("{what} ")))
        {
            return line[what.len() + 1..].to_string();
        }
        assert!(Instant::now() < deadline, "the victim printed no {what} id");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn assert_victim_ok(victim: &Job) {
    let out = victim.ok();
    assert!(
        out.contains("victim ok: sum 2870 in 1 rounds, alice's secret, alice's vault"),
        "{out}"
    );
}

/// Runs attack `args` (as mallory, under `manifest`) beside the victim and
/// returns what the attacker printed, after checking the victim's results.
async fn attack_with(node: &Node, manifest: &str, args: &[&str]) -> Job {
    let victim = start_victim(node, 1500).await;
    let attacker = finish(start(node, "mallory", manifest, args).await).await;
    assert_victim_ok(&finish(victim).await);
    attacker
}

async fn attack(args: &[&str]) -> String {
    attack_with(&arena(), ATTACK_LIMITS, args).await.ok()
}

pub(crate) fn one_line(out: &str, prefix: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting `{prefix}` in:\n{out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_stops_at_its_cpu_time_limit() {
    let out = attack(&["infinite-loop"]).await;
    assert_eq!(out, "spin: limit-exceeded cpu-time 1000\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_stops_at_its_memory_limit() {
    let out = attack(&["memory-bomb"]).await;
    assert_eq!(out, "hog: limit-exceeded memory 67108864\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_stops_at_the_wasm_stack_limit() {
    let out = attack(&["deep-recursion"]).await;
    assert_eq!(out, "recurse: limit-exceeded wasm-stack 1048576\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_fork_bomb_hits_the_pending_tasks_limit() {
    let out = attack(&["fork-bomb"]).await;
    assert_eq!(out, "submitted 50, then: limit-exceeded pending-tasks 50\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_flood_stops_at_the_tenants_quota() {
    let node = arena();
    node.set_quota(
        "mallory",
        Quota {
            object_store: Some(64 << 20),
            ..Quota::default()
        },
    );
    let out = attack_with(&node, ATTACK_LIMITS, &["object-flood"])
        .await
        .ok();
    assert_flood_stopped_by_a_64_mib_quota(&out);
}

/// An object flood's report: about 64 of its 1 MiB objects fit, and the
/// store itself (1 GiB) was far from full, so only the quota stopped it.
pub(crate) fn assert_flood_stopped_by_a_64_mib_quota(out: &str) {
    let line = one_line(out, "stored ");
    assert!(
        line.ends_with("MiB, then: limit-exceeded object-store-quota 67108864"),
        "{line}"
    );
    let stored: u64 = line["stored ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((60..=64).contains(&stored), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_argument_is_refused_by_the_argument_limit() {
    // Memory enough to build the argument; the argument limit stays at its
    // 256 MiB default.
    let manifest = "[limits]\nmemory = \"3 GiB\"\nwall-time = \"60s\"\n";
    let out = attack_with(&arena(), manifest, &["huge-argument"])
        .await
        .ok();
    assert_eq!(
        out,
        "1 GiB argument: limit-exceeded argument-bytes 268435456\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_guessed_object_ids_are_not_found() {
    let out = attack(&["forged-ids"]).await;
    assert_eq!(out, "neighbour id: not-found\nguessed 203 ids, found 0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_object_id_is_not_found() {
    let node = arena();
    let victim = start_victim(&node, 1500).await;
    let id = victim_id(&victim.1, "object").await;
    let out = finish(start(&node, "mallory", ATTACK_LIMITS, &["steal-object", &id]).await)
        .await
        .ok();
    assert_eq!(out, "adopt: not-found\n");
    assert_victim_ok(&finish(victim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_actor_can_be_neither_called_nor_killed() {
    let node = arena();
    let victim = start_victim(&node, 1500).await;
    let id = victim_id(&victim.1, "actor").await;
    let out = finish(start(&node, "mallory", ATTACK_LIMITS, &["steal-actor", &id]).await)
        .await
        .ok();
    assert_eq!(
        out,
        "forged handle: not-found\nobject as handle: not-found\nkill object as handle: not-found\nwatch object as handle: not-found\n"
    );
    // The victim's final check calls the vault: it is alive and unchanged.
    assert_victim_ok(&finish(victim).await);
}

/// The host's own actor calls (a stop, a watch) cannot be sent by a guest;
/// watches on one actor stop at 4,096, and they fire when it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_methods_are_refused_and_watches_are_bounded() {
    let out = attack(&["watches"]).await;
    let refused = "invalid-argument: method name must";
    assert_eq!(
        out,
        format!(
            "method \"\": {refused} be 1 to 256 bytes, got 0
method \"\\0watch\": {refused} not contain a NUL character
method \"x\\0\": {refused} not contain a NUL character
watches answered while the actor lives: 4
watch 4097: limit-exceeded actor-watches 4096
a watch after the kill: actor-died, killed
"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_named_actor_is_invisible() {
    let node = arena();
    let victim = start_victim(&node, 1500).await;
    victim_id(&victim.1, "actor").await;
    let out = finish(start(&node, "mallory", ATTACK_LIMITS, &["steal-named-actor"]).await)
        .await
        .ok();
    assert_eq!(
        out,
        "get_actor_in(shared, vault): not-found\nown vault says: mallory's own\n"
    );
    assert_victim_ok(&finish(victim).await);
}

/// A scratch directory under the temp dir (which the arena may grant).
pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
    let dir = crate::support::unique_temp_path(&format!("hostile-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_etc_passwd_is_denied_even_through_a_granted_directory() {
    let dir = scratch("read");
    std::fs::write(dir.join("inside.txt"), "inside").unwrap();
    let manifest = format!(
        "{ATTACK_LIMITS}\n[[capabilities.dir]]\nhost = {:?}\nguest = \"/data\"\nmode = \"ro\"\n",
        dir.display().to_string()
    );
    let out = attack_with(&arena(), &manifest, &["read-passwd"])
        .await
        .ok();
    assert_eq!(
        one_line(&out, "/etc/passwd: "),
        "/etc/passwd: denied (NotFound)"
    );
    let escape = one_line(&out, "/data/../etc/passwd: ");
    assert!(escape.contains("denied"), "{out}");
    assert_eq!(
        one_line(&out, "/data/inside.txt: "),
        "/data/inside.txt: READ 6 bytes",
        "the grant itself works"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_outside_a_granted_directory_is_denied() {
    let rw = scratch("rw");
    let ro = scratch("ro");
    let manifest = format!(
        "{ATTACK_LIMITS}\n[[capabilities.dir]]\nhost = {:?}\nguest = \"/data\"\nmode = \"rw\"\n\
         [[capabilities.dir]]\nhost = {:?}\nguest = \"/ro\"\nmode = \"ro\"\n",
        rw.display().to_string(),
        ro.display().to_string()
    );
    let out = attack_with(&arena(), &manifest, &["write-outside"])
        .await
        .ok();
    assert_eq!(one_line(&out, "/data/ok.txt: "), "/data/ok.txt: WROTE");
    for p in [
        "/data/../escape.txt: ",
        "/tmp/escape.txt: ",
        "/ro/nope.txt: ",
    ] {
        let line = one_line(&out, p);
        assert!(line.contains("denied"), "{line}");
    }
    assert!(rw.join("ok.txt").exists());
    assert!(!rw.parent().unwrap().join("escape.txt").exists());
    assert!(!ro.join("nope.txt").exists());
    let _ = std::fs::remove_dir_all(rw);
    let _ = std::fs::remove_dir_all(ro);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_needs_a_grant_for_its_exact_destination() {
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (
        granted.local_addr().unwrap().to_string(),
        other.local_addr().unwrap().to_string(),
    );
    let node = arena();
    // No grant: nothing connects.
    let out = attack_with(&node, ATTACK_LIMITS, &["socket", &a, &b])
        .await
        .ok();
    assert!(
        one_line(&out, &format!("{a}: ")).contains("denied"),
        "{out}"
    );
    assert!(
        one_line(&out, &format!("{b}: ")).contains("denied"),
        "{out}"
    );
    // A grant for one destination opens that one only.
    let manifest = format!("{ATTACK_LIMITS}\n[capabilities]\nnetwork = [{a:?}]\n");
    let out = attack_with(&node, &manifest, &["socket", &a, &b])
        .await
        .ok();
    assert_eq!(one_line(&out, &format!("{a}: ")), format!("{a}: CONNECTED"));
    assert!(
        one_line(&out, &format!("{b}: ")).contains("denied"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_environment_variables_are_invisible() {
    assert!(std::env::vars().count() > 0, "the host has an environment");
    let node = arena();
    let out = attack_with(&node, ATTACK_LIMITS, &["env"]).await.ok();
    assert_eq!(out, "task sees env []\ndriver sees env []\n");
    let manifest = format!("{ATTACK_LIMITS}\n[capabilities]\nenv = {{ MODE = \"granted\" }}\n");
    let out = attack_with(&node, &manifest, &["env"]).await.ok();
    assert_eq!(
        out,
        "task sees env [\"MODE\"]\ndriver sees env [\"MODE\"]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_cut_at_the_log_limit_with_a_marker() {
    // 20 MB of output takes a while to produce: time enough for it.
    let manifest = "[limits]\ncpu-time = \"60s\"\nwall-time = \"60s\"\nlog-bytes = \"64 KiB\"\n";
    let job = attack_with(&arena(), manifest, &["log-flood"]).await;
    let out = job.ok();
    assert!(
        out.ends_with("shout returned 20000\n"),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
    let marker = "[fabric: output dropped past 65536 bytes (log-bytes limit)]";
    assert_eq!(out.matches(marker).count(), 1);
    // 64 KiB of the task's lines (plus prefixes), not its 20 MB.
    assert!(out.len() < 200 << 10, "{} bytes kept", out.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_refused_as_not_a_component() {
    let node = arena();
    let victim = start_victim(&node, 500).await;
    let mut junk = vec![0u8; 64 << 10];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in junk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    assert!(matches!(node.load(&junk).await, Err(LoadError::NotWasm)));
    // With the magic number but garbage after it.
    let mut fake = b"\0asm\x0d\0\x01\0".to_vec();
    fake.extend_from_slice(&junk);
    assert!(matches!(node.load(&fake).await, Err(LoadError::Invalid(_))));
    assert_victim_ok(&finish(victim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_module_is_refused_as_not_a_component() {
    let node = arena();
    let victim = start_victim(&node, 500).await;
    // The smallest valid core module: magic and version 1.
    let err = node.load(b"\0asm\x01\0\0\0").await.expect_err("refused");
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert_victim_ok(&finish(victim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_unknown_interfaces_is_refused_at_load() {
    let node = arena();
    let victim = start_victim(&node, 500).await;
    let bytes = std::fs::read(programs::UNKNOWN_IMPORT).unwrap();
    let err = node.load(&bytes).await.expect_err("refused");
    match &err {
        LoadError::WorldMismatch(m) => {
            assert!(m.contains("evil:attack/host-secrets"), "{m}")
        }
        other => panic!("expected a world mismatch, got {other}"),
    }
    assert_victim_ok(&finish(victim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_constructor_kills_only_that_actor() {
    let out = attack(&["ctor-panic"]).await;
    let line = one_line(&out, "ping: ");
    assert!(
        line.starts_with("ping: actor-died: ") && line.contains("the constructor blows up"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_gets_its_own_result_gets_an_error_not_a_deadlock() {
    let out = attack(&["own-result"]).await;
    assert_eq!(
        out,
        "task says: invalid-argument: a task cannot get its own result: it would wait for itself forever\n"
    );
}

/// Streams misused through the raw interface: typed refusals, a generator
/// that ignores every refusal is cancelled with its stream, and 2,000
/// streams dropped unread leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misused_streams_are_refused_and_leave_nothing_behind() {
    let node = arena();
    let out = attack_with(&node, ATTACK_LIMITS, &["streams"]).await.ok();
    assert_eq!(
        out,
        "yield outside: invalid-argument: yield-item outside a streaming call (submit it with `submit-stream`)\n\
         backpressure 0: invalid-argument: backpressure must be 1 to 65536 items, got 0\n\
         backpressure 1048576: invalid-argument: backpressure must be 1 to 65536 items, got 1048576\n\
         stubborn: took Ok(2), then dropped\n\
         flood: 2000 streams opened and dropped\n"
    );
    crate::support::assert_released(&node).await;
}

/// A concurrent actor's stream that its caller stops taking: the
/// generator waits in the host, the actor's other call still ends at its
/// own wall time, and the stream ends with the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_stream_on_a_concurrent_actor_ends_at_the_wall_time() {
    let out = attack(&["stuck-stream"]).await;
    assert_eq!(
        out,
        "yield-call-item outside: invalid-argument: yield-call-item: only a concurrent \
         actor's `actor-run` has calls\n\
         first item 0\n\
         waiting call: limit-exceeded wall-time 3000\n\
         it failed before the stream's deadline: true\n\
         then 1 more items and: Some(\"limit-exceeded wall-time 3000\")\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_forever_stops_at_the_wall_time_limit() {
    let out = attack(&["sleep-forever"]).await;
    assert_eq!(out, "nap: limit-exceeded wall-time 3000\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_that_loops_forever_is_stopped_and_typed() {
    // The attack is the driver itself: the job fails with the limit.
    let node = arena();
    let victim = start_victim(&node, 500).await;
    let manifest = "[limits]\ndriver-wall-time = \"2s\"\n";
    let job = finish(start(&node, "mallory", manifest, &["sleep-forever"]).await).await;
    // The task's own wall-time limit (600 s default) is longer than the
    // driver's: the driver's limit ends the job.
    match &job.outcome.result {
        Err(FabricError::LimitExceeded { name, value, .. }) => {
            assert_eq!((name.as_str(), *value), ("wall-time", 2000))
        }
        other => panic!("expected the driver's wall-time limit, got {other:?}"),
    }
    assert_victim_ok(&finish(victim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_table_stops_at_the_table_limit() {
    let node = arena();
    let victim = start_victim(&node, 500).await;
    let bytes = std::fs::read(crate::support::wat::TABLE_BOMB).unwrap();
    let app = node.load(&bytes).await.expect("a valid component");
    let logs = Arc::new(MemorySink::default());
    let options = JobOptions {
        manifest: String::new(),
        tenant: Some("mallory".into()),
        ..Default::default()
    };
    let outcome = node.run_job_with(app, Vec::new(), logs, options).await;
    match &outcome.result {
        Err(FabricError::LimitExceeded { name, value, .. }) => {
            assert_eq!((name.as_str(), *value), ("table-elements", 10_000))
        }
        other => panic!("expected the table limit, got {other:?}"),
    }
    assert_victim_ok(&finish(victim).await);
}

/// A `Control` client that sends a token with every call.
pub(crate) type Control = wasmfabric_proto::v1::control_client::ControlClient<
    tonic::codegen::InterceptedService<tonic::transport::Channel, fabric_host::security::AddToken>,
>;

/// A `Control` client of the in-process cluster `c`, holding `token`.
pub(crate) async fn control(c: &crate::support::TestCluster, token: &str) -> Control {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", c.handles[0].address()))
            .unwrap()
            .tls_config(fabric_host::security::client_tls(&c.security.ca_cert))
            .unwrap()
            .connect()
            .await
            .expect("TLS connection to the head");
    wasmfabric_proto::v1::control_client::ControlClient::with_interceptor(
        channel,
        fabric_host::security::AddToken::new(token).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_jobs_and_logs_are_invisible() {
    use wasmfabric_proto::v1 as pb;
    let c = crate::support::test_cluster(vec![NodeConfig {
        num_cpus: Some(2.0),
        ..test_config()
    }])
    .await;
    let alice_token = c.tokens.add_tenant("alice", Quota::default()).unwrap();
    let mallory_token = c.tokens.add_tenant("mallory", Quota::default()).unwrap();
    let mut alice = control(&c, &alice_token).await;
    let mut mallory = control(&c, &mallory_token).await;

    let mut events = alice
        .submit_job(pb::SubmitJobRequest {
            component: std::fs::read(programs::HOSTILE).unwrap().into(),
            args: vec!["victim".into(), "1500".into()],
            manifest: String::new(),
            components: Vec::new(),
        })
        .await
        .expect("alice may submit")
        .into_inner();
    let job_id = match events.message().await.unwrap().unwrap().kind {
        Some(pb::job_event::Kind::Started(s)) => s.job_id,
        other => panic!("expected the start, got {other:?}"),
    };

    // While alice's job runs, mallory probes for it.
    assert_mallory_finds_nothing(&c, &mut mallory, &job_id).await;

    // Alice's job finishes correctly, and she can read her own logs.
    let mut printed = String::new();
    loop {
        match events
            .message()
            .await
            .unwrap()
            .expect("finished event")
            .kind
        {
            Some(pb::job_event::Kind::Log(l)) => {
                printed.push_str(&String::from_utf8_lossy(&l.line));
                printed.push('\n');
            }
            Some(pb::job_event::Kind::Finished(f)) => {
                assert!(f.ok, "{f:?}\n{printed}");
                break;
            }
            _ => {}
        }
    }
    assert!(printed.contains("victim ok: sum 2870"), "{printed}");
    let logs = alice
        .job_logs(pb::JobLogsRequest { job_id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        logs.lines
            .iter()
            .any(|l| String::from_utf8_lossy(&l.line).starts_with("victim ok")),
        "{logs:?}"
    );
}

/// Another tenant's job, its logs and actors look exactly like none; a
/// tenant cannot add tenants and no token gets nothing.
async fn assert_mallory_finds_nothing(
    c: &crate::support::TestCluster,
    mallory: &mut Control,
    job_id: &[u8],
) {
    use wasmfabric_proto::v1 as pb;
    let stolen = mallory
        .job_logs(pb::JobLogsRequest {
            job_id: job_id.to_vec().into(),
        })
        .await
        .unwrap_err();
    let unknown = mallory
        .job_logs(pb::JobLogsRequest {
            job_id: vec![7u8; 16].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), tonic::Code::NotFound);
    assert_eq!(
        (stolen.code(), stolen.message()),
        (unknown.code(), unknown.message()),
        "another tenant's job looks exactly like no job"
    );
    let state = mallory
        .cluster_state(pb::ClusterStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        state.jobs.is_empty() && state.actors.is_empty(),
        "{state:?}"
    );
    let refused = mallory
        .add_tenant(pb::AddTenantRequest {
            name: "mallory2".into(),
            quota: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let mut anonymous = control(c, "not-a-token").await;
    let refused = anonymous
        .cluster_state(pb::ClusterStateRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_stops_at_the_compile_bounds() {
    // 400 KB of wasm that takes over a minute of CPU to compile, on a node
    // that allows 10 s (its own engine: the bound is per engine). The
    // victim is compiled under the same bound: a debug build compiles it in
    // about 2 s of CPU on its threads together, which a 2 s bound refused
    // once in CI on a loaded machine.
    let engine = fabric_host::runtime::engine::FabricEngine::new(
        &fabric_host::runtime::engine::EngineSettings {
            max_instances: 100,
            compile: Some(fabric_host::runtime::compile::CompileSandbox {
                time: Duration::from_secs(10),
                ..crate::support::compile_sandbox()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let node = Node::start_with_engine(
        NodeConfig {
            num_cpus: Some(2.0),
            ..test_config()
        },
        engine,
    )
    .unwrap();
    let victim = start_victim(&node, 500).await;
    let bomb = std::fs::read(crate::support::wat::COMPILE_BOMB).unwrap();
    let err = node.load(&bomb).await.expect_err("refused");
    match &err {
        LoadError::CompileBound(m) => assert!(m.contains("10 s CPU-time bound"), "{m}"),
        other => panic!("expected the compile bound, got {other}"),
    }
    assert_victim_ok(&finish(victim).await);
    // A memory bound stops it too.
    let memory_bound = fabric_host::runtime::engine::FabricEngine::new(
        &fabric_host::runtime::engine::EngineSettings {
            max_instances: 100,
            compile: Some(fabric_host::runtime::compile::CompileSandbox {
                memory: 96 << 20,
                ..crate::support::compile_sandbox()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let err = memory_bound.load(&bomb).await.expect_err("refused");
    assert!(matches!(err, LoadError::CompileBound(_)), "{err}");
}
