//! Python guests, built from the SDK with componentize-py by the real
//! `fabric build`: each example under examples/python prints what its Rust
//! twin prints, and the hostile-guest suite's attacks, written in Python,
//! end in the errors the test names while alice's job beside them finishes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use fabric_host::limits::Limits;
use fabric_host::manifest::Policy;
use fabric_host::quota::Quota;
use fabric_host::{Node, NodeConfig};

use crate::hostile::{assert_victim_ok, finish, start_program, start_victim};
use crate::support::{REPO_ROOT, examples, node, node_with, programs, run_ok, test_config};

/// The SDK's scenarios (semantics, generators, groups, drops), one component.
const SDK_SCENARIOS: &str = "tests/programs/python/sdk.py";

/// The component `fabric build` makes of the Python file at `path` (from
/// the repository's root), built once per test process.
pub(crate) async fn python_app(path: &'static str) -> String {
    static BUILT: OnceLock<Mutex<HashMap<&'static str, String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    if let Some(wasm) = built.lock().unwrap().get(path) {
        return wasm.clone();
    }
    let wasm = tokio::task::spawn_blocking(move || build(path))
        .await
        .unwrap();
    built.lock().unwrap().insert(path, wasm.clone());
    wasm
}

fn build(path: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fabric"))
        .current_dir(REPO_ROOT)
        .env("XDG_CACHE_HOME", crate::support::cache_dir())
        .args(["build", path])
        .output()
        .expect("run fabric build");
    assert!(
        out.status.success(),
        "fabric build {path} failed (componentize-py is installed by .ci/run: \
         pip install componentize-py==0.25.1):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Actor ids differ between runs: `(Consumer actor=2f51040e)` becomes
/// `(Consumer actor=*)`.
fn without_actor_ids(out: &str) -> String {
    out.lines()
        .map(|l| match (l.find(" actor="), l.find(')')) {
            (Some(a), Some(b)) if a < b => format!("{} actor=*{}", &l[..a], &l[b..]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the Python example and the Rust example on like nodes and checks
/// they print the same.
async fn prints_what_rust_prints(python: &'static str, rust: &str) {
    let wasm = python_app(python).await;
    let py = run_ok(&node(2.0), &wasm, &[]).await;
    let rs = run_ok(&node(2.0), rust, &[]).await;
    assert!(!py.is_empty());
    assert_eq!(without_actor_ids(&py), without_actor_ids(&rs), "{python}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hello_runs_the_whole_tour() {
    let wasm = python_app("examples/python/hello.py").await;
    // The Rust tour's output (examples::hello_runs_the_whole_tour).
    assert_eq!(
        run_ok(&node(2.0), &wasm, &[]).await,
        "3\n1\n2\n3\n4\n5\n[1, 2, 3, 4, 5]\n[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_slots_image_is_mapped_without_fault_around() {
    // For each page of CPython's image a task read, the kernel mapped 16
    // (fault-around); they stayed mapped in the pool slot and the reset
    // after every task looked each one up again: a quarter of a Python
    // task's time. The node registers each slot's image with userfaultfd
    // for write protection, which turns fault-around off there, and
    // protects nothing: smaps flags such a mapping `uw`, and no page of it
    // may carry the write-protect bit (a write to it would wait forever on
    // a descriptor no one reads).
    let wasm = python_app("examples/python/hello.py").await;
    // The node (and its engine's pool) stays up while the maps are read.
    let node = node(2.0);
    run_ok(&node, &wasm, &[]).await;
    if !userfaultfd_can_register_shmem() {
        eprintln!("userfaultfd (with write protection of shmem) is refused here: not checked");
        return;
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut range = None;
    let mut registered = 0;
    for line in smaps.lines() {
        if let Some((lo, hi)) = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
        {
            let (lo, hi) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16));
            range = lo.ok().zip(hi.ok());
        } else if line.starts_with("VmFlags:") && line.split_whitespace().any(|f| f == "uw") {
            let (lo, hi) = range.expect("a mapping's flags follow its range");
            registered += 1;
            let protected = write_protected_pages(&pagemap, lo, hi);
            assert_eq!(protected, 0, "{lo:x}-{hi:x} has write-protected pages");
        }
    }
    assert!(
        registered > 0,
        "no slot image is registered with userfaultfd"
    );
}

/// Whether this process may open a userfaultfd that write-protects shmem,
/// as the node asks for (`UFFD_USER_MODE_ONLY`, `WP_HUGETLBFS_SHMEM`).
fn userfaultfd_can_register_shmem() -> bool {
    const WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
    // SAFETY: a plain system call; the descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1) };
    if fd < 0 {
        return false;
    }
    // `struct uffdio_api` and `UFFDIO_API`.
    let mut api = [0xaa_u64, WP_HUGETLBFS_SHMEM, 0];
    // SAFETY: `api` is the structure this ioctl reads and writes; `fd` is ours.
    let ok = unsafe { libc::ioctl(fd as libc::c_int, 0xc018_aa3f, api.as_mut_ptr()) } == 0;
    // SAFETY: as above.
    unsafe { libc::close(fd as libc::c_int) };
    ok && api[1] & WP_HUGETLBFS_SHMEM != 0
}

/// Pages in `[lo, hi)` whose pagemap entry has the userfaultfd
/// write-protect bit (57).
fn write_protected_pages(pagemap: &std::fs::File, lo: u64, hi: u64) -> usize {
    use std::os::unix::fs::FileExt;
    let mut entries = vec![0u8; ((hi - lo) / 4096 * 8) as usize];
    pagemap.read_exact_at(&mut entries, lo / 4096 * 8).unwrap();
    entries
        .chunks(8)
        .filter(|e| u64::from_le_bytes((*e).try_into().unwrap()) >> 57 & 1 == 1)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_squares_run_as_wide_as_the_cpus() {
    let wasm = python_app("examples/python/squares.py").await;
    let node = node(5.0);
    // Compiled before the clock starts (the run finds it loaded).
    node.load(&std::fs::read(&wasm).unwrap()).await.unwrap();
    let start = std::time::Instant::now();
    let out = run_ok(&node, &wasm, &[]).await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out, "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n");
    // Ten one-second tasks on 5 CPUs: two waves, never fewer.
    assert!((2.0..4.5).contains(&secs), "{secs:.2} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_counter_prints_what_rust_prints() {
    prints_what_rust_prints("examples/python/counter.py", examples::COUNTER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_put_get_prints_what_rust_prints() {
    prints_what_rust_prints("examples/python/put_get.py", examples::PUT_GET).await;
}

/// Same data, same arithmetic: the same losses to the ninth digit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_linear_regression_prints_what_rust_prints() {
    prints_what_rust_prints(
        "examples/python/linear_regression.py",
        examples::LINEAR_REGRESSION,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stream_pipeline_prints_what_rust_prints() {
    prints_what_rust_prints(
        "examples/python/stream_pipeline.py",
        examples::STREAM_PIPELINE,
    )
    .await;
}

/// Python generators stream (tasks and actor methods, found by their
/// being generators or named with `num_returns="streaming"`), fail after
/// the items before the error, stop when the stream is closed (the node
/// holds nothing of them after the job: an endless generator would keep
/// its instance), and a Python driver takes a Rust generator's items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_generators_stream_fail_and_stop() {
    let node = node(2.0);
    let py = python_app(SDK_SCENARIOS).await;
    let python = node.load(&std::fs::read(&py).unwrap()).await.unwrap();
    let rust = node
        .load(&std::fs::read(examples::STREAM_PIPELINE).unwrap())
        .await
        .unwrap();
    let options = fabric_host::JobOptions {
        components: vec![("py".into(), python.clone()), ("rust".into(), rust)],
        ..Default::default()
    };
    let logs = std::sync::Arc::new(fabric_host::logs::MemorySink::default());
    let outcome = node
        .run_job_with(
            python,
            vec!["generators".into(), "rust".into()],
            logs.clone(),
            options,
        )
        .await;
    if let Err(e) = &outcome.result {
        panic!("{e}\n{}\n{}", logs.stdout(), logs.stderr());
    }
    assert_eq!(
        logs.stdout(),
        "count: [0, 1, 2, 3, 4]\n\
         fails_after: [0, 1, 2] application-error ValueError broke after 3\n\
         endless, closed: [0, 1, 2] []\n\
         endless stopped: True\n\
         actor: ['item 0', 'item 1', 'item 2'] 3\n\
         explicit: ['item 0', 'item 1']\n\
         not streamed: bad-value True\n\
         num_returns=2: ['left', 'right']\n\
         num_returns='streaming': InvalidArgumentError\n\
         num_returns=0: InvalidArgumentError\n\
         num_returns='dynamic': InvalidArgumentError\n\
         next within 5 s: 0 []\n\
         timed out, then: late []\n\
         generator's own timeout: [1] application-error\n\
         rust readings: [20.0, 22.5, 25.0, 23.5, 20.5, 23.0]\n"
    );
    crate::support::assert_released(&node).await;
}

/// A Python class with `async def` methods is a concurrent actor whose
/// calls interleave on asyncio (a waiting call is woken by a later one,
/// twenty 0.3 s naps take under 3 s); awaited references give values or
/// raise, `wait_for` times out while the actor goes on, `SystemExit` in a
/// call fails that call only; `async def` tasks, an actor with
/// `max_concurrency=1` or without it (as another language creates it) and
/// `asyncio.run` in the driver run to the end; killing the actor fails its
/// call in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_async_actors_interleave_their_calls() {
    let node = node(2.0);
    let wasm = python_app("tests/programs/python/async_actors.py").await;
    assert_eq!(
        run_ok(&node, &wasm, &[]).await,
        "latch: 2 opened\n\
         naps: 20 interleaved: True\n\
         history: ['waiting', 'opened', 'woken']\n\
         total: 30\n\
         failed await: TaskFailedError application-error\n\
         deadline: timed out in time 0\n\
         boom: application-error True\n\
         exit: TaskFailedError application-error then: 0\n\
         async task: 13\n\
         max_concurrency=1: 0.01\n\
         max_concurrency unset: 16\n\
         asyncio.run: 85\n\
         killed: ActorDiedError\n"
    );
    crate::support::assert_released(&node).await;
}

/// Generators on concurrent actors and async generators: a stream that
/// waits for its caller holds up none of the actor's other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_async_generators_stream_beside_other_calls() {
    let node = node(2.0);
    let wasm = python_app("tests/programs/python/async_streams.py").await;
    assert_eq!(
        run_ok(&node, &wasm, &[]).await,
        "async generator task: [4, 3, 2, 1] ['left', 'right']\n\
         first: 0 made while waiting for room: 4\n\
         the rest: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n\
         two streams: 20 interleaved: True\n\
         plain generator method: [0, 1, 4, 9, 16]\n\
         broken, first item: one\n\
         broken then: application-error True\n\
         stopped when dropped: 1\n\
         async for over a stream: 15\n\
         one call at a time: [0, 1, 2, 3]\n"
    );
    crate::support::assert_released(&node).await;
}

/// An `async def` driver and task in a program that never imports
/// asyncio: the loop is in the snapshot, not imported by the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_python_driver_needs_no_asyncio_import() {
    let wasm = python_app("tests/programs/python/async_main.py").await;
    assert_eq!(run_ok(&node(2.0), &wasm, &[]).await, "9 [1, 4]\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_producer_consumer_prints_what_rust_prints() {
    prints_what_rust_prints(
        "examples/python/producer_consumer.py",
        examples::PRODUCER_CONSUMER,
    )
    .await;
}

const HOSTILE: &str = "tests/programs/python/hostile.py";

/// The limits the Python attacker runs under unless a test says otherwise.
const ATTACK_LIMITS: &str = r#"
[limits]
memory = "64 MiB"
cpu-time = "1s"
wall-time = "3s"
pending-tasks = 50
log-bytes = "64 KiB"
"#;

/// The hostile suite's node (see `hostile::arena`).
fn arena() -> Node {
    node_with(NodeConfig {
        num_cpus: Some(2.0),
        max_limits: Some(Limits::max()),
        policy: Policy {
            grant_dirs: vec![std::env::temp_dir()],
            grant_network: vec!["127.0.0.1:*".into()],
            ..Policy::default()
        },
        ..test_config()
    })
}

/// Runs the Python attack `args` as mallory beside alice's (Rust) job,
/// checks alice's results, and returns what the attacker printed.
async fn attack_on(node: &Node, manifest: &str, args: &[&str]) -> String {
    let wasm = python_app(HOSTILE).await;
    let victim = start_victim(node, 1500).await;
    let attacker = finish(start_program(node, &wasm, "mallory", manifest, args).await).await;
    assert_victim_ok(&finish(victim).await);
    attacker.ok()
}

async fn attack(args: &[&str]) -> String {
    attack_on(&arena(), ATTACK_LIMITS, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_infinite_loop_stops_at_its_cpu_time_limit() {
    assert_eq!(
        attack(&["infinite-loop"]).await,
        "spin: limit-exceeded cpu-time 1000\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_memory_bomb_stops_at_its_memory_limit() {
    assert_eq!(
        attack(&["memory-bomb"]).await,
        "hog: limit-exceeded memory 67108864\n"
    );
}

/// Python's own `RecursionError` is the function's error; recursion with
/// the interpreter's limit lifted grows frames on the heap until the
/// memory limit stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_recursion_ends_in_recursion_error_or_the_memory_limit() {
    assert_eq!(
        attack(&["recursion"]).await,
        "recurse: application-error RecursionError: maximum recursion depth exceeded\n\
         deep: limit-exceeded memory 67108864\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_python_refs_and_handles_are_not_found() {
    assert_eq!(
        attack(&["forged-ids"]).await,
        "forged object: not-found\nforged actor: not-found\nguessed 200 ids, found 0\n"
    );
}

/// Alice's real object and actor ids, written into values by a Python
/// guest of another tenant, adopt nothing; its own id adopts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_written_by_python_are_not_found() {
    let wasm = python_app(HOSTILE).await;
    let node = arena();
    let victim = start_victim(&node, 1500).await;
    let object = crate::hostile::victim_id(&victim.1, "object").await;
    let actor = crate::hostile::victim_id(&victim.1, "actor").await;
    let args = ["steal", object.as_str(), actor.as_str()];
    let out = finish(start_program(&node, &wasm, "mallory", ATTACK_LIMITS, &args).await).await;
    assert_eq!(
        out.ok(),
        "own object: mine\nalice's object: not-found\nalice's actor: not-found\n"
    );
    assert_victim_ok(&finish(victim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_fork_bomb_hits_the_pending_tasks_limit() {
    assert_eq!(
        attack(&["fork-bomb"]).await,
        "submitted 50, then: limit-exceeded pending-tasks 50\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_object_flood_stops_at_the_tenants_quota() {
    let node = arena();
    node.set_quota(
        "mallory",
        Quota {
            object_store: Some(64 << 20),
            ..Quota::default()
        },
    );
    // Memory enough that the quota, not the driver's memory, stops it
    // (componentize-py 0.25.1 keeps a copy of each value put: see README).
    let manifest = "[limits]\nmemory = \"256 MiB\"\nwall-time = \"20s\"\n";
    let out = attack_on(&node, manifest, &["object-flood"]).await;
    crate::hostile::assert_flood_stopped_by_a_64_mib_quota(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sees_no_files_without_a_grant() {
    assert_eq!(
        attack(&["files"]).await,
        "etc/passwd: denied FileNotFoundError\nroot: denied FileNotFoundError\n\
         driver etc/passwd: denied FileNotFoundError\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_opens_no_socket_without_a_grant() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    assert_eq!(
        attack(&["network", &port]).await,
        "connect: denied PermissionError\n"
    );
    assert!(listener.accept().is_err(), "nothing connected");
}

/// The SDK's fast paths keep Python's meaning: a method resolved once is
/// still shadowed by an attribute set on the object later, replaced or
/// deleted on the class, or gone with a change of the object's class;
/// `__getattr__` methods and callable (even unhashable) objects are looked
/// up on every call; argument counts are checked on every call, a remote
/// function's too (its count is computed at build time); values of every
/// MessagePack shape round-trip; tasks, each a fresh instance of the same
/// snapshot, draw different random numbers (`random` and `os.urandom`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_actor_methods_and_values_keep_pythons_meaning() {
    let wasm = python_app(SDK_SCENARIOS).await;
    assert_eq!(
        run_ok(&node(2.0), &wasm, &["semantics"]).await,
        "'greet 1' 'greet 2'\n\
         11 3\n\
         too many: TaskFailedError bad-value\n\
         too few: TaskFailedError bad-value\n\
         'dyn_a 3' 'dyn_b 4' 'dyn_a 5'\n\
         'ok' 'replaced'\n\
         'swapped' 'greet 101'\n\
         private: AttributeError _secret\n\
         missing: TaskFailedError unknown-function\n\
         'open' 12 'open'\n\
         'ok' 'patched'\n\
         'ok' TaskFailedError unknown-function\n\
         'ok' 'closed'\n\
         round trips: 28 wrong: []\n\
         put/get: [True, True, True, True]\n\
         function args: TaskFailedError bad-value TaskFailedError bad-value\n\
         distinct draws: 4 4\n"
    );
}

/// The references a Python driver drops give their objects back while it
/// runs, however it got them (put, passed to a task, nested in a task's
/// result, a put object or an async actor's result, a stream dropped
/// unclosed): 384 objects of 1 MiB, made in turn under a 16 MiB
/// object-store quota, never hold more than a few MiB at once. The SDK
/// drops a handle when its wrapper is freed (`fabric._resources`, which
/// leaves the application's own `weakref.finalize` as it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_drivers_dropped_references_free_their_objects() {
    let node = node(2.0);
    node.set_quota(
        "carol",
        Quota {
            object_store: Some(16 << 20),
            ..Quota::default()
        },
    );
    let wasm = python_app(SDK_SCENARIOS).await;
    let manifest = "[limits]\nmemory = \"256 MiB\"\n";
    let job = finish(start_program(&node, &wasm, "carol", manifest, &["drops"]).await).await;
    assert_eq!(
        job.ok(),
        "put: 1048576 fabric._resources\n\
         passed: 1048576\n\
         nested: 1048576\n\
         put inside a put: 1048576\n\
         stream dropped: 1048576\n\
         nested by an async actor: 1048576\n\
         application finalizer: ['fired']\n"
    );
    crate::support::assert_released(&node).await;
}

/// Placement groups reserve their bundles together and run work in them,
/// fail at once when they can never fit, give their CPUs back when
/// removed; an `ActorPool` hands out calls in order or as they finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_placement_groups_and_actor_pools() {
    let wasm = python_app(SDK_SCENARIOS).await;
    assert_eq!(
        run_ok(&node(4.0), &wasm, &["groups"]).await,
        "ready: True bundles: 2 [{'CPU': 1.0}, {'CPU': 1.0}]\n\
         reserved: 2.0\n\
         ran in bundle 0 on this node: True\n\
         table: pair STRICT_PACK CREATED {0: {'CPU': 1.0}, 1: {'CPU': 1.0}}\n\
         by name: True\n\
         too big: ResourcesInfeasibleError\n\
         refused: InvalidArgumentError\n\
         refused: InvalidArgumentError\n\
         refused: InvalidArgumentError\n\
         refused: InvalidArgumentError\n\
         after remove: NotFoundError, CPUs back: True\n\
         into a removed group: NotFoundError\n\
         wait on a removed group: NotFoundError\n\
         map: [0, 1, 4, 9, 16, 25]\n\
         unordered: [1, 2, 4]\n\
         queued: False [49, 64, 81] False\n\
         popped: True True\n\
         push twice: ValueError\n\
         a failed submission: [1, 'cannot submit 2', 9] actors still free: True\n\
         earlier dropped: [25, 36]\n\
         the same actor by another handle: ValueError\n"
    );
}

/// A job of two components: the Rust driver (also named `rust`, so the
/// Python side can call back) and the Python component `py`.
async fn polyglot(node: &Node, args: &[&str]) -> String {
    let py = python_app("tests/programs/python/polyglot.py").await;
    let rust = node
        .load(&std::fs::read(programs::POLYGLOT).unwrap())
        .await
        .unwrap();
    let python = node.load(&std::fs::read(&py).unwrap()).await.unwrap();
    let options = fabric_host::JobOptions {
        components: vec![("py".into(), python), ("rust".into(), rust.clone())],
        ..Default::default()
    };
    let logs = std::sync::Arc::new(fabric_host::logs::MemorySink::default());
    let outcome = node
        .run_job_with(
            rust,
            args.iter().map(|s| s.to_string()).collect(),
            logs.clone(),
            options,
        )
        .await;
    if let Err(e) = &outcome.result {
        panic!("{e}\n{}\n{}", logs.stdout(), logs.stderr());
    }
    crate::support::assert_released(node).await;
    logs.stdout()
}

/// A Rust driver calls a Python task and a Python actor; the actor calls
/// back into a Rust task; a Rust task gets the Python actor's handle and
/// calls it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_calls_python_and_python_calls_rust_back() {
    assert_eq!(
        polyglot(&node(2.0), &["calls"]).await,
        "features t1 mean 3 count 3\nscore 20\npoked total 7\nactor language python\n\
         actor on the driver's node true\n"
    );
}

/// A Python exception is a Rust `TaskFailed` with the kind, the message
/// and the error's value; an unknown component fails the submit; an
/// unknown function fails the task, as within one language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_language_errors_are_the_same_typed_errors() {
    assert_eq!(
        polyglot(&node(2.0), &["errors"]).await,
        "fail: ApplicationError ValueError: bad input | type Some(\"ValueError\")\n\
         nowhere: not found: the job has no component `nowhere` (its components: py, rust)\n\
         missing: UnknownFunction\n"
    );
}

/// Objects one language stores the other reads, references nested inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_cross_between_languages() {
    assert_eq!(
        polyglot(&node(2.0), &["objects"]).await,
        "rescaled t2 [2.0, 4.0]\n"
    );
}

/// `fabric run` reads the job's components from the manifest's
/// `[components]` (a Python file built on the way), and on a cluster of
/// real processes the Python actor runs on the worker that has the
/// resource it asks for: the worker fetches both components.
#[test]
fn a_cross_language_job_runs_from_the_cli_and_across_processes() {
    let py = std::path::Path::new(REPO_ROOT).join("tests/programs/python/polyglot.py");
    let dir = crate::support::unique_temp_path("polyglot");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("job.toml");
    std::fs::write(
        &manifest,
        format!(
            "[components]\npy = {:?}\nrust = {:?}\n",
            py.display().to_string(),
            programs::POLYGLOT
        ),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fabric"))
        .env("XDG_CACHE_HOME", crate::support::cache_dir())
        .args([
            "run",
            "--manifest",
            manifest,
            programs::POLYGLOT,
            "--",
            "calls",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("score 20\npoked total 7\n"), "{stdout}");

    let mut c = crate::support::procs::ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "2", "--num-gpus", "0"],
    );
    c.add(&["--num-cpus", "2", "--num-gpus", "0", "--resources", "py=2"]);
    let out = c.fabric(&[
        "submit",
        "--address",
        c.head_address(),
        "--manifest",
        manifest,
        programs::POLYGLOT,
        "--",
        "calls",
        "py",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "features t1 mean 3 count 3\nscore 20\npoked total 7\nactor language python\n\
         actor on the driver's node false\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
