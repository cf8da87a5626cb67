//! Tasks: nesting, dependencies, failures, timeouts, cancellation, resources.
//! Each test runs one scenario of tests/programs/tasks.

use fabric_host::NodeConfig;
use fabric_host::resources::ResourceSet;

use crate::support::{node, node_with, programs, run_ok, test_config};

async fn scenario(cpus: f64, name: &str) -> String {
    run_ok(&node(cpus), programs::TASKS, &[name]).await
}

/// Each level blocks in `get` on the level below; on one CPU that only works
/// because a blocked task hands its CPU back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_tasks_three_levels_deep_on_one_cpu() {
    assert_eq!(scenario(1.0, "nested").await, "nested depth 3\n");
}

/// a = 5; b = 2a; c = a + 1; d = 100b + c: refs as arguments form a DAG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_as_arguments_form_a_dag() {
    assert_eq!(scenario(2.0, "dag").await, "dag 1006\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_panic_is_a_typed_error_with_its_message() {
    let out = scenario(1.0, "panic").await;
    assert!(
        out.starts_with("TaskFailed boom Panic: boom: the answer is 42 (at "),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_err_return_is_an_application_error() {
    assert_eq!(
        scenario(1.0, "app-error").await,
        "TaskFailed reject ApplicationError: bad input `x`\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_a_timeout_times_out_then_the_value_arrives() {
    assert_eq!(scenario(1.0, "timeout").await, "Timeout\nthen 2000\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infeasible_resources_fail_at_submit_naming_the_resource() {
    let out = scenario(2.0, "infeasible").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("ResourcesInfeasible(") && lines[0].contains("GPU: 4 (node has 0)"),
        "{out}"
    );
    assert!(lines[1].contains("CPU: 64 (node has 2)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_the_ready_ones_first() {
    assert_eq!(
        scenario(2.0, "wait").await,
        "ready [10] pending 1\nafter timeout ready 0 pending 1\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_and_queued_tasks() {
    assert_eq!(
        scenario(1.0, "cancel").await,
        "Cancelled\nqueued Cancelled,Cancelled,Cancelled,Cancelled\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_nested_in_values_stay_alive_and_resolve() {
    assert_eq!(scenario(2.0, "nested-refs").await, "sum 10\nfirst 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_function_is_a_typed_error_listing_the_real_ones() {
    let out = scenario(1.0, "unknown-function").await;
    assert!(out.starts_with("TaskFailed no_such_function UnknownFunction: no remote function named `no_such_function`"), "{out}");
    assert!(out.contains("boom, checksum, combine"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_tasks_get_gpu_ids() {
    let node = node_with(NodeConfig {
        num_cpus: Some(2.0),
        num_gpus: Some(2),
        ..test_config()
    });
    assert_eq!(
        run_ok(&node, programs::TASKS, &["gpu"]).await,
        "gpu ids [0]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip() {
    assert_eq!(
        scenario(2.0, "large-object").await,
        "large true (33554432, 234881024)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_rerun_a_failing_task_until_it_succeeds_or_runs_out() {
    let out = scenario(2.0, "retry").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "retry succeeded on attempt 3", "{out}");
    assert!(
        lines[1].starts_with("TaskFailed flaky Panic: attempt 2 fails"),
        "{out}"
    );
    assert!(lines[1].ends_with("(after 1 retries)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_options_override_declared_ones() {
    assert_eq!(
        scenario(1.0, "options").await,
        "options [\"ok\", \"ok\", \"ok\", \"ok\"]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_admit_tasks_that_ask_for_them() {
    let node = node_with(NodeConfig {
        num_cpus: Some(1.0),
        custom: ResourceSet::parse_custom("ssd=1").unwrap(),
        ..test_config()
    });
    assert_eq!(
        run_ok(&node, programs::TASKS, &["custom-resource"]).await,
        "ran on ssd\n"
    );
    let bare = crate::support::run(
        &crate::support::node(1.0),
        programs::TASKS,
        &["custom-resource"],
    )
    .await;
    let err = bare
        .outcome
        .result
        .expect_err("no ssd on this node")
        .to_string();
    assert!(err.contains("ssd: 1 (node has 0)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_argument_is_a_bad_value_error() {
    let out = scenario(1.0, "decode-error").await;
    assert!(
        out.starts_with(
            "TaskFailed takes_number BadValue: argument 0 (`n`): cannot decode value as u64"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_bytes_stores_raw_bytes_readable_as_bin() {
    let out = scenario(2.0, "put-bytes").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, len) in lines.iter().zip([0u64, 10, 300, 70_000, 3 << 20]) {
        let sum: u64 = (0..len).map(|i| i % 253).sum();
        assert_eq!(*line, format!("{len} true {}", len * 1000 + sum % 1000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_object_store_refuses_with_a_named_limit_until_objects_are_freed() {
    // With spilling off: what does not fit is refused.
    let node = node_with(NodeConfig {
        num_cpus: Some(1.0),
        object_store_memory: Some(8 << 20),
        spill: fabric_host::spill::Spill::Off,
        ..test_config()
    });
    let out = run_ok(&node, programs::TASKS, &["store-full"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("LimitExceeded { name: \"object-store-memory\", value: 8388608"),
        "{out}"
    );
    assert_eq!(lines[1], "after free 5242880");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_larger_than_wasmtimes_per_call_default_move() {
    assert_eq!(scenario(1.0, "huge-object").await, "huge 209715200 true\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_pinned_to_another_node_fails_on_a_lone_node() {
    let out = scenario(1.0, "pinned-elsewhere").await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ResourcesInfeasible(") && lines[0].contains("is not a live member"),
        "{out}"
    );
    assert_eq!(lines[1], "soft ok");
}

/// The SDK's allocator has the host zero large blocks (dropping their
/// pages): a reused dirty block still reads as zeros, its neighbours keep
/// their bytes, and a put of it stores zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_zeroed_blocks_are_zero_even_when_reused() {
    assert_eq!(scenario(1.0, "zeroed-blocks").await, "zeroed true\n");
}

/// Chaos, memory pressure: a store filled three times over spills its least
/// recently used objects to disk, every read gets the right bytes back, and
/// the spill files go with their objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_filled_three_times_over_spills_and_every_read_is_right() {
    let dir = crate::support::unique_temp_path("spill");
    let node = node_with(NodeConfig {
        num_cpus: Some(1.0),
        object_store_memory: Some(8 << 20),
        spill: fabric_host::spill::Spill::Dir(dir.clone()),
        ..test_config()
    });
    let out = run_ok(&node, programs::TASKS, &["overfill", "24"]).await;
    assert_eq!(out, "overfill 24 correct 24\n");
    // The job is over: its objects are freed, and their files deleted.
    crate::support::assert_released(&node).await;
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "spill files left: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
