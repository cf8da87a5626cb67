//! Breaches a tenant could trigger before, each beside a well-behaved job
//! of another tenant (as in `hostile.rs`): shapes of nested objects that
//! took the node down, costs charged to no one, forged headers, errors that
//! lost their kind. The attacks are tests/programs/breaches.

use fabric_host::quota::Quota;

use crate::hostile::{arena, assert_victim_ok, finish, one_line, start_program, start_victim};
use crate::support::programs;

/// Runs breach `args` as mallory under `manifest` beside alice's victim job
/// on `node`; returns what the attack printed (its driver must succeed).
async fn breach(node: &fabric_host::Node, manifest: &str, args: &[&str]) -> String {
    let victim = start_victim(node, 1500).await;
    let attack = finish(start_program(node, programs::BREACHES, "mallory", manifest, args).await)
        .await
        .ok();
    assert_victim_ok(&finish(victim).await);
    attack
}

/// The arena, where mallory may hold `bytes` of objects.
fn arena_with_quota(bytes: u64) -> fabric_host::Node {
    let node = arena();
    node.set_quota(
        "mallory",
        Quota {
            object_store: Some(bytes),
            ..Quota::default()
        },
    );
    node
}

/// Room for a long attack: a million host calls take a while in a debug build.
const LONG: &str = r#"
[limits]
memory = "256 MiB"
cpu-time = "600s"
wall-time = "600s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_a_million_nested_objects_is_freed_without_taking_the_node_down() {
    // Each object nests the one before and only the newest is held: freeing
    // it frees a million objects, one inside the other. That walk once
    // recursed and overflowed the node's stack.
    let node = arena();
    let out = breach(&node, LONG, &["nested-chain", "1000000"]).await;
    assert_eq!(
        out,
        "chain of 1000000: built\nchain of 1000000: freed, then put 7\n"
    );
    crate::support::assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_of_a_million_nested_objects_is_freed_without_taking_the_node_down() {
    // Holding a million handles at once takes a handle table that large.
    let manifest = format!("{LONG}pending-tasks = 1000000\n");
    let node = arena();
    let out = breach(&node, &manifest, &["nested-fan", "1000000"]).await;
    assert_eq!(
        out,
        "fan of 1000000: built\nfan of 1000000: freed, then put 7\n"
    );
    crate::support::assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_objects_cost_their_overhead_against_the_tenants_quota() {
    // Two million empty puts once took a node to 1.8 GiB, charged to no one.
    let node = arena_with_quota(64 << 20);
    let manifest = format!("{LONG}pending-tasks = 1000000\n");
    let out = breach(&node, &manifest, &["empty-puts"]).await;
    let line = one_line(&out, "stored ");
    assert!(
        line.ends_with("empty objects, then: limit-exceeded object-store-quota 67108864"),
        "{line}"
    );
    let stored: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let fit = (64 << 20) / fabric_host::object_store::OBJECT_OVERHEAD;
    assert!(stored <= fit && stored + 100 >= fit, "{stored} of {fit}");
    crate::support::assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objects_limit_caps_what_one_job_holds_on_a_node() {
    let node = arena();
    let manifest = format!("{LONG}objects = 1000\n");
    let out = breach(&node, &manifest, &["empty-puts"]).await;
    assert_eq!(
        one_line(&out, "stored "),
        "stored 1000 empty objects, then: limit-exceeded objects 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_bytes_takes_only_the_bin_header_of_its_data() {
    // A 300 MiB "header" was once stored as the object.
    let manifest = "[limits]\nmemory = \"1 GiB\"\nwall-time = \"60s\"\n";
    let out = breach(&arena(), manifest, &["put-bytes-header"]).await;
    for case in ["300 MiB header", "wrong length", "not bin"] {
        let line = one_line(&out, &format!("{case}: "));
        assert!(
            line.starts_with(&format!(
                "{case}: invalid-argument: put-bytes: the header must be the MessagePack `bin` header"
            )),
            "{line}"
        );
    }
    assert_eq!(
        one_line(&out, "bin 8 of 16: "),
        "bin 8 of 16: stored 18 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_passed_up_through_many_tasks_keeps_its_kind() {
    // Deep down the tree a submit meets the pending-tasks limit; each level
    // passes the error up with `?`. It once reached the driver as an
    // application error naming `descend` at every level.
    // The wall-time cap only stops a runaway: a slow CI machine once took
    // over 60 s, and the test is about the pending-tasks error.
    let manifest = "[limits]\npending-tasks = 20\nwall-time = \"300s\"\n";
    let out = breach(&arena(), manifest, &["error-chain", "14"]).await;
    assert_eq!(
        out,
        "driver got: limit-exceeded pending-tasks 20\nhops named: 0\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_argument_failed_says_so_and_names_the_arguments_task() {
    let out = breach(&arena(), "", &["failed-argument"]).await;
    assert_eq!(
        out,
        "double: invalid-argument: bad input \
         (task `double` did not run: its argument 0 is the result of task `double`, \
         which did not run either; first to fail: task `refuse`)\n"
    );
}

/// A node whose operator allows granting only `<base>/allowed`, and the
/// layout the link attacks use: a read-write area and a directory in it,
/// and a secret next to the allowed root.
fn link_arena(name: &str) -> (fabric_host::Node, std::path::PathBuf) {
    let base = crate::hostile::scratch(name);
    let allowed = base.join("allowed");
    std::fs::create_dir_all(allowed.join("rw/sub")).unwrap();
    std::fs::create_dir_all(base.join("secret")).unwrap();
    std::fs::write(allowed.join("rw/sub/file.txt"), "inside").unwrap();
    std::fs::write(base.join("secret/file.txt"), "SECRET").unwrap();
    let node = crate::support::node_with(fabric_host::NodeConfig {
        num_cpus: Some(2.0),
        policy: fabric_host::manifest::Policy {
            grant_dirs: vec![allowed],
            ..Default::default()
        },
        ..crate::support::test_config()
    });
    (node, base)
}

fn grant(host: &std::path::Path, guest: &str, mode: &str) -> String {
    format!(
        "[[capabilities.dir]]\nhost = {:?}\nguest = {guest:?}\nmode = {mode:?}\n",
        host.display().to_string()
    )
}

/// Runs the breaches driver as mallory; returns its result and output.
async fn run_as_mallory(
    node: &fabric_host::Node,
    manifest: &str,
    args: &[&str],
) -> crate::hostile::Job {
    finish(start_program(node, programs::BREACHES, "mallory", manifest, args).await).await
}

fn refused_for_a_link(job: &crate::hostile::Job) {
    match &job.outcome.result {
        Err(fabric_host::error::FabricError::InvalidArgument(m)) => {
            assert!(m.contains("goes through a symbolic link"), "{m}")
        }
        other => panic!(
            "expected the grant to be refused, got {other:?}: {}",
            job.stdout()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_inside_an_allowed_directory_is_not_a_way_out() {
    // The link sits inside the allowed root and points outside it. Granting
    // it once passed the text check and the grant read /etc/passwd.
    let (node, base) = link_arena("link-inside");
    let allowed = base.join("allowed");
    std::os::unix::fs::symlink("/etc", allowed.join("etc-link")).unwrap();
    let job = run_as_mallory(
        &node,
        &grant(&allowed.join("etc-link"), "/data", "ro"),
        &["read", "/data/passwd"],
    )
    .await;
    refused_for_a_link(&job);
    // Granting the root that holds the link: the link leads nowhere.
    let out = run_as_mallory(
        &node,
        &grant(&allowed, "/data", "ro"),
        &["read", "/data/etc-link/passwd", "/data/rw/sub/file.txt"],
    )
    .await
    .ok();
    assert!(
        one_line(&out, "/data/etc-link/passwd: ").contains("denied"),
        "{out}"
    );
    assert_eq!(
        one_line(&out, "/data/rw/sub/file.txt: "),
        "/data/rw/sub/file.txt: READ \"inside\""
    );
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_made_through_a_read_write_grant_cannot_be_granted_later() {
    let (node, base) = link_arena("link-made");
    let rw = base.join("allowed/rw");
    // A tenant with a read-write grant makes `up -> ../..` inside it ...
    let out = run_as_mallory(
        &node,
        &grant(&rw, "/rw", "rw"),
        &["make-link", "../..", "/rw/up"],
    )
    .await
    .ok();
    assert_eq!(out, "link: LINKED\n");
    assert!(rw.join("up").symlink_metadata().unwrap().is_symlink());
    // ... and a later job grants `<allowed>/rw/up`, whose text is inside
    // the policy but which leads out of it (to the secret).
    let job = run_as_mallory(
        &node,
        &grant(&rw.join("up"), "/data", "ro"),
        &["read", "/data/secret/file.txt"],
    )
    .await;
    refused_for_a_link(&job);
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_link_between_two_tasks_changes_nothing_for_the_job() {
    // One job grants `rw/sub` read-only and its parent read-write. Between
    // two tasks, a task swaps `sub` for a link to the secret: the second
    // read must still see the directory the job was granted.
    let (node, base) = link_arena("link-swap");
    let rw = base.join("allowed/rw");
    let manifest = format!(
        "{}{}",
        grant(&rw, "/rw", "rw"),
        grant(&rw.join("sub"), "/sub", "ro")
    );
    let out = run_as_mallory(
        &node,
        &manifest,
        &[
            "swap-dir-for-link",
            "/rw/sub",
            "../../secret",
            "/sub/file.txt",
        ],
    )
    .await
    .ok();
    assert_eq!(
        out,
        "before: READ \"inside\"\nswap: SWAPPED\nafter: READ \"inside\"\n"
    );
    // The swap really happened on the host.
    let link = std::fs::read_link(rw.join("sub")).unwrap();
    assert_eq!(link, std::path::Path::new("../../secret"));
    assert_eq!(
        std::fs::read_to_string(rw.join("sub/file.txt")).unwrap(),
        "SECRET"
    );
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_held_by_waiting_calls_are_charged_to_the_tenant() {
    // Calls that cannot run yet keep their arguments on the node: once they
    // were charged to no one, bounded only by the count of pending tasks.
    let node = arena_with_quota(64 << 20);
    let manifest = "[limits]\nwall-time = \"120s\"\ndriver-wall-time = \"120s\"\n";
    let out = breach(&node, manifest, &["queued-args"]).await;
    for what in ["tasks", "actor calls"] {
        let line = one_line(&out, &format!("{what}: "));
        assert!(
            line.ends_with("then: limit-exceeded object-store-quota 67108864"),
            "{line}"
        );
        let queued: u64 = line
            .split(" queued ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((55..=64).contains(&queued), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_own_error_text_is_bounded_and_charged() {
    // Forty tasks failing with 32 MiB messages once held 1.3 GiB of the
    // node, charged to no one.
    // Forty kept errors of 64 KiB are more than a 2 MiB quota.
    let node = arena_with_quota(2 << 20);
    let manifest = "[limits]\nmemory = \"256 MiB\"\nwall-time = \"120s\"\n";
    let out = breach(&node, manifest, &["fat-errors", "32", "40"]).await;
    let kept = fabric_host::error::MAX_ERROR_TEXT + " [truncated]".len();
    assert_eq!(
        out,
        format!(
            "40 errors of 32 MiB: longest kept {kept} bytes\n\
             then put: limit-exceeded object-store-quota 2097152\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_chain_of_tasks_that_did_not_run_keeps_a_short_message() {
    // Each task that did not run once added its note to a full copy of
    // the message: twenty thousand of them made an 11 MB message and took
    // the node 45 s.
    let manifest = "[limits]\npending-tasks = 100000\nwall-time = \"120s\"\n";
    let out = breach(&arena(), manifest, &["dependents", "20000"]).await;
    let line = one_line(&out, "after 20000 tasks: ");
    assert!(
        line.ends_with(
            "bad input (task `double` did not run: its argument 0 is the result of \
             task `double`, which did not run either; first to fail: task `refuse`)"
        ),
        "{line}"
    );
    let bytes: usize = line
        .trim_start_matches("after 20000 tasks: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes < 200, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_guest_gives_are_bounded() {
    // A 64 MiB namespace once cost the node 190 MiB per named actor.
    let out = breach(&arena(), LONG, &["long-names"]).await;
    for what in ["namespace", "lookup", "label"] {
        let line = one_line(&out, &format!("{what}: "));
        assert!(
            line.contains("invalid-argument") && line.contains("name must be 1 to 256 bytes"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_pool_slots_keep_are_bounded_accounted_and_given_back() {
    // A freed instance slot keeps the pages its instance dirtied (up to
    // 8 MiB) for its next instance. Once every slot an instance ever used
    // kept them for good: 40 tasks at once, each writing 3 MiB, would have
    // left 120 MiB charged to no one. Now they are the node's (`pool_kept`),
    // at most 64 MiB in all, and given back once a slot has been idle for a
    // whole second (within two seconds of the work stopping). An engine of
    // its own: the shared one's slots are other tests'.
    const MIB: u64 = 1 << 20;
    let engine = fabric_host::runtime::engine::FabricEngine::new(
        &fabric_host::runtime::engine::EngineSettings {
            max_instances: 200,
            compile: Some(crate::support::compile_sandbox()),
            ..Default::default()
        },
    )
    .unwrap();
    // 64 MiB on up to 8 CPUs (8 MiB for each of 8 warm slots); a warm slot
    // per allocator shard above that. The burst frees more than that, so
    // that the bound is what stops the slots keeping it.
    let bound = engine.pool_keep_bound();
    let tasks = (bound / (3 * MIB) + 16).max(40);
    let node = fabric_host::Node::start_with_engine(
        fabric_host::NodeConfig {
            num_cpus: Some(2.0),
            ..crate::support::test_config()
        },
        engine,
    )
    .unwrap();
    let job = start_program(
        &node,
        programs::BREACHES,
        "mallory",
        "",
        &["burst", &tasks.to_string(), "3", "300", "0"],
    )
    .await;
    let mut most = 0;
    while !job.0.is_finished() {
        most = most.max(node.memory().pool_kept);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let touched = format!("burst of {tasks} touched {} MiB\n", tasks * 3);
    assert_eq!(finish(job).await.ok(), touched);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut kept = node.memory().pool_kept;
    while kept > 0 && std::time::Instant::now() < deadline {
        most = most.max(kept);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        kept = node.memory().pool_kept;
    }
    // The tables' own bound (a warm slot's 64 KiB each: 512 KiB at up to
    // 8 CPUs, 1 MiB at 16; 32 slots on a kernel without PAGEMAP_SCAN), and what two frees at once may add to both bounds
    // (what a task dirtied, about 3 MiB here, and 3 tables of 64 KiB).
    let overshoot = 2 * MIB + 2 * (3 * MIB + 3 * 64 * 1024);
    assert!(most > 0, "the slots kept nothing: nothing was measured");
    assert!(most <= bound + overshoot, "slots kept {} MiB", most / MIB);
    assert_eq!(
        kept, 0,
        "5 s after the work the slots still keep {kept} bytes"
    );
}
