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
    let pg = PlacementGroup::builder(vec![cpus(1.0)], PlacementStrategy::Pack).create();
    println!("{}", error_line(pg));
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
