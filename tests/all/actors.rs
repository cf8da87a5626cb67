//! Actors: ordering, naming, death, errors, handles passed around.
//! Each test runs one scenario of tests/programs/actors.

use crate::support::{node, programs, run_ok};

async fn scenario(name: &str) -> String {
    run_ok(&node(2.0), programs::ACTORS, &[name]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_arrive_in_order() {
    assert_eq!(scenario("order").await, "order 1000 true\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_actors_are_found_and_names_are_unique() {
    let out = scenario("named").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "found [7]");
    assert_eq!(lines[1], "same true");
    assert!(
        lines[2].starts_with("InvalidArgument(\"an actor named `journal` already exists"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("NotFound(\"no actor named `nobody`"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_actor_fails_later_calls() {
    let out = scenario("kill").await;
    assert!(
        out.starts_with("ActorDied(\"actor Log(") && out.contains(") was killed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_method_fails_its_call_and_kills_the_actor() {
    let out = scenario("method-panic").await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TaskFailed Log.explode Panic: log exploded after 1 entries"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("ActorDied(") && lines[1].contains("log exploded"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_constructor_leaves_a_dead_actor() {
    let out = scenario("ctor-panic").await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ActorDied(") && lines[0].contains("cannot build a Fragile from zero"),
        "{out}"
    );
    assert_eq!(lines[1], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_error_fails_only_that_call() {
    let out = scenario("method-error").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "TaskFailed Log.check ApplicationError: 2 entries is over the limit of 1"
    );
    assert_eq!(lines[1], "still alive 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_can_call_actors_through_passed_handles() {
    assert_eq!(
        scenario("handle-passing").await,
        "from tasks [0, 1, 2, 3, 4]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_a_typed_error() {
    let out = scenario("unknown-method").await;
    assert!(
        out.starts_with(
            "TaskFailed Log.describe UnknownFunction: actor `Log` has no method `describe`"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructors_take_arguments_and_may_fail() {
    let out = scenario("ctor-args").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ada: 15");
    assert!(
        lines[1].starts_with("ActorDied(")
            && lines[1].contains("bob cannot open with a negative balance"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_create_actors_that_outlive_them() {
    assert_eq!(
        scenario("actor-from-task").await,
        "made by a task [41, 42]\n"
    );
}

/// `max_restarts`: a crash (panic) fails its own call, and the actor comes
/// back in a fresh instance whose constructor reads the last checkpoint, so
/// the count goes on. Restarts run out after 2: the third crash kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_actor_restarts_from_its_checkpoint_until_restarts_run_out() {
    let out = scenario("restart").await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("crash 1: TaskFailed Durable.crash Panic: crashed at 3"),
        "{out}"
    );
    assert_eq!(lines[1], "after crash 1: n=4 lives=2", "{out}");
    assert!(lines[2].starts_with("crash 2: TaskFailed Durable.crash Panic: crashed at 4"));
    assert_eq!(lines[3], "after crash 2: n=5 lives=3", "{out}");
    assert!(lines[4].starts_with("crash 3: TaskFailed Durable.crash Panic: crashed at 5"));
    assert!(
        lines[5].starts_with("after crash 3: ActorDied(")
            && lines[5].contains("crashed at 5")
            && lines[5].contains("(after 2 restarts)"),
        "{out}"
    );
}

/// Without a checkpoint a restart starts from the constructor's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_without_checkpoints_restarts_from_scratch() {
    let out = scenario("restart-no-checkpoint").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "after crash 1: n=1 lives=1", "{out}");
    assert_eq!(lines[3], "after crash 2: n=1 lives=1", "{out}");
    assert!(lines[5].starts_with("after crash 3: ActorDied("), "{out}");
}

/// Only an actor has a checkpoint: a task's save is refused, a driver's load
/// finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_actors_save_checkpoints() {
    let out = scenario("checkpoint-outside-actor").await;
    assert_eq!(
        out,
        "InvalidArgument(\"only an actor can save a checkpoint\")\nOk(None)\n"
    );
}

/// A checkpoint over its cap (64 MiB, or the job's result-size limit if
/// smaller) is refused with a typed limit error; the actor carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_checkpoint_is_a_limit_error() {
    let out = scenario("checkpoint-too-big").await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("LimitExceeded { name: \"checkpoint-bytes\", value: 67108864"),
        "{out}"
    );
    assert_eq!(lines[1], "(1, 1)", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_stops_with_its_last_handle_and_frees_its_resources() {
    let node = crate::support::node_with(fabric_host::NodeConfig {
        num_cpus: Some(2.0),
        custom: fabric_host::resources::ResourceSet::parse_custom("ssd=1").unwrap(),
        ..crate::support::test_config()
    });
    let out = run_ok(
        &node,
        programs::CLUSTER,
        &["handle-lifetime", "here", "here"],
    )
    .await;
    assert_eq!(out, crate::cluster::HANDLE_LIFETIME);
    crate::support::assert_released(&node).await;
    assert_eq!(node.stats().actors, 0, "the stopped actors' records stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_actor_interleaves_calls_on_one_state() {
    let node = crate::support::node(2.0);
    let out = run_ok(&node, programs::CLUSTER, &["concurrent", "here"]).await;
    assert_eq!(out, crate::cluster::CONCURRENT);
    crate::support::assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_pool_and_a_queue_work_on_one_node() {
    let node = crate::support::node(2.0);
    let out = run_ok(&node, programs::CLUSTER, &["pool-queue", "here", "here"]).await;
    assert_eq!(out, crate::cluster::POOL_QUEUE);
    crate::support::assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectives_run_among_actors_on_one_node() {
    let node = crate::support::node(2.0);
    let args = ["collectives", "here", "here", "here"];
    let out = run_ok(&node, programs::CLUSTER, &args).await;
    assert_eq!(out, crate::cluster::COLLECTIVES);
    crate::support::assert_released(&node).await;
}

/// A member killed while the others wait for it in an allreduce: they
/// fail with `actor-died` at once, and so does their next collective.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_fails_the_others_collective_at_once() {
    let node = crate::support::node(2.0);
    let args = ["collective-kill", "here", "here"];
    let out = run_ok(&node, programs::CLUSTER, &args).await;
    assert_eq!(
        out,
        format!(
            "{}within a second of the kill: true\nthe stalled member: ActorDied\n",
            crate::cluster::COLLECTIVE_KILLED
        )
    );
    crate::support::assert_released(&node).await;
}

/// Watches the watcher dropped are pruned from a local actor's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_on_a_local_actor_are_pruned() {
    let node = crate::support::node(2.0);
    let out = run_ok(&node, programs::CLUSTER, &["watch-churn", "here"]).await;
    assert_eq!(out, crate::cluster::WATCH_CHURN);
    crate::support::assert_released(&node).await;
}
