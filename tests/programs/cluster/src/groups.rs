//! Placement groups and introspection. On a lone node of 2 CPUs:
//! `groups-here` (what a group reserves, what runs in it, what its removal
//! does) and `introspect` (what a guest sees of the cluster and its tenant).

use std::time::Duration;

use fabric::prelude::*;
use fabric::util::{
    GroupState, PlacementGroup, PlacementStrategy, get_placement_group, remove_placement_group,
};
use fabric::{Resources, TaskOptions};

use super::here;

#[fabric::remote]
fn nap(ms: u64) -> String {
    std::thread::sleep(Duration::from_millis(ms));
    here()
}

#[fabric::actor]
struct GroupMember {
    calls: u32,
}

#[fabric::actor]
impl GroupMember {
    fn new() -> Self {
        GroupMember { calls: 0 }
    }

    fn call(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }
}

fn cpus(n: f64) -> Resources {
    Resources::new().cpus(n)
}

fn in_bundle(pg: &PlacementGroup, i: u32) -> TaskOptions {
    TaskOptions::new().placement(pg.bundle(i))
}

fn error_line(r: fabric::Result<impl std::fmt::Debug>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// A group that takes both CPUs, work in it, a second group that waits
/// for the first to go, and what removal does to queued work and actors.
pub fn groups_here() -> fabric::Result<()> {
    let pg = PlacementGroup::builder(vec![cpus(1.0); 2], PlacementStrategy::StrictPack)
        .name("pair")
        .create()?;
    fabric::get(&pg.ready()?)?;
    let table = pg.table()?;
    let same = table
        .bundle_nodes
        .iter()
        .all(|n| n.as_deref() == Some(&here()));
    println!("created {:?} on this node {same}", table.state);
    println!("found by name {}", get_placement_group("pair", None)? == pg);
    println!("free outside {:?}", fabric::available_resources().num_cpus);
    let a = nap::options(in_bundle(&pg, 0)).remote(1)?;
    let b = nap::options(in_bundle(&pg, 1)).remote(1)?;
    let any = nap::options(TaskOptions::new().placement(pg.any_bundle())).remote(1)?;
    let ran = [a, b, any]
        .iter()
        .all(|r| fabric::get(r).ok() == Some(here()));
    println!("ran in bundles {ran}");
    let too_big = nap::options(in_bundle(&pg, 0).num_cpus(2.0)).remote(1);
    println!("{}", error_line(too_big));
    println!("{}", error_line(nap::options(in_bundle(&pg, 7)).remote(1)));
    let hidden = TaskOptions::new().resource(&format!("@pg:{:032x}:0:CPU", pg.id()), 1.0);
    println!("{}", error_line(nap::options(hidden).remote(1)));
    let member = GroupMember::options(ActorOptions::new().placement(pg.bundle(1))).remote()?;
    println!("member call {}", fabric::get(&member.call().remote()?)?);
    let second = PlacementGroup::builder(vec![cpus(1.0)], PlacementStrategy::Pack).create()?;
    println!("second waits {}", !second.wait(Duration::from_millis(300))?);
    println!("second {:?}", second.table()?.state);
    let dup = PlacementGroup::builder(vec![cpus(0.5)], PlacementStrategy::Pack).name("pair");
    println!("{}", error_line(dup.create()));
    remove_placement_group(&pg)?;
    println!(
        "member after removal: {}",
        error_line(fabric::get(&member.call().remote()?))
    );
    println!("second ready {}", second.wait(Duration::from_secs(10))?);
    println!("{}", error_line(pg.ready().and_then(|r| fabric::get(&r))));
    // One CPU in `second`: the first nap runs, the second queues in it and
    // fails when the group goes; the first still finishes.
    let running = nap::options(in_bundle(&second, 0)).remote(400)?;
    std::thread::sleep(Duration::from_millis(100));
    let queued = nap::options(in_bundle(&second, 0)).remote(1)?;
    remove_placement_group(&second)?;
    println!("queued: {}", error_line(fabric::get(&queued)));
    println!(
        "running: {}",
        error_line(fabric::get(&running).map(|n| n == here()))
    );
    never_fits()
}

/// Groups no lone node could ever hold fail at once, naming why.
fn never_fits() -> fabric::Result<()> {
    let spread = PlacementGroup::builder(vec![cpus(1.0); 2], PlacementStrategy::StrictSpread);
    println!("{}", error_line(spread.create()));
    let gpu = PlacementGroup::builder(vec![Resources::new().gpus(1.0)], PlacementStrategy::Pack);
    println!("{}", error_line(gpu.create()));
    let empty = PlacementGroup::builder(vec![Resources::new()], PlacementStrategy::Pack);
    println!("{}", error_line(empty.create()));
    let kept = PlacementGroup::builder(vec![cpus(0.5)], PlacementStrategy::Spread)
        .detached()
        .create()?;
    fabric::get(&kept.ready()?)?;
    println!("detached {:?}", kept.table()?.state == GroupState::Created);
    // Waits behind `kept`; removed while it waits, it leaves the queue.
    let blocked = PlacementGroup::builder(vec![cpus(2.0)], PlacementStrategy::Pack).create()?;
    let waiting = blocked.ready()?;
    remove_placement_group(&blocked)?;
    println!("blocked: {}", error_line(fabric::get(&waiting)));
    remove_placement_group(&kept)?;
    println!("{}", error_line(kept.table()));
    Ok(())
}

/// Every node of a cluster as a guest sees it, sorted, and the totals.
pub fn nodes_seen() -> fabric::Result<()> {
    let total = fabric::cluster_resources();
    println!(
        "cluster cpus {:?} gpus {:?} custom {:?}",
        total.num_cpus, total.num_gpus, total.custom
    );
    let mut lines: Vec<String> = fabric::nodes()
        .iter()
        .map(|n| {
            format!(
                "node head={} alive={} cpus={:?} gpus={:?} custom={:?} load shown={} address set={}",
                n.is_head,
                n.alive,
                n.resources.num_cpus,
                n.resources.num_gpus,
                n.resources.custom,
                n.available.is_some(),
                !n.address.is_empty()
            )
        })
        .collect();
    lines.sort();
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// What a guest sees of its cluster and its tenant.
pub fn introspect() -> fabric::Result<()> {
    let total = fabric::cluster_resources();
    let nodes = fabric::nodes();
    println!("cluster cpus {:?}", total.num_cpus);
    println!("nodes {}", nodes.len());
    for n in &nodes {
        println!(
            "node alive={} cpus={:?} shows load={} is me={}",
            n.alive,
            n.resources.num_cpus,
            n.available.is_some(),
            n.node_id == here()
        );
    }
    let pg = PlacementGroup::builder(vec![cpus(1.0)], PlacementStrategy::Pack).create()?;
    fabric::get(&pg.ready()?)?;
    let tenant = fabric::tenant_resources();
    println!(
        "quota cpus {:?} used cpus {:?}",
        tenant.quota_cpus, tenant.used.num_cpus
    );
    println!(
        "available cpus {:?}",
        fabric::available_resources().num_cpus
    );
    remove_placement_group(&pg)?;
    println!(
        "available after {:?}",
        fabric::available_resources().num_cpus
    );
    // Two CPUs in all: more than a quota of 1.5 ever allows.
    match PlacementGroup::builder(vec![cpus(1.0); 2], PlacementStrategy::Spread).create() {
        Ok(pg) => {
            remove_placement_group(&pg)?;
            println!("two cpus allowed");
        }
        Err(e) => println!("{e}"),
    }
    Ok(())
}

#[fabric::remote]
fn my_gpus() -> Vec<u32> {
    fabric::context().gpu_ids
}

/// Work in GPU bundles sees its bundle's GPUs (on a node of 2 GPUs).
pub fn groups_gpu() -> fabric::Result<()> {
    let pg = PlacementGroup::builder(
        vec![Resources::new().cpus(1.0).gpus(1.0); 2],
        PlacementStrategy::StrictPack,
    )
    .create()?;
    fabric::get(&pg.ready()?)?;
    let with_gpu = |p| TaskOptions::new().placement(p).num_gpus(1.0);
    let first = my_gpus::options(with_gpu(pg.bundle(0))).remote()?;
    let second = my_gpus::options(with_gpu(pg.bundle(1))).remote()?;
    let any = my_gpus::options(with_gpu(pg.any_bundle())).remote()?;
    let none = my_gpus::options(TaskOptions::new().placement(pg.bundle(0))).remote()?;
    println!(
        "bundle 0 {:?} bundle 1 {:?} any {:?} no gpu asked {:?}",
        fabric::get(&first)?,
        fabric::get(&second)?,
        fabric::get(&any)?,
        fabric::get(&none)?
    );
    remove_placement_group(&pg)
}

/// The bounds on what one tenant keeps: groups, bundles, waiters.
pub fn groups_bounds() -> fabric::Result<()> {
    let tiny = || vec![Resources::new().memory(1)];
    let make = |bundles| PlacementGroup::builder(bundles, PlacementStrategy::Pack).create();
    let groups = (0..1024)
        .map(|_| make(tiny()))
        .collect::<fabric::Result<Vec<_>>>()?;
    println!("{}", error_line(make(tiny())));
    for g in &groups {
        remove_placement_group(g)?;
    }
    println!(
        "{}",
        error_line(make(vec![Resources::new().memory(1); 1025]))
    );
    let wide = (0..4)
        .map(|_| make(vec![Resources::new().memory(1); 1024]))
        .collect::<fabric::Result<Vec<_>>>()?;
    println!("{}", error_line(make(tiny())));
    for g in &wide {
        remove_placement_group(g)?;
    }
    // A group that waits (another holds both CPUs) and its waiters.
    let full = make(vec![cpus(2.0)])?;
    fabric::get(&full.ready()?)?;
    let waiting = make(vec![cpus(1.0)])?;
    // Past 1,024 waiting at once, a ready reference fails at once.
    let refs = (0..1100)
        .map(|_| waiting.ready())
        .collect::<fabric::Result<Vec<_>>>()?;
    let (over, _) = fabric::wait(&refs, 76, Some(Duration::from_secs(10)))?;
    let limited = over
        .iter()
        .filter(|r| matches!(fabric::get(*r), Err(fabric::Error::LimitExceeded { .. })))
        .count();
    let (more, _) = fabric::wait(&refs, 77, Some(Duration::from_millis(300)))?;
    println!(
        "waiters past the bound {limited}, then {} ready",
        more.len()
    );
    remove_placement_group(&waiting)?;
    remove_placement_group(&full)?;
    Ok(())
}

/// Each strategy across a cluster of three nodes of 2 CPUs: where the
/// bundles go, that work runs there, and what waits or fails.
pub fn groups_across() -> fabric::Result<()> {
    let one = || cpus(1.0);
    let nodes_of = |pg: &PlacementGroup| -> fabric::Result<Vec<String>> {
        Ok(pg
            .table()?
            .bundle_nodes
            .into_iter()
            .map(|n| n.unwrap_or_default())
            .collect())
    };
    let distinct = |v: &[String]| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    // First, while every node is idle (the head places by what nodes last
    // reported free): packed onto one node.
    let half = || cpus(0.5);
    let packed = PlacementGroup::builder(vec![half(); 2], PlacementStrategy::Pack).create()?;
    fabric::get(&packed.ready()?)?;
    println!("pack on {} node", distinct(&nodes_of(&packed)?));
    remove_placement_group(&packed)?;
    let pack = PlacementGroup::builder(vec![half(); 2], PlacementStrategy::StrictPack).create()?;
    fabric::get(&pack.ready()?)?;
    println!("strict pack on {} node", distinct(&nodes_of(&pack)?));
    remove_placement_group(&pack)?;
    let spread =
        PlacementGroup::builder(vec![one(); 3], PlacementStrategy::StrictSpread).create()?;
    fabric::get(&spread.ready()?)?;
    let at = nodes_of(&spread)?;
    let ran = (0..3)
        .map(|i| nap::options(in_bundle(&spread, i)).remote(1))
        .collect::<fabric::Result<Vec<_>>>()?;
    let ran = fabric::get_all(&ran)?;
    println!(
        "strict spread on {} nodes, work where its bundle is {}",
        distinct(&at),
        ran == at
    );
    remove_placement_group(&spread)?;
    let soft = PlacementGroup::builder(vec![one(); 3], PlacementStrategy::Spread).create()?;
    fabric::get(&soft.ready()?)?;
    println!("spread on {} nodes", distinct(&nodes_of(&soft)?));
    remove_placement_group(&soft)?;
    let wide = PlacementGroup::builder(vec![one(); 4], PlacementStrategy::StrictSpread).create()?;
    println!(
        "4 strict spread bundles on 3 nodes wait {}",
        !wide.wait(Duration::from_millis(500))?
    );
    println!("state {:?}", wide.table()?.state);
    remove_placement_group(&wide)?;
    let big = PlacementGroup::builder(vec![cpus(1.5); 2], PlacementStrategy::StrictPack);
    println!("{}", error_line(big.create()));
    Ok(())
}

/// A group of one bundle on one of two `spot` nodes, and a restartable
/// actor in it. Says where the bundle is ("bundle on N", then the test
/// kills N), calls the actor until it answered 5 times from the bundle's
/// new node, and says where that is.
pub fn group_kill() -> fabric::Result<()> {
    let bundle = cpus(1.0).custom("spot", 1.0);
    let pg = PlacementGroup::builder(vec![bundle], PlacementStrategy::Pack).create()?;
    fabric::get(&pg.ready()?)?;
    let first = pg.table()?.bundle_nodes[0].clone().unwrap_or_default();
    let member = super::Durable::options(
        ActorOptions::new()
            .placement(pg.bundle(0))
            .max_restarts(1)
            .max_task_retries(3),
    )
    .remote()?;
    let (node, _, _) = fabric::get(&member.incr().remote()?)?;
    println!("actor in its bundle {}", node == first);
    println!("bundle on {first}");
    let started = std::time::Instant::now();
    let mut moved = 0;
    while moved < 5 && started.elapsed() < Duration::from_secs(90) {
        let (node, _, lives) = fabric::get(&member.incr().remote()?)?;
        if node != first {
            moved += 1;
            if moved == 5 {
                fabric::get(&pg.ready()?)?;
                let now = pg.table()?.bundle_nodes[0].clone().unwrap_or_default();
                println!(
                    "moved to the bundle's new node {} in life {lives}",
                    node == now
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("done");
    remove_placement_group(&pg)
}

/// A detached, named group across the head and a worker (the head is then
/// killed and started again by the test).
pub fn group_keep() -> fabric::Result<()> {
    let pg = PlacementGroup::builder(vec![cpus(0.5); 2], PlacementStrategy::StrictSpread)
        .name("kept")
        .namespace("shared")
        .detached()
        .create()?;
    fabric::get(&pg.ready()?)?;
    let nodes = pg.table()?.bundle_nodes;
    println!("kept on {} nodes", nodes.iter().flatten().count());
    Ok(())
}

/// The group `group-keep` made, found by name after the head's restart.
pub fn group_find() -> fabric::Result<()> {
    let pg = get_placement_group("kept", Some("shared"))?;
    fabric::get(&pg.ready()?)?;
    let table = pg.table()?;
    let nodes: std::collections::BTreeSet<_> = table.bundle_nodes.iter().flatten().collect();
    let ran = fabric::get(&nap::options(in_bundle(&pg, 1).num_cpus(0.5)).remote(1)?)?;
    println!(
        "found {:?} on {} nodes, work in its bundle {}",
        table.state,
        nodes.len(),
        Some(&ran) == table.bundle_nodes[1].as_ref()
    );
    remove_placement_group(&pg)
}
