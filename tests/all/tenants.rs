//! Quotas, fair share and metering between tenants, on one node and across
//! a cluster (tests/programs/hostile's `busy` and `concurrency` scenarios).

use std::sync::Arc;
use std::time::Duration;

use fabric_host::logs::MemorySink;
use fabric_host::quota::Quota;
use fabric_host::{JobOptions, JobOutcome, Node, NodeConfig};

use crate::support::{node_with, programs, test_cluster, test_config};

fn two_cpus() -> NodeConfig {
    NodeConfig {
        num_cpus: Some(2.0),
        ..test_config()
    }
}

async fn start(
    node: &Node,
    tenant: &str,
    args: &[&str],
) -> (tokio::task::JoinHandle<JobOutcome>, Arc<MemorySink>) {
    let bytes = std::fs::read(programs::HOSTILE).unwrap();
    let app = node.load(&bytes).await.unwrap();
    let logs = Arc::new(MemorySink::default());
    let (_, running) = node.start_job_with(
        app,
        args.iter().map(|s| s.to_string()).collect(),
        logs.clone(),
        JobOptions {
            manifest: String::new(),
            tenant: Some(tenant.into()),
            ..Default::default()
        },
    );
    (tokio::spawn(running), logs)
}

async fn stdout_of(job: (tokio::task::JoinHandle<JobOutcome>, Arc<MemorySink>)) -> String {
    let outcome = job.0.await.unwrap();
    if let Err(e) = &outcome.result {
        panic!("job failed: {e}\n{}", job.1.stderr());
    }
    job.1.stdout()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_quota_caps_how_many_tasks_a_tenant_runs_at_once() {
    let node = node_with(two_cpus());
    let out = stdout_of(start(&node, "alice", &["concurrency", "6"]).await).await;
    assert_eq!(out, "max concurrent 2\n", "without a quota: both CPUs");
    node.set_quota(
        "mallory",
        Quota {
            cpus: Some(1.0),
            ..Quota::default()
        },
    );
    let out = stdout_of(start(&node, "mallory", &["concurrency", "6"]).await).await;
    assert_eq!(out, "max concurrent 1\n", "a quota of one CPU");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_above_the_quota_fails_at_once() {
    let node = node_with(two_cpus());
    node.set_quota(
        "mallory",
        Quota {
            cpus: Some(0.5),
            ..Quota::default()
        },
    );
    let job = start(&node, "mallory", &["busy", "1", "10"]).await;
    let outcome = job.0.await.unwrap();
    let err = outcome.result.unwrap_err().to_string();
    assert!(err.contains("limit `cpus-quota`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_starve_another() {
    let node = node_with(two_cpus());
    // Mallory queues 60 tasks of 100 ms (3 s of work on 2 CPUs) first.
    let flood = start(&node, "mallory", &["busy", "60", "100"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Alice's small job gets CPUs as soon as one frees: it finishes while
    // most of mallory's queue still waits.
    let small = stdout_of(start(&node, "alice", &["busy", "4", "10"]).await).await;
    assert_eq!(small, "busy done: 4 tasks\n");
    assert!(
        !flood.0.is_finished(),
        "mallory's flood finished first: alice waited behind it"
    );
    assert!(
        node.stats().queued_tasks > 0,
        "mallory's queue is still there"
    );
    assert_eq!(stdout_of(flood).await, "busy done: 60 tasks\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_metered_per_tenant() {
    let node = node_with(two_cpus());
    stdout_of(start(&node, "alice", &["victim", "0"]).await).await;
    stdout_of(start(&node, "bob", &["busy", "3", "10"]).await).await;
    let usage = node.tenant_usage();
    let of = |t: &str| {
        usage
            .iter()
            .find(|u| &*u.tenant == t)
            .unwrap_or_else(|| panic!("no usage for {t}: {usage:?}"))
            .clone()
    };
    let (alice, bob) = (of("alice"), of("bob"));
    // Alice: one round of 20 square tasks; bob: 3 naps.
    assert_eq!((alice.tasks, bob.tasks), (20, 3));
    assert_eq!((alice.actors, bob.actors), (1, 0));
    assert!(
        alice.cpu_seconds > 0.0 && bob.cpu_seconds > 0.0,
        "{usage:?}"
    );
    assert!(
        alice.memory_byte_seconds > 0.0 && alice.object_byte_seconds > 0.0,
        "{alice:?}"
    );
    // Everything was freed: nothing is held now.
    assert_eq!(
        (alice.object_bytes, alice.memory_bytes),
        (0, 0),
        "{alice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_quotas_and_usage_come_from_the_head() {
    use wasmfabric_proto::v1 as pb;
    let c = test_cluster(vec![two_cpus(), two_cpus()]).await;
    let token = c
        .tokens
        .add_tenant(
            "carol",
            Quota {
                object_store: Some(8 << 20),
                jobs: Some(1),
                ..Quota::default()
            },
        )
        .unwrap();
    // The next heartbeats carry carol's quota to every node.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut carol = crate::hostile::control(&c, &token).await;
    let submit = |args: &[&str]| pb::SubmitJobRequest {
        component: std::fs::read(programs::HOSTILE).unwrap().into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        manifest: String::new(),
        components: Vec::new(),
    };
    // One job at a time: a second one while the first runs is refused.
    let mut first = carol
        .submit_job(submit(&["busy", "4", "400"]))
        .await
        .unwrap()
        .into_inner();
    let second = carol.submit_job(submit(&["busy", "1", "1"])).await;
    let refused = second.expect_err("over the jobs quota");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("jobs-quota"), "{refused:?}");
    while let Some(event) = first.message().await.unwrap() {
        if let Some(pb::job_event::Kind::Finished(f)) = event.kind {
            assert!(f.ok, "{f:?}");
            break;
        }
    }
    // Its objects may take 8 MiB of the cluster's stores, no more.
    let mut flood = carol
        .submit_job(submit(&["object-flood"]))
        .await
        .expect("the first job ended")
        .into_inner();
    let mut printed = String::new();
    while let Some(event) = flood.message().await.unwrap() {
        match event.kind {
            Some(pb::job_event::Kind::Log(l)) => {
                printed.push_str(&String::from_utf8_lossy(&l.line));
                printed.push('\n');
            }
            Some(pb::job_event::Kind::Finished(f)) => {
                assert!(f.ok, "{f:?}");
                break;
            }
            _ => {}
        }
    }
    assert!(
        printed.contains("then: limit-exceeded object-store-quota 8388608"),
        "{printed}"
    );
    // The head sums what every node metered for carol.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let usage = carol
        .tenant_usage(pb::TenantUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        usage.tenants.len(),
        1,
        "a tenant sees only itself: {usage:?}"
    );
    let u = &usage.tenants[0];
    assert_eq!((u.tenant.as_str(), u.jobs, u.jobs_running), ("carol", 2, 0));
    assert!(u.object_byte_seconds > 0.0 && u.cpu_seconds > 0.0, "{u:?}");
    assert_eq!(u.quota.as_ref().and_then(|q| q.jobs), Some(1));
}
