//! Scenarios of collectives among a group of actors: every collective on
//! members placed where the test says, members that call different
//! collectives, and a member that dies while the others wait for it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fabric::prelude::*;
use fabric::util::collective::{self, ReduceOp};

use crate::here;

/// What a member saw of one run of every collective.
type Report = (
    u32,
    u32,
    String,
    Vec<f64>,
    i64,
    Vec<String>,
    String,
    (u64, u64),
);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The kind of a collective's outcome, for the driver to print.
fn kind<T>(r: &fabric::Result<T>) -> &'static str {
    match r {
        Ok(_) => "Ok",
        Err(fabric::Error::ActorDied(_)) => "ActorDied",
        Err(fabric::Error::InvalidArgument(_)) => "InvalidArgument",
        Err(_) => "another error",
    }
}

#[fabric::actor]
struct Member;

#[fabric::actor]
impl Member {
    fn new() -> Self {
        Member
    }

    /// Every collective once, in the same order as the other members.
    fn battery(&self, group: String) -> fabric::Result<Report> {
        let rank = collective::get_rank(&group)? as u32;
        let size = collective::get_collective_group_size(&group)? as u32;
        let r = f64::from(rank);
        let sum = collective::allreduce(vec![r + 1.0, r * 10.0], &group, ReduceOp::Sum)?;
        let max = collective::allreduce(i64::from(rank) * 7, &group, ReduceOp::Max)?;
        let nodes = collective::allgather(here(), &group)?;
        let mine = match rank {
            1 => format!("from rank 1 on {}", here()),
            _ => String::new(),
        };
        let told = collective::broadcast(mine, 1, &group)?;
        // The barrier: members arrive 150 ms apart; none may leave before
        // the last one came.
        std::thread::sleep(Duration::from_millis(150 * u64::from(rank)));
        let arrived = now_ms();
        collective::barrier(&group)?;
        let left = now_ms();
        Ok((rank, size, here(), sum, max, nodes, told, (arrived, left)))
    }

    /// An allreduce, then a barrier: the kind of each outcome.
    fn reduce_then_barrier(&self, group: String) -> String {
        let first = collective::allreduce(1u64, &group, ReduceOp::Sum);
        let then = collective::barrier(&group);
        format!("{}, then {}", kind(&first), kind(&then))
    }

    /// A barrier alone (called against another member's allreduce).
    fn barrier_only(&self, group: String) -> String {
        kind(&collective::barrier(&group)).to_string()
    }

    /// Stalls for `ms` (it is killed, or its node is, meanwhile).
    fn stall(&self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

fn on(node: &str) -> ActorOptions {
    match node {
        "here" => ActorOptions::new(),
        n => ActorOptions::new().on_node(n, false),
    }
}

/// Every collective on members placed on `nodes` (one per node, by rank),
/// then two members calling different collectives.
pub(crate) fn collectives(nodes: &[String]) -> fabric::Result<()> {
    let members = nodes
        .iter()
        .map(|n| Member::options(on(n)).remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    collective::create_collective_group(&members, "all")?;
    let calls = members
        .iter()
        .map(|m| m.battery("all".to_string()).remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    let reports = fabric::get_all(&calls)?;
    print_battery(nodes, &reports);

    let pair = &members[..2];
    collective::create_collective_group(pair, "mixed")?;
    let a = pair[0].reduce_then_barrier("mixed".to_string()).remote()?;
    let b = pair[1].barrier_only("mixed".to_string()).remote()?;
    println!(
        "different collectives: {} and {}",
        fabric::get(&a)?,
        fabric::get(&b)?
    );
    collective::destroy_collective_group("all")?;
    let again = members[0].battery("all".to_string()).remote()?;
    // Its actor is gone, or its name is (whichever the member sees first).
    let gone = matches!(
        fabric::get(&again),
        Err(fabric::Error::ActorDied(_) | fabric::Error::NotFound(_))
    );
    println!("after destroy, a collective fails as gone: {gone}");
    // The same name made anew: the members, who knew the old group, find
    // the new one.
    collective::create_collective_group(&members, "all")?;
    let calls = members
        .iter()
        .map(|m| m.battery("all".to_string()).remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    let same = fabric::get_all(&calls)?
        .iter()
        .zip(&reports)
        .all(|(new, old)| new.3 == old.3 && new.5 == old.5);
    println!("made anew under the same name, the same results: {same}");
    Ok(())
}

fn print_battery(nodes: &[String], reports: &[Report]) {
    let n = reports.len();
    let ranks: Vec<u32> = reports.iter().map(|r| r.0).collect();
    println!("ranks {ranks:?} of {}", reports[0].1);
    let placed = reports
        .iter()
        .zip(nodes)
        .all(|(r, n)| n == "here" || r.2 == *n);
    println!("members where asked: {placed}");
    let want: Vec<f64> = vec![
        (1..=n).map(|i| i as f64).sum(),
        (0..n).map(|i| i as f64 * 10.0).sum(),
    ];
    let sums_right = reports.iter().all(|r| r.3 == want);
    println!("allreduce sum {want:?} on every member: {sums_right}");
    let max_right = reports.iter().all(|r| r.4 == 7 * (n as i64 - 1));
    println!("allreduce max {} on every member: {max_right}", 7 * (n - 1));
    let by_rank: Vec<String> = reports.iter().map(|r| r.2.clone()).collect();
    let gathered = reports.iter().all(|r| r.5 == by_rank);
    println!("allgather: every member has each member's node, by rank: {gathered}");
    let told = format!("from rank 1 on {}", reports[1].2);
    let broadcast = reports.iter().all(|r| r.6 == told);
    println!("broadcast from rank 1 on every member: {broadcast}");
    let last_in = reports.iter().map(|r| r.7.0).max().unwrap_or(0);
    let first_out = reports.iter().map(|r| r.7.1).min().unwrap_or(0);
    println!(
        "barrier: no member left before the last came: {}",
        first_out >= last_in
    );
}

/// Three members, the last on `victim` ("here": the driver kills it);
/// the others on `others`. The others wait in an allreduce for the last
/// one, which stalls until it (or its node) is killed: they fail with
/// `actor-died`, and so does their next collective.
pub(crate) fn collective_kill(victim: &str, others: &str) -> fabric::Result<()> {
    let members = [others, others, victim]
        .iter()
        .map(|n| Member::options(on(n)).remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    collective::create_collective_group(&members, "doomed")?;
    let stalled = members[2].stall(120_000).remote()?;
    let waiting = members[..2]
        .iter()
        .map(|m| m.reduce_then_barrier("doomed".to_string()).remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_millis(500));
    let pending = fabric::wait(&waiting, 1, Some(Duration::ZERO))?
        .0
        .is_empty();
    println!("submitted; the others wait for the last member: {pending}");
    let killed = Instant::now();
    if victim == "here" {
        members[2].kill()?;
    }
    let outcomes = fabric::get_all(&waiting)?;
    let within = killed.elapsed() < Duration::from_secs(1);
    println!("the others: {outcomes:?}");
    if victim == "here" {
        println!("within a second of the kill: {within}");
    }
    println!("the stalled member: {}", kind(&fabric::get(&stalled)));
    Ok(())
}
