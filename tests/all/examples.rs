//! Every example prints what its README says.

use std::time::Instant;

use fabric_host::NodeConfig;

use crate::support::{examples, node, node_with, run, run_ok, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_runs_the_whole_tour() {
    let out = run_ok(&node(2.0), examples::HELLO, &[]).await;
    assert_eq!(
        out,
        "3\n1\n2\n3\n4\n5\n[1, 2, 3, 4, 5]\n[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_prints_three() {
    assert_eq!(run_ok(&node(1.0), examples::ADD, &[]).await, "3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_counts_to_five() {
    assert_eq!(
        run_ok(&node(1.0), examples::COUNTER, &[]).await,
        "1\n2\n3\n4\n5\n"
    );
}

/// A crash restarts the actor from its checkpoint: the count goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_counter_goes_on_after_a_crash() {
    let out = run_ok(&node(1.0), examples::DURABLE_COUNTER, &[]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[..3], ["1", "2", "3"], "{out}");
    assert!(lines[3].starts_with("crashed: crashing at 3"), "{out}");
    assert_eq!(lines[4..], ["4", "5"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_round_trips_a_list() {
    assert_eq!(
        run_ok(&node(1.0), examples::PUT_GET, &[]).await,
        "[1, 2, 3, 4, 5]\nsum = 15\n"
    );
}

/// Ten one-second tasks take ceil(10 / CPUs) seconds: never fewer (the
/// scheduler admits one task per CPU) and not many more (they run in parallel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squares_run_as_wide_as_the_cpus() {
    for (cpus, waves) in [(2.0, 5.0), (5.0, 2.0)] {
        let start = Instant::now();
        let out = run_ok(&node(cpus), examples::SQUARES, &[]).await;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(out, "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n");
        assert!(
            secs >= waves,
            "{cpus} CPUs: {secs:.2} s is faster than {waves} waves of 1 s"
        );
        assert!(
            secs < waves + 2.5,
            "{cpus} CPUs: {secs:.2} s; tasks did not run in parallel"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_task_runs_where_a_gpu_is_configured() {
    let node = node_with(NodeConfig {
        num_cpus: Some(2.0),
        num_gpus: Some(1),
        ..test_config()
    });
    assert_eq!(
        run_ok(&node, examples::GPU, &[]).await,
        "task ran with GPU ids [0]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_task_is_infeasible_without_a_gpu() {
    let r = run(&node(2.0), examples::GPU, &[]).await;
    let err = r.outcome.result.expect_err("no GPU").to_string();
    assert!(err.contains("resources infeasible"), "{err}");
    assert!(err.contains("GPU: 1 (node has 0)"), "{err}");
}

/// The `loss` figures a training example printed: `n` of them, none above
/// the one before.
fn falling_losses(out: &str, n: usize) -> Vec<f64> {
    let losses: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split_once("loss ").map(|(_, v)| v.parse().unwrap()))
        .collect();
    assert_eq!(losses.len(), n, "{out}");
    for pair in losses.windows(2) {
        assert!(pair[1] <= pair[0], "loss went up: {losses:?}");
    }
    losses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_regression_loss_falls_every_epoch() {
    let out = run_ok(&node(2.0), examples::LINEAR_REGRESSION, &[]).await;
    let losses = falling_losses(&out, 5);
    assert!(losses[4] < losses[0] / 100.0, "{losses:?}");
    assert!(out.contains("bias 0.500"), "{out}");
}

/// Data-parallel training on an allreduce among 4 workers: the loss falls
/// every step shown, the replicas end identical, and the weights found are
/// the ones the data was drawn from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_server_on_an_allreduce_keeps_replicas_identical() {
    let node = node(2.0);
    let out = run_ok(&node, examples::PARAMETER_SERVER, &[]).await;
    let losses = falling_losses(&out, 8);
    assert!(losses[7] < losses[0] / 10_000.0, "{losses:?}");
    assert!(out.contains("replicas identical: true"), "{out}");
    assert!(
        out.contains(
            "weights [-2.25, -1.75, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 1.75, 2.25] bias 0.500"
        ),
        "{out}"
    );
    crate::support::assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_consumer_passes_messages() {
    let out = run_ok(&node(2.0), examples::PRODUCER_CONSUMER, &[]).await;
    let consumed: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(") consumed message-"))
        .collect();
    assert_eq!(consumed.len(), 5, "{out}");
    assert!(
        consumed[0].starts_with("(Consumer actor="),
        "actor output is prefixed: {out}"
    );
    assert!(out.ends_with(
        "producer sent 5, consumer received 5: [\"message-1\", \"message-2\", \"message-3\", \"message-4\", \"message-5\"]\n"
    ));
}

/// Map-reduce with several returns per mapper, a reducer over refs, the
/// text read as bytes, and a typed error for bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_maps_reduces_and_refuses_bad_input_by_type() {
    assert_eq!(
        run_ok(&node(2.0), examples::WORD_COUNT, &[]).await,
        "36 words, 16 distinct\nthe: 8\ndog: 4\nfox: 4\nrefused: not text at byte 11\n"
    );
}

/// A streaming pipeline: a generator consuming another as it streams, its
/// items passed on to an actor as references, and an actor's generator
/// method streaming the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_pipeline_passes_items_on_as_they_come() {
    assert_eq!(
        run_ok(&node(2.0), examples::STREAM_PIPELINE, &[]).await,
        "55 alerts\nsensor 0: 18 alerts, worst 1.0 over\nsensor 1: 18 alerts, worst 1.0 over\nsensor 2: 19 alerts, worst 1.0 over\n"
    );
}

/// A bounded queue a task fills, an actor pool that takes the items, and a
/// concurrent actor that computes each slow square once for all callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_spreads_items_over_a_pool_and_shares_slow_work() {
    let node = node(2.0);
    assert_eq!(
        run_ok(&node, examples::WORK_QUEUE, &[]).await,
        "produced 8, took [0, 1, 2, 3, 0, 1, 2, 3]\nresults [1, 2, 5, 10, 1, 2, 5, 10]\nslow squares computed: 4\n"
    );
    crate::support::assert_released(&node).await;
}
