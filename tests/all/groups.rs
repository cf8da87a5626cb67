//! Placement groups and introspection on a lone node (a cluster's nodes,
//! as a guest sees them, are in `cluster.rs`). Each test runs a scenario
//! of tests/programs/cluster.

use fabric_host::quota::Quota;

use crate::support::{assert_released, node, node_with, programs, run_ok, test_config};

/// `out` with every 32-digit hex id replaced by `ID`.
fn without_ids(out: &str) -> String {
    let mut s = String::new();
    let mut run = String::new();
    for c in out.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        s.push_str(if run.len() == 32 { "ID" } else { &run });
        run.clear();
        s.push(c);
    }
    s.push_str(if run.len() == 32 { "ID" } else { &run });
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reserves_runs_its_work_and_frees_everything_when_removed() {
    let node = node(2.0);
    let out = run_ok(&node, programs::CLUSTER, &["groups-here"]).await;
    let out = without_ids(&out);
    let lines: Vec<&str> = out.lines().collect();
    let expected = [
        "created Created on this node true",
        "found by name true",
        // Both CPUs are the group's: the tenant has nothing left outside it.
        "free outside Some(0.0)",
        "ran in bundles true",
        "resources infeasible: {CPU: 2} does not fit in bundle 0 of placement group ID: CPU: 2 (node has 1)",
        "invalid argument: placement group ID has 2 bundles; there is no bundle 7",
        "invalid argument: resource names starting with `@` are the host's own, got `@pg:ID:0:CPU`",
        "member call 1",
        "second waits true",
        "second Pending",
        "invalid argument: a placement group named `pair` already exists in namespace `job-ID`",
        "member after removal: actor died: actor GroupMember(",
        "second ready true",
        "not found: placement group ID",
        "queued: resources infeasible: placement group ID was removed",
        "running: ok true",
        "resources infeasible: STRICT_SPREAD: 2 bundles need 2 nodes, and there is 1",
        "resources infeasible: no node can ever hold bundle 0 {GPU: 1}: GPU: 1 (node has 0)",
        "invalid argument: bundle 0 reserves nothing: a bundle needs some amount of a resource",
        "detached true",
        "blocked: resources infeasible: placement group ID was removed",
        "not found: placement group ID",
    ];
    assert_eq!(lines.len(), expected.len(), "{out}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.starts_with(want), "{line:?} is not {want:?} in\n{out}");
    }
    assert!(
        lines[11].ends_with("stopped: its placement group ID was removed"),
        "{out}"
    );
    // Every reservation and every bundle name is gone with the groups.
    assert_released(&node).await;
    let sched = node.core().scheduler();
    assert_eq!(&sched.free(), sched.total());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_totals_and_only_its_own_tenants_room() {
    let node = node(2.0);
    let quota = Quota {
        cpus: Some(1.5),
        ..Quota::default()
    };
    node.set_quota("local", quota);
    let out = run_ok(&node, programs::CLUSTER, &["introspect"]).await;
    assert_eq!(
        out,
        "cluster cpus Some(2.0)\nnodes 1\n\
         node alive=true cpus=Some(2.0) shows load=false is me=true\n\
         quota cpus Some(1.5) used cpus Some(1.0)\n\
         available cpus Some(0.5)\navailable after Some(1.5)\n\
         limit `cpus-quota` (1) exceeded: the group's bundles together are more than \
         tenant `local` may ever hold\n"
    );
    // The operator shows the load: what is free on the node, for anyone.
    let mut config = test_config();
    config.num_cpus = Some(2.0);
    config.policy.show_cluster_load = true;
    let open = node_with(config);
    let out = run_ok(&open, programs::CLUSTER, &["introspect"]).await;
    assert_eq!(
        out,
        "cluster cpus Some(2.0)\nnodes 1\n\
         node alive=true cpus=Some(2.0) shows load=true is me=true\n\
         quota cpus None used cpus Some(1.0)\n\
         available cpus Some(1.0)\navailable after Some(2.0)\ntwo cpus allowed\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_keeps_a_bounded_number_of_groups_bundles_and_waiters() {
    let node = node(2.0);
    let out = run_ok(&node, programs::CLUSTER, &["groups-bounds"]).await;
    assert_eq!(
        out,
        "limit `placement-groups` (1024) exceeded: tenant `local` keeps 1024 placement groups\n\
         invalid argument: a placement group needs 1 to 1024 bundles, got 1025\n\
         limit `placement-group-bundles` (4096) exceeded: tenant `local` keeps 4096 bundles; \
         1 more would pass 4096\n\
         waiters past the bound 76, then 76 ready\n"
    );
    assert_released(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_in_a_gpu_bundle_sees_the_bundles_gpus() {
    let mut config = test_config();
    config.num_cpus = Some(2.0);
    config.num_gpus = Some(2);
    let node = node_with(config);
    let out = run_ok(&node, programs::CLUSTER, &["groups-gpu"]).await;
    assert_eq!(
        out,
        "bundle 0 [0] bundle 1 [1] any [0, 1] no gpu asked []\n"
    );
}
