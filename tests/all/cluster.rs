//! Clusters in one process: real nodes, real gRPC over loopback. Each test
//! also checks that, after the job, no node holds an object or a resource.

use fabric_host::NodeConfig;
use fabric_host::resources::ResourceSet;

use crate::support::{TestCluster, programs, run_ok, test_cluster, test_config};

fn cpus(n: f64) -> NodeConfig {
    NodeConfig {
        num_cpus: Some(n),
        ..test_config()
    }
}

/// Head: 2 CPUs. Node 1: 2 CPUs and a GPU. Node 2: 2 CPUs and `ssd`.
async fn three_nodes() -> TestCluster {
    test_cluster(vec![
        cpus(2.0),
        NodeConfig {
            num_gpus: Some(1),
            ..cpus(2.0)
        },
        NodeConfig {
            custom: ResourceSet::parse_custom("ssd=1").unwrap(),
            ..cpus(2.0)
        },
    ])
    .await
}

async fn scenario(c: &TestCluster, args: &[&str]) -> String {
    let out = run_ok(c.head(), programs::CLUSTER, args).await;
    c.assert_released().await;
    out
}

fn ran_on(out: &str) -> Vec<(String, usize)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("node "))
        .map(|l| {
            let (node, k) = l.split_once(" ran ").unwrap();
            (node.to_string(), k.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_runs_on_every_node() {
    let c = three_nodes().await;
    let out = scenario(&c, &["fan-out", "600"]).await;
    assert!(out.starts_with("tasks 600\n"), "{out}");
    let nodes = ran_on(&out);
    assert_eq!(nodes.len(), 3, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_and_custom_resource_tasks_land_where_the_resource_is() {
    let c = three_nodes().await;
    assert_eq!(
        scenario(&c, &["gpu"]).await,
        format!("gpu task on {} with [0]\n", c.id(1))
    );
    assert_eq!(
        scenario(&c, &["ssd"]).await,
        format!("ssd task on {}\n", c.id(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_put_on_one_node_is_read_on_another() {
    let c = three_nodes().await;
    let out = scenario(&c, &["object-across", &c.id(2)]).await;
    assert_eq!(
        out,
        format!(
            "put on {} read on {}: 3145728 bytes, sum 9437184\n",
            c.id(0),
            c.id(2)
        )
    );
    // A large one goes over the local socket (the nodes share this
    // machine), every byte in its place.
    let out = scenario(&c, &["object-pattern", &c.id(2), "24"]).await;
    assert_eq!(
        out,
        format!(
            "read on {}: 25165824 bytes, digest matches: true\n",
            c.id(2)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_on_one_node_is_called_from_another() {
    let c = three_nodes().await;
    let out = scenario(&c, &["actor-across", &c.id(1), &c.id(2)]).await;
    assert_eq!(
        out,
        format!(
            "task on {} called actor on {}: 5 then 6\n",
            c.id(2),
            c.id(1)
        )
    );
}

/// What `handle-lifetime` prints when every handle counted.
pub(crate) const HANDLE_LIFETIME: &str = "a call made before the drop: 1
through an object, from a task: 3
held by another actor: 6
the seat was given back: a new tally says 5
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_lives_while_a_handle_does_anywhere_and_stops_with_the_last() {
    let c = three_nodes().await;
    let out = scenario(&c, &["handle-lifetime", &c.id(2), &c.id(1)]).await;
    assert_eq!(out, HANDLE_LIFETIME);
    // Nothing of the stopped actors is left on their nodes.
    for i in 0..3 {
        assert_eq!(c.nodes[i].stats().actors, 0, "node {i} keeps an actor");
    }
}

/// What `concurrent` prints when calls interleave on one state.
pub(crate) const CONCURRENT: &str = "naps done while a call waits for an object: true
it waited for 42
most naps at once 3, naps 12, on the chosen node: true
a call on another call's result: true
a generator method streams: [13, 14, 15, 16, 17, 18]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_actor_on_another_node_interleaves_its_calls() {
    let c = three_nodes().await;
    assert_eq!(scenario(&c, &["concurrent", &c.id(1)]).await, CONCURRENT);
}

/// What `pool-queue` prints.
pub(crate) const POOL_QUEUE: &str = "map in order: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
map_unordered, sorted: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
submit then get_next: 49 64, more: false
a put on a full queue: Err(Some(Full))
the task took [\"a\", \"b\", \"item0\", \"item1\", \"item2\"]
a get on an empty queue: Err(Some(Empty)), size 0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_pool_and_a_queue_work_across_nodes() {
    let c = three_nodes().await;
    let out = scenario(&c, &["pool-queue", &c.id(1), &c.id(2)]).await;
    assert_eq!(out, POOL_QUEUE);
}

/// What `collectives` prints when every collective works.
pub(crate) const COLLECTIVES: &str = "ranks [0, 1, 2] of 3
members where asked: true
allreduce sum [6.0, 30.0] on every member: true
allreduce max 14 on every member: true
allgather: every member has each member's node, by rank: true
broadcast from rank 1 on every member: true
barrier: no member left before the last came: true
different collectives: InvalidArgument, then InvalidArgument and InvalidArgument
after destroy, a collective fails as gone: true
made anew under the same name, the same results: true
";

/// What `collective-kill` prints first when the others fail as they should.
pub(crate) const COLLECTIVE_KILLED: &str = "submitted; the others wait for the last member: true
the others: [\"ActorDied, then ActorDied\", \"ActorDied, then ActorDied\"]
";

/// What `watch-churn` prints when dropped watches leave the actor's list.
pub(crate) const WATCH_CHURN: &str = "watches fired while it lives: 0
watches fired while it lives: 0
watches fired while it lives: 0
the last watch after the kill: true
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_on_an_actor_of_another_node_are_cancelled() {
    let c = three_nodes().await;
    assert_eq!(scenario(&c, &["watch-churn", &c.id(1)]).await, WATCH_CHURN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectives_run_among_actors_on_three_nodes() {
    let c = three_nodes().await;
    let args = ["collectives", &c.id(0), &c.id(1), &c.id(2)];
    assert_eq!(scenario(&c, &args).await, COLLECTIVES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_actor_is_found_from_another_node() {
    let c = three_nodes().await;
    let out = scenario(&c, &["named-across", &c.id(1), &c.id(2)]).await;
    assert_eq!(
        out,
        format!(
            "task on {} found the named actor on {}: 7\n",
            c.id(2),
            c.id(1)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_stays_where_it_was_made_until_read() {
    let c = three_nodes().await;
    let out = scenario(&c, &["result-elsewhere", &c.id(1)]).await;
    assert_eq!(
        out,
        format!("made on {}: 2097152 bytes, inner 42\n", c.id(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_deals_tasks_to_every_node() {
    let c = three_nodes().await;
    let nodes = ran_on(&scenario(&c, &["spread"]).await);
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|(_, k)| *k == 10), "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_named_actor_outlives_its_job() {
    let c = three_nodes().await;
    assert_eq!(
        run_ok(c.head(), programs::CLUSTER, &["detached-create", &c.id(1)]).await,
        "created 1\n"
    );
    assert_eq!(
        run_ok(c.head(), programs::CLUSTER, &["detached-use"]).await,
        "still there 2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_mid_job_receives_work() {
    let mut c = test_cluster(vec![cpus(1.0), cpus(1.0)]).await;
    let (head, app) = (c.head().clone(), std::fs::read(programs::CLUSTER).unwrap());
    let logs = std::sync::Arc::new(fabric_host::logs::MemorySink::default());
    let job = {
        let logs = logs.clone();
        tokio::spawn(async move {
            let app = head.load(&app).await.unwrap();
            head.run_job(app, vec!["elastic".into(), "24".into(), "500".into()], logs)
                .await
        })
    };
    while !logs.stdout().contains("submitted") {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.add(cpus(2.0)).await;
    job.await.unwrap().result.expect("job");
    let out = logs.stdout();
    let newcomer = c.id(2);
    assert!(
        ran_on(&out).iter().any(|(n, k)| *n == newcomer && *k > 0),
        "the new node ran nothing:\n{out}"
    );
    c.assert_released().await;
}

/// The task hot path never reaches the head: a 10,000-task job on one node
/// makes no head RPC (heartbeats come on their own clock, not per task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_make_no_head_rpc() {
    let c = test_cluster(vec![cpus(2.0)]).await;
    let head = c.handles[0].head().expect("the head").clone();
    let before = head.rpc_counts();
    let out = scenario(&c, &["throughput", "10000"]).await;
    assert!(out.starts_with("throughput 10000 tasks in "), "{out}");
    let after = head.rpc_counts();
    for (rpc, n) in &after {
        let delta = n - before.get(rpc).copied().unwrap_or(0);
        if rpc != "Heartbeat" {
            assert_eq!(delta, 0, "{rpc} was called {delta} times during the job");
        }
    }
}

/// Objects move between nodes in chunks, and copies go when the object does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_move_between_nodes_and_copies_are_dropped() {
    let c = three_nodes().await;
    let out = scenario(&c, &["transfer", "32", &c.id(2)]).await;
    assert!(
        out.starts_with(&format!("transfer 33554432 bytes to {} in ", c.id(2))),
        "{out}"
    );
    let out = scenario(&c, &["broadcast", "8", "1", &c.id(1), &c.id(2)]).await;
    assert!(
        out.starts_with("broadcast 8388608 bytes to 2 nodes in "),
        "{out}"
    );
}

/// A task that takes a large result runs where the result was kept, and
/// once both are done every node frees everything (the kept copy's borrow
/// must not keep it alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_result_reused_where_it_lives_is_freed_everywhere() {
    let c = three_nodes().await;
    let out = scenario(&c, &["kept-reused", &c.id(1)]).await;
    assert_eq!(
        out,
        format!("consumed on {}: 2097152 bytes, inner 42\n", c.id(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_every_node_and_the_clusters_totals() {
    let c = three_nodes().await;
    let out = scenario(&c, &["nodes-seen"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            r#"cluster cpus Some(6.0) gpus Some(1.0) custom [("ssd", 1.0)]"#,
            // No node shows what it has free (other tenants' load) or where
            // it listens.
            r#"node head=false alive=true cpus=Some(2.0) gpus=Some(0.0) custom=[("ssd", 1.0)] load shown=false address set=false"#,
            "node head=false alive=true cpus=Some(2.0) gpus=Some(1.0) custom=[] load shown=false address set=false",
            "node head=true alive=true cpus=Some(2.0) gpus=Some(0.0) custom=[] load shown=false address set=false",
        ],
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_placement_strategy_places_bundles_across_nodes_as_it_says() {
    let c = three_nodes().await;
    let out = scenario(&c, &["groups-across"]).await;
    println!("{out}");
}
