//! A cluster of real `fabric` processes on 127.0.0.1: a head with 2 CPUs,
//! a worker with 2 CPUs and a GPU, a worker with 2 CPUs and `ssd=1`. Jobs go
//! in with `fabric submit`; each checks where its work ran.

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::procs::ProcCluster;
use crate::support::programs;

fn three_nodes() -> ProcCluster {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "2", "--num-gpus", "0"],
    );
    c.add(&["--num-cpus", "2", "--num-gpus", "1"]);
    c.add(&["--num-cpus", "2", "--num-gpus", "0", "--resources", "ssd=1"]);
    c
}

fn ok(out: (String, String, bool)) -> String {
    assert!(
        out.2,
        "the job failed:\nstdout:\n{}\nstderr:\n{}",
        out.0, out.1
    );
    out.0
}

fn nodes_that_ran(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("node "))
        .filter(|l| !l.ends_with(" ran 0"))
        .map(|l| l.split_once(" ran ").unwrap().0.to_string())
        .collect()
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Waits until a job submitted in the background says it submitted its work.
fn wait_until_started(lines: &Lines) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("submitted"))
    {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a finished background job printed, once the reader thread has
/// drained the pipe (up to its `node ... ran` lines).
fn output_of(lines: &Lines) -> String {
    output_through(lines, "node ")
}

/// What a finished background job printed, once the reader thread has
/// drained the pipe up to a line starting with `last`.
fn output_through(lines: &Lines, last: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines.lock().unwrap().iter().any(|l| l.starts_with(last)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    lines.lock().unwrap().join("\n")
}

/// Runs `scenario <worker 1's id>` on a [`chaos_cluster`], kills worker 1
/// as soon as the job says it submitted its work, and waits for the job to
/// succeed. Returns the cluster, the killed worker's id, and what the job
/// printed through its line starting with `last`.
fn job_across_a_worker_kill(scenario: &str, last: &str) -> (ProcCluster, String, String) {
    let mut c = chaos_cluster();
    let victim = c.nodes[1].id.clone();
    let (mut job, lines) = c.submit_in_background(programs::CLUSTER, &[scenario, &victim]);
    wait_until_started(&lines);
    c.kill(1);
    assert!(
        job.wait().unwrap().success(),
        "the job failed; head log:\n{}",
        c.log(0)
    );
    let out = output_through(&lines, last);
    (c, victim, out)
}

/// A head with 1 CPU and a worker (index 1) with 2.
fn chaos_cluster() -> ProcCluster {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "1", "--num-gpus", "0"],
    );
    c.add(&["--num-cpus", "2", "--num-gpus", "0"]);
    c.wait_for_alive(2);
    c
}

/// [`chaos_cluster`] running the `survive-kill` scenario with `args`, started.
fn chaos_job(args: &[&str]) -> (ProcCluster, Child, Lines) {
    let c = chaos_cluster();
    let mut all = vec!["survive-kill"];
    all.extend_from_slice(args);
    let (job, lines) = c.submit_in_background(programs::CLUSTER, &all);
    wait_until_started(&lines);
    (c, job, lines)
}

/// One cluster for the checks that need no restarts (process starts are slow).
#[test]
fn work_lands_where_it_should_across_processes() {
    let c = three_nodes();
    let (head, gpu, ssd) = (
        c.nodes[0].id.clone(),
        c.nodes[1].id.clone(),
        c.nodes[2].id.clone(),
    );

    // Placement groups: each strategy puts bundles where it says, work in a
    // bundle runs where the bundle is, a strict spread wider than the
    // cluster waits, and a strict pack no node can hold fails at once.
    let out = ok(c.submit(programs::CLUSTER, &["groups-across"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "pack on 1 node",
            "strict pack on 1 node",
            "strict spread on 3 nodes, work where its bundle is true",
            "spread on 3 nodes",
            "4 strict spread bundles on 3 nodes wait true",
            "state Pending",
            "resources infeasible: STRICT_PACK: no node can ever hold all 2 bundles {CPU: 3}: CPU: 3 (node has 2)",
        ],
        "{out}"
    );

    // A 1,000-task fan-out runs on all three nodes.
    let out = ok(c.submit(programs::CLUSTER, &["fan-out", "1000"]));
    assert!(out.starts_with("tasks 1000\n"), "{out}");
    let mut ran = nodes_that_ran(&out);
    ran.sort();
    let mut all = vec![head.clone(), gpu.clone(), ssd.clone()];
    all.sort();
    assert_eq!(ran, all, "{out}");

    // The GPU task lands on the GPU node, the ssd task on the ssd node.
    assert_eq!(
        ok(c.submit(programs::CLUSTER, &["gpu"])),
        format!("gpu task on {gpu} with [0]\n")
    );
    assert_eq!(
        ok(c.submit(programs::CLUSTER, &["ssd"])),
        format!("ssd task on {ssd}\n")
    );

    // An object put on node A (the driver's) is read by a task on node C.
    let out = ok(c.submit(programs::CLUSTER, &["object-across", &ssd]));
    assert_eq!(
        out,
        format!("put on {head} read on {ssd}: 3145728 bytes, sum 9437184\n")
    );

    // An actor on node B is called from node C.
    let out = ok(c.submit(programs::CLUSTER, &["actor-across", &gpu, &ssd]));
    assert_eq!(
        out,
        format!("task on {ssd} called actor on {gpu}: 5 then 6\n")
    );

    // An actor on node C lives while a handle to it does (inside an object
    // read on B, held by an actor on B) and stops with the last one.
    let out = ok(c.submit(programs::CLUSTER, &["handle-lifetime", &ssd, &gpu]));
    assert_eq!(out, crate::cluster::HANDLE_LIFETIME);

    // A concurrent actor on node B interleaves its calls.
    let out = ok(c.submit(programs::CLUSTER, &["concurrent", &gpu]));
    assert_eq!(out, crate::cluster::CONCURRENT);

    // An actor pool, and a queue on node C that a task on B takes from.
    let out = ok(c.submit(programs::CLUSTER, &["pool-queue", &ssd, &gpu]));
    assert_eq!(out, crate::cluster::POOL_QUEUE);

    // Every collective among members on the three nodes.
    let args = ["collectives", &head, &gpu, &ssd];
    let out = ok(c.submit(programs::CLUSTER, &args));
    assert_eq!(out, crate::cluster::COLLECTIVES);

    // A named actor is found from another node.
    let out = ok(c.submit(programs::CLUSTER, &["named-across", &gpu, &ssd]));
    assert_eq!(
        out,
        format!("task on {ssd} found the named actor on {gpu}: 7\n")
    );

    // Each worker fetched the job's component once, for all those jobs.
    for i in 1..3 {
        let fetches = c.log(i).matches("fetched a component").count();
        assert_eq!(
            fetches,
            1,
            "node {i} fetched the component {fetches} times:\n{}",
            c.log(i)
        );
    }

    // The actors are in the head's directory, shown by `fabric status`.
    let status = c.status();
    assert!(
        status.contains("Tally") && status.contains("shared-tally"),
        "{status}"
    );
    assert!(status.contains("SUCCEEDED"), "{status}");
}

#[test]
fn a_node_that_joins_mid_job_receives_work() {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "1", "--num-gpus", "0"],
    );
    c.add(&["--num-cpus", "1", "--num-gpus", "0"]);
    let (mut job, lines) = c.submit_in_background(programs::CLUSTER, &["elastic", "30", "500"]);
    wait_until_started(&lines);
    let newcomer = c.add(&["--num-cpus", "2", "--num-gpus", "0"]);
    assert!(job.wait().unwrap().success());
    let out = output_of(&lines);
    assert!(
        nodes_that_ran(&out).contains(&c.nodes[newcomer].id),
        "the node that joined ran nothing:\n{out}"
    );
}

#[test]
fn a_killed_node_is_detected_and_shown_by_status() {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "1", "--num-gpus", "0"],
    );
    c.add(&["--num-cpus", "1", "--num-gpus", "0"]);
    let victim = c.nodes[1].id[..8].to_string();
    c.kill(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = c.status();
        let row = status
            .lines()
            .find(|l| l.starts_with(&victim))
            .unwrap_or_default()
            .to_string();
        if row.contains("DEAD") {
            assert!(status.contains("1 of 2 nodes alive"), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed node is not shown dead:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cluster still runs jobs.
    let out = ok(c.submit(programs::CLUSTER, &["fan-out", "20"]));
    assert!(out.starts_with("tasks 20\n"), "{out}");
}

#[test]
fn cluster_commands_fail_clearly_without_a_head() {
    let c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "1", "--num-gpus", "0"],
    );
    // A port nothing listens on (the head's, after it is gone, is racy).
    let out = c.fabric(&["status", "--address", "127.0.0.1:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot reach the head at 127.0.0.1:1") && err.contains("hint:"),
        "{err}"
    );
    let out = c.fabric(&["submit", "--address", "127.0.0.1:1", programs::CLUSTER]);
    assert_eq!(out.status.code(), Some(2));
    let join = c.join_file();
    let out = c.fabric(&[
        "start",
        "--address",
        "127.0.0.1:1",
        "--join-file",
        &join,
        "--block",
        "--data-dir",
        c.dir.join("x").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot join the cluster"), "{err}");
}

/// Auth across real processes: the head made an admin token on its first
/// start; tenants get tokens from `fabric tenant add`; every client call
/// needs one; a tenant sees only its own jobs and logs; a worker needs the
/// cluster's join file.
#[test]
fn tenants_need_tokens_and_see_only_their_own_jobs() {
    let c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "2", "--num-gpus", "0"],
    );
    let security = c.dir.join("node0/security");
    use std::os::unix::fs::PermissionsExt;
    for secret in ["admin.token", "cluster.join", "tokens.toml"] {
        let mode = std::fs::metadata(security.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret} must be private");
    }
    let alice = c.add_tenant("alice", &[]);
    let mallory = c.add_tenant("mallory", &["--cpus", "1", "--jobs", "2"]);

    let submit_as = |token: &str, args: &[&str]| {
        let mut all = vec![
            "submit",
            "--address",
            c.head_address(),
            programs::CLUSTER,
            "--",
        ];
        all.extend_from_slice(args);
        c.fabric_as(token, &all)
    };
    let out = submit_as(&alice, &["fan-out", "20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tasks 20\n"));
    let started = String::from_utf8_lossy(&out.stderr).into_owned();
    let job = started
        .split_whitespace()
        .nth(1)
        .expect("`job <id> started` on stderr")
        .to_string();

    // Alice reads her job's logs; mallory gets not-found, as for no job.
    let logs = c.fabric_as(&alice, &["logs", &job, "--address", c.head_address()]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("tasks 20"));
    let stolen = c.fabric_as(&mallory, &["logs", &job, "--address", c.head_address()]);
    let err = String::from_utf8_lossy(&stolen.stderr);
    assert!(
        !stolen.status.success() && err.contains("no such job"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&stolen.stdout).contains("tasks 20"));
    let status = c.fabric_as(&mallory, &["status", "--address", c.head_address()]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains(&job));

    // Usage: mallory sees only herself, the admin sees everyone.
    let usage = |token: &str| {
        let out = c.fabric_as(token, &["tenant", "usage", "--address", c.head_address()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::thread::sleep(Duration::from_millis(300));
    let mine = usage(&mallory);
    assert!(
        mine.contains("mallory") && !mine.contains("alice"),
        "{mine}"
    );
    assert!(mine.contains("cpus=1,jobs=2"), "{mine}");
    let all = usage(&c.admin_token());
    assert!(all.contains("alice") && all.contains("mallory"), "{all}");

    assert_refused_without_rights(&c, &security, &mallory);
}

/// No token, a wrong token, a tenant acting as admin, a worker without the
/// join file: all refused, each with its reason.
fn assert_refused_without_rights(c: &ProcCluster, security: &std::path::Path, mallory: &str) {
    // No token, a wrong token, a tenant acting as admin: all refused.
    let no_token = std::process::Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args([
            "status",
            "--address",
            c.head_address(),
            "--data-dir",
            "/nonexistent",
        ])
        .env_remove("FABRIC_TOKEN")
        .env("FABRIC_CA_CERT", security.join("ca.crt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&no_token.stderr);
    assert!(
        !no_token.status.success() && err.contains("no token"),
        "{err}"
    );
    let wrong = c.fabric_as("fadm_wrong", &["status", "--address", c.head_address()]);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("not valid for this cluster") && err.contains("hint:"),
        "{err}"
    );
    let escalate = c.fabric_as(
        mallory,
        &["tenant", "add", "mallory2", "--address", c.head_address()],
    );
    let err = String::from_utf8_lossy(&escalate.stderr);
    assert!(err.contains("only the admin token"), "{err}");

    // A worker without the join file cannot join.
    let out = c.fabric(&[
        "start",
        "--address",
        c.head_address(),
        "--block",
        "--data-dir",
        c.dir.join("stranger").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cluster join file"),
        "{err}"
    );
}

/// Waits until `fabric status` shows node `id` holding CPUs for tasks.
fn wait_until_running_tasks(c: &ProcCluster, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(50);
    let busy = |status: &str| {
        status
            .lines()
            .filter(|l| l.starts_with(&id[..8]))
            .filter_map(|l| l.split_whitespace().nth(3))
            .any(|cpu| !cpu.starts_with("0/"))
    };
    while !busy(&c.status()) {
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} never ran a task:\n{}",
            c.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Chaos: `kill -9` of a worker in the middle of a 2,000-task job. The tasks
/// it was running are retried on the nodes that are left, and every one of
/// the 1,000 results is right.
#[test]
fn a_worker_killed_mid_job_loses_no_results() {
    // Long enough (40 s of work on the head alone) that the job still runs
    // once the worker has fetched and compiled the component, which on a
    // loaded CI machine took longer than a 1,000-task job lasted.
    let (mut c, mut job, lines) = chaos_job(&["2000", "20"]);
    let victim = c.nodes[1].id.clone();
    // Let the worker take some of the work, then kill it.
    wait_until_running_tasks(&c, &victim);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job ended before the kill"
    );
    c.kill(1);
    assert!(
        job.wait().unwrap().success(),
        "the job failed; head log:\n{}",
        c.log(0)
    );
    let out = output_of(&lines);
    assert!(out.contains("correct 2000 of 2000"), "{out}");
    // The killed worker did run some tasks before it died (so the kill
    // really hit the job), and the rest ran on the head.
    assert!(nodes_that_ran(&out).contains(&victim), "{out}");
}

/// Chaos: a worker killed and replaced five times while a job runs. Every
/// kill loses the tasks running there; they are retried (up to 10 times
/// each, as the job asks) on whatever nodes are alive, and the job
/// completes with every result right.
#[test]
fn a_job_survives_a_worker_killed_and_restarted_five_times() {
    let (mut c, mut job, lines) = chaos_job(&["1000", "40", "10"]);
    let mut worker = 1;
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(1000));
        // Every kill lands while the job runs.
        assert!(
            job.try_wait().unwrap().is_none(),
            "the job ended before kill {round}"
        );
        worker = c.replace(worker, &["--num-cpus", "2", "--num-gpus", "0"]);
    }
    assert!(
        job.wait().unwrap().success(),
        "the job failed; head log:\n{}",
        c.log(0)
    );
    let out = output_of(&lines);
    assert!(out.contains("correct 1000 of 1000"), "{out}");
}

/// Chaos: `kill -9` of the node hosting an actor while a driver on the head
/// calls it. The actor (max_restarts 1, max_task_retries 3) restarts on the
/// head from its last checkpoint: every call succeeds, and the count goes on
/// from where it was. The documented semantics allow one thing only: a call
/// whose checkpoint reached the creating node before its node died, but not
/// its result, runs again, so the count may skip one at the move.
#[test]
fn the_actor_of_a_killed_node_restarts_from_its_checkpoint() {
    let (c, victim, out) = job_across_a_worker_kill("actor-restart", "done");
    let calls: Vec<(String, u64, u64)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("call "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    let head = c.nodes[0].id.clone();
    let first_moved = calls
        .iter()
        .position(|(node, _, _)| *node != victim)
        .unwrap_or_else(|| panic!("the actor never left the killed node:\n{out}"));
    assert!(first_moved > 20, "the kill came before call 20:\n{out}");
    // Before the kill: the first life, on the victim; after: the second, on
    // the head (the only node left).
    assert!(
        calls[..first_moved]
            .iter()
            .all(|(n, _, l)| *n == victim && *l == 1),
        "{out}"
    );
    assert!(
        calls[first_moved..]
            .iter()
            .all(|(n, _, l)| *n == head && *l == 2),
        "{out}"
    );
    assert!(calls.len() - first_moved >= 20, "{out}");
    // The count never restarts: +1 per call, except at most one +2 at the move.
    assert_eq!(calls[0].1, 1, "{out}");
    for (i, w) in calls.windows(2).enumerate() {
        let step = w[1].1 - w[0].1;
        let at_move = i + 1 == first_moved;
        assert!(
            step == 1 || (at_move && step == 2),
            "call {} stepped by {step}:\n{out}",
            i + 1
        );
    }
}

/// Chaos: `kill -9` of the node of one member of a collective group while
/// the two others (on the head) wait for it in an allreduce. They fail with
/// `actor-died` within the node timeout (1 s) plus a second of the kill, and
/// so does the next collective they try; the job itself goes on and ends.
#[test]
fn a_collective_fails_on_every_member_when_a_members_node_is_killed() {
    collective_across_a_lost_node(|c| c.kill(1));
}

/// As above, but the member's node hangs (SIGSTOP) instead: its
/// connections stay open, so only the head's verdict on its missed
/// heartbeats can tell the others, still within the node timeout plus a
/// second.
#[test]
fn a_collective_fails_on_every_member_when_a_members_node_hangs() {
    collective_across_a_lost_node(|c| c.freeze(1));
}

/// Runs `collective-kill` with its last member on worker 1, which `lose`
/// takes away once the others wait for it in an allreduce.
fn collective_across_a_lost_node(lose: impl FnOnce(&mut ProcCluster)) {
    let mut c = chaos_cluster();
    let (head, victim) = (c.nodes[0].id.clone(), c.nodes[1].id.clone());
    let args = ["collective-kill", victim.as_str(), head.as_str()];
    let (mut job, lines) = c.submit_in_background(programs::CLUSTER, &args);
    wait_until_started(&lines);
    let lost = Instant::now();
    lose(&mut c);
    let failed = |l: &Vec<String>| l.iter().any(|l| l.starts_with("the others"));
    while !failed(&lines.lock().unwrap()) {
        assert!(
            lost.elapsed() < Duration::from_secs(30),
            "the others never failed; head log:\n{}",
            c.log(0)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = lost.elapsed();
    assert!(job.wait().unwrap().success(), "head log:\n{}", c.log(0));
    let out = output_through(&lines, "the stalled member");
    assert_eq!(
        out,
        format!(
            "{}the stalled member: ActorDied",
            crate::cluster::COLLECTIVE_KILLED
        )
    );
    assert!(
        took < Duration::from_secs(2),
        "the others failed {took:?} after their member's node was lost"
    );
}

/// Chaos: `kill -9` of the node holding the only copies of two large task
/// results (b made from a) and of a `put` object. Reading b rebuilds a and
/// then b on the node that is left, from their lineage, with the right
/// bytes; the `put` object cannot be rebuilt and reads as `ObjectLost`.
#[test]
fn results_lost_with_their_node_are_rebuilt_from_lineage() {
    let (c, victim, out) = job_across_a_worker_kill("lost-node", "put object");
    let head = c.nodes[0].id.clone();
    assert!(
        out.contains(&format!(
            "first a on {victim}, b on {victim}, 1048576 bytes"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("then a on {head}, b on {head}, right true")),
        "{out}"
    );
    assert!(out.contains("put object: lost: "), "{out}");
}

/// Chaos: `kill -9` of the node holding both values of a task with
/// `num_returns = 2`. Reading them runs the task again on the node that is
/// left (once or twice: one value rebuilt, then the other), each value
/// right and its own object.
#[test]
fn several_results_lost_with_their_node_are_rebuilt() {
    let (c, victim, out) = job_across_a_worker_kill("lost-returns", "then x");
    let head = c.nodes[0].id.clone();
    assert!(
        out.contains(&format!("first x on {victim}, y on {victim}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "then x on {head} right true, y on {head} right true"
        )),
        "{out}\nhead log:\n{}",
        c.log(0)
    );
}

/// Chaos: `kill -9` of the node running two streaming generators. The one
/// with retries runs again on the node that is left and its caller gets
/// all 40 items once each, in order (the first from the victim, the rest
/// from the head); the one without retries ends, after the items it
/// delivered, with a system failure.
#[test]
fn a_generator_whose_node_dies_streams_on_or_fails_at_the_next_item() {
    let (c, victim, out) = job_across_a_worker_kill("stream-kill", "not retried");
    let head = c.nodes[0].id.clone();
    assert!(
        out.contains(&format!(
            "retried: 40 items, in order true, from [\"{victim}\", \"{head}\"], end"
        )),
        "{out}\nhead log:\n{}",
        c.log(0)
    );
    assert!(
        out.contains(&format!(
            "not retried: some items true, in order true, from [\"{victim}\"], then System failure"
        )),
        "{out}"
    );
}

/// Chaos: `kill -9` of the head while a call runs on a detached named actor
/// on a worker, then the head started again on its data directory. The
/// worker keeps running (the call completes there), rejoins the restarted
/// head, and the actor still answers by name with every update in it; the
/// job whose driver died with the head is recorded as failed.
#[test]
fn a_detached_named_actor_answers_after_the_head_is_killed_and_restarted() {
    let head_flags = ["--num-cpus", "1", "--num-gpus", "0"];
    let mut c = chaos_cluster();
    let worker = c.nodes[1].id.clone();
    let created = ok(c.submit(programs::CLUSTER, &["detached-create", &worker]));
    assert!(created.contains("created 1"), "{created}");
    // A tenant made before the crash, with a quota.
    let out = c.fabric(&[
        "tenant",
        "add",
        "carol",
        "--jobs",
        "3",
        "--address",
        c.head_address(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let carol = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .map(|l| l.trim().to_string())
        .expect("the token line");
    let (mut slow, lines) = c.submit_in_background(programs::CLUSTER, &["detached-slow"]);
    wait_until_started(&lines);
    // The slow call (3 s) is running on the worker when the head dies.
    std::thread::sleep(Duration::from_millis(500));
    c.restart_head(&head_flags, 2);
    assert!(
        !slow.wait().unwrap().success(),
        "its driver died with the head"
    );
    let used = ok(c.submit(programs::CLUSTER, &["detached-use"]));
    // 1 (created) + 10 (the call that ran through the head's restart) + 1.
    assert!(
        used.contains("still there 12"),
        "{used}\nhead log:\n{}",
        c.log(0)
    );
    let status = c.status();
    assert!(
        status.contains("the head stopped while the job ran"),
        "{status}"
    );
    // The tenant, its token and its quota survived too.
    let out = c.fabric_as(&carol, &["tenant", "usage", "--address", c.head_address()]);
    let usage = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && usage.contains("carol"),
        "{usage}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Elasticity: `fabric drain` of a worker in the middle of a job whose
/// results are large (each stays on the node that made it). The drained node
/// takes no new work, finishes what runs, hands the results it keeps to
/// their owner, leaves, and its process exits by itself; the job completes
/// with every result right, including those made on the drained node.
#[test]
fn a_drained_worker_finishes_its_work_hands_over_its_results_and_exits() {
    let mut c = chaos_cluster();
    c.add(&["--num-cpus", "2", "--num-gpus", "0"]);
    let drained = c.nodes[1].id.clone();
    let (mut job, lines) = c.submit_in_background(programs::CLUSTER, &["big-results", "600", "40"]);
    wait_until_started(&lines);
    // The head and unknown nodes cannot be drained: clear errors.
    for (node, why) in [
        (c.nodes[0].id.as_str(), "the head cannot be drained"),
        (
            "ffffffffff",
            "no live node has an id starting with `ffffffffff`",
        ),
    ] {
        let out = c.fabric(&["drain", node, "--address", c.head_address()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{err}");
    }
    std::thread::sleep(Duration::from_millis(1000));
    let out = c.fabric(&[
        "drain",
        &drained[..8],
        "--address",
        c.head_address(),
        "--timeout",
        "60",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("drained and left the cluster"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its process exits on its own, cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = c.nodes[1].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the drained node did not exit; its log:\n{}",
            c.log(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job ended before the drain finished"
    );
    assert!(
        job.wait().unwrap().success(),
        "the job failed; head log:\n{}",
        c.log(0)
    );
    let out = output_of(&lines);
    assert!(out.contains("correct 600 of 600"), "{out}");
    assert!(
        nodes_that_ran(&out).contains(&drained),
        "the drained node {drained} ran nothing:\n{out}\nits log:\n{}",
        c.log(1)
    );
    // It handed over the results it kept, and nothing it ran was lost (no
    // task had to run again).
    let log = without_colors(&c.log(1));
    let moved: usize = log
        .split("drained: leaving the cluster moved=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drain summary in its log:\n{log}"));
    assert!(moved > 0, "{log}");
    assert!(
        !without_colors(&c.log(0)).contains("retrying task"),
        "{}",
        c.log(0)
    );
}

/// A log without its terminal color codes.
fn without_colors(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// A node holding a placement group's bundle is killed: the head places the
/// bundle again on the other node that can hold it, and the actor placed
/// in the bundle restarts there (from its checkpoint).
#[test]
fn a_killed_nodes_bundle_is_reserved_again_and_its_actor_restarts_there() {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "1", "--num-gpus", "0"],
    );
    let spot = [
        "--num-cpus",
        "2",
        "--num-gpus",
        "0",
        "--resources",
        "spot=1",
    ];
    c.add(&spot);
    c.add(&spot);
    c.wait_for_alive(3);
    let (mut job, lines) = c.submit_in_background(programs::CLUSTER, &["group-kill"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("bundle on ").map(str::to_string));
        if let Some(node) = found {
            break node;
        }
        assert!(Instant::now() < deadline, "the group was not placed");
        std::thread::sleep(Duration::from_millis(20));
    };
    let victim = c
        .nodes
        .iter()
        .position(|n| n.id == holder)
        .unwrap_or_else(|| panic!("the bundle is on {holder}, no node of the cluster"));
    assert_ne!(victim, 0, "the head has no `spot`");
    c.kill(victim);
    assert!(
        job.wait().unwrap().success(),
        "the job failed; head log:\n{}",
        c.log(0)
    );
    let out = output_through(&lines, "done");
    assert!(out.contains("actor in its bundle true"), "{out}");
    assert!(
        out.contains("moved to the bundle's new node true in life 2"),
        "{out}"
    );
}

/// A detached named placement group across the head and a worker; the head
/// is killed and started again on its data directory: it still knows the
/// group (its bundle on the old head's node is placed again) and the group
/// is found by name and runs work.
#[test]
fn a_restarted_head_keeps_its_placement_groups() {
    let head_flags = ["--num-cpus", "1", "--num-gpus", "0"];
    let mut c = chaos_cluster();
    let kept = ok(c.submit(programs::CLUSTER, &["group-keep"]));
    assert!(kept.contains("kept on 2 nodes"), "{kept}");
    c.restart_head(&head_flags, 2);
    let found = ok(c.submit(programs::CLUSTER, &["group-find"]));
    assert!(
        found.contains("found Created on 2 nodes, work in its bundle true"),
        "{found}\nhead log:\n{}",
        c.log(0)
    );
}
