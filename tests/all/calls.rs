//! How calls return and take values (issue 13): several returns, refs as
//! one argument, typed application errors, byte objects read once,
//! streaming generators. Each
//! scenario of tests/programs/calls runs on one node, on an in-process
//! cluster (tasks spread over its nodes; every object freed after), and on
//! a cluster of real `fabric` processes.

use crate::support::procs::ProcCluster;
use crate::support::{node, programs, run_ok, test_cluster, test_config};

const BIN: &str = env!("CARGO_BIN_EXE_fabric");

const RETURNS: &[&str] = &[
    "three: 7 / n is 7 / 70",
    "chunks: 2 of 3 refs kept, lengths [307200, 307200], first bytes [1, 2]",
    "chunks: 2 of 3 refs kept, lengths [307200, 307200], first bytes [1, 2]",
    "wrong count: BadValue: task `chunks` got a value it could not decode: returned 2 values; the call asked for 5",
    "tuple count: invalid argument: `three` returns 3 values, not 2",
    "undeclared: invalid argument: `count` returns one value: declare `#[fabric::remote(num_returns = ..)]` to return several",
    "cancelled: cancelled / cancelled",
];

const VARARGS: &[&str] = &[
    "total of 20: 210",
    "total of none: 0",
    "each: ada 210 1",
    "failed part: ApplicationError: task `fail_at` returned an error: no 5 (task `total` did not run: its argument 0 is the result of task `fail_at`)",
];

const TYPED_ERRORS: &[&str] = &[
    "withdraw: ApplicationError: task `withdraw` returned an error: short by 5 -> Some(Insufficient { needed: 5 })",
    "string: Some(\"no 4\")",
    "untyped: ApplicationError: task `untyped` returned an error: only text -> None",
    "dependent: Some(Insufficient { needed: 1 })",
    "actor: ApplicationError: task `Account.take` returned an error: frozen: 11 > 10 -> Some(Frozen(\"11 > 10\"))",
];

const BYTES: &[&str] = &[
    "put_bytes 8 MiB: read back equal true",
    "window: length 8388608, equal true",
    "past the end: invalid argument: 1000 bytes from offset 8388598 pass the end of the object's 8388608 bytes",
    "task bytes: 3000000 bytes, equal true",
    "not bytes: invalid argument: not a byte object (one MessagePack `bin` value, as `put-bytes` stores it)",
];

const STREAMS: &[&str] = &[
    "squares: 20 items, sum 2470",
    "typed: [0, 1, 2] then ApplicationError: task `until_short` returned an error: short by 3 -> Some(Insufficient { needed: 3 })",
    "refused: ApplicationError: task `refuses` returned an error: no input -> Some(\"no input\")",
    "backpressure 2: first 0, waiting at Some(3), then [1, 2, 3]",
    "dropped: stopped true",
    "backpressure 0: invalid argument: backpressure must be 1 to 65536 items, got 0",
    "retried: each item once, in order true",
    "actor: [1, 3, 6, 10] then at Some(10)",
    "nested: [10, 20, 30]",
];

const SCENARIOS: &[(&str, &[&str])] = &[
    ("returns", RETURNS),
    ("varargs", VARARGS),
    ("typed-errors", TYPED_ERRORS),
    ("bytes", BYTES),
    ("streams", STREAMS),
];

fn check(name: &str, out: &str, want: &[&str]) {
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "scenario {name}:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_returns_refs_as_one_argument_typed_errors_and_bytes_on_one_node() {
    let n = node(2.0);
    for (name, want) in SCENARIOS {
        // `run_ok` also checks every object is freed after the job.
        let out = run_ok(&n, programs::CALLS, &[name]).await;
        check(name, &out, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_across_an_in_process_cluster_with_every_object_freed() {
    let c = test_cluster(vec![test_config(), test_config()]).await;
    for (name, want) in SCENARIOS {
        let out = run_ok(c.head(), programs::CALLS, &[name, "spread"]).await;
        check(name, &out, want);
        c.assert_released().await;
    }
}

#[test]
fn the_same_across_real_node_processes() {
    let mut c = ProcCluster::start(BIN, &["--num-cpus", "2", "--num-gpus", "0"]);
    c.add(&["--num-cpus", "2", "--num-gpus", "0"]);
    c.wait_for_alive(2);
    for (name, want) in SCENARIOS {
        let (out, err, ok) = c.submit(programs::CALLS, &[name, "spread"]);
        assert!(ok, "{name}: {err}");
        check(name, &out, want);
    }
}
