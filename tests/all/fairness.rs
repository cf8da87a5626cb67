//! Fair admission, with real `fabric` processes: tenants' guaranteed shares
//! of a node's instance pool, quotas and job limits on live instances and
//! actors (detached ones included), and deep task trees that keep the live
//! instances near the tree's depth.

use std::time::{Duration, Instant};

use crate::support::procs::ProcCluster;
use crate::support::programs;

const BIN: &str = env!("CARGO_BIN_EXE_fabric");

/// Submits the breaches guest with `args` as `token`: (stdout, stderr, ok).
fn submit(c: &ProcCluster, token: &str, extra: &[&str], args: &[&str]) -> (String, String, bool) {
    let mut all = vec!["submit", "--address", c.head_address()];
    all.extend_from_slice(extra);
    all.extend_from_slice(&[programs::BREACHES, "--"]);
    all.extend_from_slice(args);
    let out = c.fabric_as(token, &all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// `tenant`'s (live instances, live actors) in `fabric tenant usage`.
fn live_of(c: &ProcCluster, tenant: &str) -> Option<(u64, u64)> {
    let out = c.fabric(&["tenant", "usage", "--address", c.head_address()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tenant))?;
    // The last three columns: INST-NOW, ACTORS-NOW, QUOTA.
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f[f.len() - 3].parse().ok()?, f[f.len() - 2].parse().ok()?))
}

/// Waits until `fabric tenant usage` shows `want` for `tenant` (usage
/// reaches the head with heartbeats).
fn wait_for_live(c: &ProcCluster, tenant: &str, want: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while live_of(c, tenant) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "tenant {tenant} never showed {want:?} live (instances, actors): {:?}",
            live_of(c, tenant)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node config file `text`, in a fresh temporary file.
fn settings(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A node with 60 instance slots, 20 of them guaranteed to `victim`. The
/// flooder fills the rest with detached actors from jobs that ended, and
/// with a job that holds its driver; it is told `limit-exceeded
/// instance-share`, while the victim still starts its actors and tasks.
#[test]
fn a_tenant_within_its_guarantee_gets_instances_while_another_floods_the_pool() {
    let config = settings(
        "shares",
        "[instances]\nmax = 60\nguaranteed = { victim = 20 }\n",
    );
    let c = ProcCluster::start(
        BIN,
        &["--num-cpus", "2", "--num-gpus", "0", "--config", &config],
    );
    let flooder = c.add_tenant("flooder", &[]);
    let victim = c.add_tenant("victim", &[]);

    // 40 slots nobody is guaranteed: 30 detached actors, then 9 more (the
    // second job's driver holds the 40th while it runs).
    let (out, err, ok) = submit(&c, &flooder, &[], &["actor-flood", "30", "detached"]);
    assert!(ok, "{err}");
    assert_eq!(out, "created 30 actors, 30 answered, then: nothing\n");
    let (out, err, ok) = submit(&c, &flooder, &[], &["actor-flood", "1000", "detached"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "created 9 actors, 9 answered, then: limit-exceeded instance-share 0\n"
    );
    // The detached actors outlive their jobs, and count until killed.
    wait_for_live(&c, "flooder", (39, 39));
    let status = c.status();
    // (The one refused a slot was registered first, then recorded dead.)
    let alive: Vec<&str> = status
        .lines()
        .filter(|l| l.contains(" Idle ") && l.contains("ALIVE"))
        .collect();
    assert_eq!(alive.len(), 39, "{status}");
    assert!(
        alive
            .iter()
            .all(|l| l.contains(" flooder ") && l.contains("detached")),
        "{status}"
    );
    // A third job holds the last shared slot with its driver; a fourth
    // cannot start at all.
    let mut holder = c
        .command_as(&flooder)
        .args(["submit", "--address", c.head_address(), programs::BREACHES])
        .args(["--", "actor-flood", "1000", "-", "60000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_live(&c, "flooder", (40, 39));
    let (_, err, ok) = submit(&c, &flooder, &[], &["actor-flood", "10"]);
    assert!(!ok && err.contains("instance-share"), "{err}");

    // The victim, within its share of 20: 15 actors, its driver, and its
    // tasks (two at a time on two CPUs).
    let (out, err, ok) = submit(&c, &victim, &[], &["victim", "15", "200"]);
    assert!(ok, "the victim failed: {err}");
    assert_eq!(
        out,
        "victim: 15 actors answered 105, 200 tasks summed 2646700\n"
    );
    println!("{}", c.status());
    let _ = holder.kill();
    let _ = holder.wait();
}

/// Quotas on live actors and instances hold across nodes: actors a tenant
/// holds on a worker count on the head too (as of the last heartbeat), and
/// a job's `live-actors` limit holds on its node.
#[test]
fn quotas_and_job_limits_cap_live_actors_and_instances_across_the_cluster() {
    let mut c = ProcCluster::start(BIN, &["--num-cpus", "1", "--num-gpus", "0"]);
    c.add(&["--num-cpus", "1", "--num-gpus", "0"]);
    c.wait_for_alive(2);
    let capped = c.add_tenant("capped", &["--actors", "6"]);
    let thin = c.add_tenant("thin", &["--instances", "3"]);

    // Four detached actors spread over both nodes, then a job on the head.
    let (out, err, ok) = submit(&c, &capped, &[], &["actor-flood", "4", "detached,spread"]);
    assert!(ok, "{err}");
    assert_eq!(out, "created 4 actors, 4 answered, then: nothing\n");
    wait_for_live(&c, "capped", (4, 4));
    // One more heartbeat round, so each node hears what the other holds.
    std::thread::sleep(Duration::from_millis(1500));
    let (out, err, ok) = submit(&c, &capped, &[], &["actor-flood", "10"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "created 2 actors, 2 answered, then: limit-exceeded actors-quota 6\n"
    );

    // Three live instances: the driver and two actors.
    let (out, err, ok) = submit(&c, &thin, &[], &["actor-flood", "10"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "created 2 actors, 2 answered, then: limit-exceeded instances-quota 3\n"
    );

    // A job's own limit, from its manifest.
    let manifest = settings("live-actors", "[limits]\nlive-actors = 3\n");
    let (out, err, ok) = submit(
        &c,
        &c.admin_token(),
        &["--manifest", &manifest],
        &["actor-flood", "10"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "created 3 actors, 3 answered, then: limit-exceeded live-actors 3\n"
    );
}

/// `(live, slots, peak)` of the head in `fabric status` (`12/60 (58)`).
fn instances_of_head(status: &str) -> Option<(u64, u64, u64)> {
    let line = status.lines().find(|l| l.ends_with("(head)"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    f.windows(2).find_map(|w| {
        let (live, slots) = w[0].split_once('/')?;
        let peak = w[1].strip_prefix('(')?.strip_suffix(')')?;
        Some((live.parse().ok()?, slots.parse().ok()?, peak.parse().ok()?))
    })
}

/// fib(24) as one task per call, 150,049 tasks in a tree 24 levels deep
/// and 46,368 leaves wide, on a node with two CPUs: blocked parents hold
/// instances, so the node runs the deepest work first and the live
/// instances stay within CPUs x (depth + 2), not the tree's width. (The
/// same holds at fib(27), 635,621 tasks, measured on a release build in
/// benches/README.md; the debug build here takes minutes for that one.)
#[test]
fn fib_24_runs_on_two_cpus_with_live_instances_near_the_tree_depth() {
    let c = ProcCluster::start(BIN, &["--num-cpus", "2", "--num-gpus", "0"]);
    let started = Instant::now();
    let (out, err, ok) = c.submit(programs::TASKS, &["fib", "24"]);
    assert!(ok, "{err}");
    assert_eq!(out, "fib(24) = 46368\n");
    // The peak reaches the head with a heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (live, slots, peak) = loop {
        let status = c.status();
        match instances_of_head(&status) {
            Some((0, slots, peak)) if peak > 0 => break (0, slots, peak),
            _ => {
                assert!(Instant::now() < deadline, "{status}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    println!(
        "fib(24) on 2 CPUs: {:.1} s, peak live instances {peak} (of {slots} slots; bound 2 x (24 + 2) = 52), {live} live after",
        started.elapsed().as_secs_f64()
    );
    assert!(peak <= 2 * (24 + 2), "peak live instances {peak}");
}
