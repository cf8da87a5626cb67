//! A job's tasks as people look at them, from what every node kept (see
//! [`crate::task_events`]): a [`TaskSummary`] (counts by state, failures
//! with their errors, the slowest) for the dashboard and the Jobs API, and
//! a Chrome trace for `fabric timeline` (as `ray timeline` writes; open it
//! in `chrome://tracing` or <https://ui.perfetto.dev>).
//!
//! ```
//! use fabric_host::ids::NodeId;
//! use fabric_host::task_events::{CallKind, JobEventsRead, JobTasksHere, TaskEvent};
//! use fabric_host::task_view::{NodeTasks, TaskSummary, chrome_trace};
//! let ran = TaskEvent::new(CallKind::Task, 1, "square".into());
//! let here = JobTasksHere {
//!     kept: Some(JobEventsRead { events: vec![ran], ..Default::default() }),
//!     ..Default::default()
//! };
//! let nodes = [NodeTasks { node: NodeId::random(), answer: Ok(here) }];
//! let summary = TaskSummary::of(&nodes, 0);
//! assert_eq!(summary.calls.ended, 1);
//! let trace = chrome_trace(&nodes, 0);
//! assert!(trace["traceEvents"].as_array().unwrap().iter().any(|e| e["name"] == "square"));
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};

use crate::ids::NodeId;
use crate::outcomes::{Outcome, TaskCountsRead};
use crate::task_events::{CallKind, JobTasksHere, TaskEvent};

/// `now_us`, or (0) the time now.
fn now_or(now_us: u64) -> u64 {
    match now_us {
        0 => crate::task_events::now_us(),
        t => t,
    }
}

/// One node's answer about a job's tasks, or why there is none.
#[derive(Clone, Debug)]
pub struct NodeTasks {
    pub node: NodeId,
    pub answer: Result<JobTasksHere, String>,
}

/// The most failures and slowest calls a summary lists.
pub const LISTED: usize = 20;

/// A job's tasks in numbers, and the calls worth a look.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskSummary {
    /// The job's tasks (not actor calls), over every node that submitted
    /// some: submitted, and how many ended each way.
    pub tasks: TaskStates,
    /// Every attempt and actor call the nodes kept.
    pub calls: CallCounts,
    /// The newest failed attempts and calls, newest first.
    pub failures: Vec<Value>,
    /// The attempts and calls that ran longest, longest first.
    pub slowest: Vec<Value>,
    /// Per node: kept, dropped, unreachable.
    pub nodes: Vec<Value>,
    /// Whether anything is missing: a node dropped events past its bounds,
    /// had more unfinished attempts than it lists, or could not be asked.
    pub truncated: bool,
}

/// A job's tasks by state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskStates {
    pub submitted: u64,
    /// Not ended yet: `running`, `queued` (on a node, waiting for their
    /// arguments or resources) and the rest (waiting on other tasks'
    /// results, or on their way to a node).
    pub pending: u64,
    pub running: u64,
    pub queued: u64,
    pub succeeded: u64,
    /// Ended other than succeeded (cancelled ones included: `ended` says
    /// how each ended).
    pub failed: u64,
    /// Ended, by outcome label (`succeeded`, `trap`, `cancelled`, ...).
    pub ended: BTreeMap<&'static str, u64>,
}

/// What the nodes kept, counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallCounts {
    /// Attempts and calls that ended (task retries count each).
    pub ended: u64,
    pub failed: u64,
    pub actor_calls: u64,
    /// Events the nodes dropped past their bounds.
    pub dropped: u64,
}

/// An event as the API shows it.
fn event_json(node: NodeId, e: &TaskEvent, running: bool) -> Value {
    let ms = |a: u64, b: u64| (a > 0 && b >= a).then(|| (b - a) as f64 / 1000.0);
    json!({
        "kind": e.kind.label(),
        "id": format!("{:032x}", e.id),
        "function": &*e.function,
        "actor_id": e.actor.as_ref().map(|(id, _)| id.to_string()),
        "class": e.actor.as_ref().map(|(_, c)| c.to_string()),
        "attempt": e.attempt,
        "node": node.to_string(),
        "queued_us": e.queued_us,
        "started_us": (e.started_us > 0).then_some(e.started_us),
        "finished_us": (e.finished_us > 0).then_some(e.finished_us),
        "wait_ms": ms(e.queued_us, e.started_us),
        "run_ms": ms(e.started_us, e.finished_us),
        "bytes_in": e.bytes_in,
        "bytes_out": e.bytes_out,
        "outcome": state(e, running),
        "error": e.error.as_deref(),
    })
}

/// How a call ended, or (`unfinished`) where it is: running, or queued.
fn state(e: &TaskEvent, unfinished: bool) -> &'static str {
    match (unfinished, e.started_us) {
        (false, _) => e.outcome.label(),
        (true, 0) => "queued",
        (true, _) => "running",
    }
}

fn run_us(e: &TaskEvent) -> u64 {
    if e.started_us == 0 {
        0
    } else {
        e.finished_us.saturating_sub(e.started_us)
    }
}

impl TaskSummary {
    /// The summary of what `nodes` answered (`now_us`: the time unfinished
    /// attempts are measured to; 0 for now).
    pub fn of(nodes: &[NodeTasks], now_us: u64) -> TaskSummary {
        let now_us = now_or(now_us);
        let mut s = TaskSummary::default();
        let mut counts = TaskCountsRead::default();
        let mut ended: Vec<(NodeId, &TaskEvent)> = Vec::new();
        let mut unfinished: Vec<(NodeId, &TaskEvent)> = Vec::new();
        for n in nodes {
            let entry = s.node_entry(n);
            s.nodes.push(entry);
            let Ok(here) = &n.answer else { continue };
            if let Some(c) = &here.counts {
                counts.submitted += c.submitted;
                for (i, v) in c.ended.iter().enumerate() {
                    counts.ended[i] += v;
                }
            }
            ended.extend(
                here.kept
                    .iter()
                    .flat_map(|k| &k.events)
                    .map(|e| (n.node, e)),
            );
            unfinished.extend(here.unfinished.iter().map(|e| (n.node, e)));
        }
        s.tasks = states(&counts, &unfinished);
        for (_, e) in &ended {
            s.calls.ended += 1;
            s.calls.failed += u64::from(e.outcome != Outcome::Succeeded);
            s.calls.actor_calls += u64::from(e.kind == CallKind::ActorCall);
        }
        let mut failed: Vec<&(NodeId, &TaskEvent)> = ended
            .iter()
            .filter(|(_, e)| e.outcome != Outcome::Succeeded)
            .collect();
        failed.sort_by_key(|(_, e)| std::cmp::Reverse(e.finished_us));
        s.failures = failed
            .iter()
            .take(LISTED)
            .map(|(n, e)| event_json(*n, e, false))
            .collect();
        // (how long it ran, or has run so far; where; the call; unfinished)
        let mut by_time: Vec<(u64, NodeId, &TaskEvent, bool)> = ended
            .iter()
            .map(|(n, e)| (run_us(e), *n, *e, false))
            .chain(
                unfinished
                    .iter()
                    .filter(|(_, e)| e.started_us > 0)
                    .map(|(n, e)| (now_us.saturating_sub(e.started_us), *n, *e, true)),
            )
            .collect();
        by_time.sort_by_key(|(us, ..)| std::cmp::Reverse(*us));
        s.slowest = by_time
            .iter()
            .take(LISTED)
            .map(|&(us, n, e, running)| {
                let mut v = event_json(n, e, running);
                v["run_ms"] = json!(us as f64 / 1000.0);
                v
            })
            .collect();
        s
    }

    fn node_entry(&mut self, n: &NodeTasks) -> Value {
        match &n.answer {
            Ok(here) => {
                let (kept, dropped) = here
                    .kept
                    .as_ref()
                    .map_or((0, 0), |k| (k.events.len(), k.dropped));
                self.calls.dropped += dropped;
                self.truncated |= dropped > 0 || here.unfinished_not_shown > 0;
                json!({
                    "node": n.node.to_string(),
                    "kept": kept,
                    "dropped": dropped,
                    "unfinished": here.unfinished.len() as u64 + here.unfinished_not_shown,
                })
            }
            Err(why) => {
                self.truncated = true;
                json!({ "node": n.node.to_string(), "unreachable": why })
            }
        }
    }
}

fn states(counts: &TaskCountsRead, unfinished: &[(NodeId, &TaskEvent)]) -> TaskStates {
    let running = unfinished.iter().filter(|(_, e)| e.started_us > 0).count() as u64;
    let queued = unfinished.len() as u64 - running;
    TaskStates {
        submitted: counts.submitted,
        pending: counts.pending(),
        running,
        queued,
        succeeded: counts.ended[Outcome::Succeeded as usize],
        failed: counts.failed(),
        ended: Outcome::ALL
            .iter()
            .filter(|o| counts.ended[**o as usize] > 0)
            .map(|o| (o.label(), counts.ended[*o as usize]))
            .collect(),
    }
}

/// Lanes that calls take in turn: a call takes the lane that has been
/// free longest, or a new one (a min-heap: `O(log n)` a call).
#[derive(Default)]
struct LaneSet {
    /// (when it is free again, its number), earliest first.
    free_at: std::collections::BinaryHeap<std::cmp::Reverse<(u64, u64)>>,
    count: u64,
}

impl LaneSet {
    /// The lane (0-based) for a call from `start` to `end`, and whether
    /// it is new.
    fn take(&mut self, start: u64, end: u64) -> (u64, bool) {
        let end = end.max(start + 1);
        match self.free_at.peek() {
            Some(std::cmp::Reverse((free, lane))) if *free <= start => {
                let lane = *lane;
                self.free_at.pop();
                self.free_at.push(std::cmp::Reverse((end, lane)));
                (lane, false)
            }
            _ => {
                let lane = self.count;
                self.count += 1;
                self.free_at.push(std::cmp::Reverse((end, lane)));
                (lane, true)
            }
        }
    }
}

/// Lanes of one node in a trace: tasks share numbered lanes (one per
/// instance running at once), each actor has its own (more, for calls of
/// a concurrent actor that overlap), and calls that never started are
/// instants on lane 0.
#[derive(Default)]
struct Lanes {
    tasks: LaneSet,
    /// Per actor: its lanes, and their numbers (in the order they came).
    actors: HashMap<crate::ids::ActorId, (LaneSet, Vec<u64>)>,
    /// Actor lanes numbered so far.
    actor_lanes: u64,
    names: Vec<(u64, String)>,
    unstarted: bool,
}

/// Where actor lanes start (task lanes are numbered from 1; trace viewers
/// read a lane's number as 32 bits).
const ACTOR_LANES: u64 = 1 << 20;

impl Lanes {
    fn lane(&mut self, e: &TaskEvent, end: u64) -> u64 {
        if e.started_us == 0 {
            if !self.unstarted {
                self.unstarted = true;
                self.names.push((0, "not started".into()));
            }
            return 0;
        }
        let Some((id, class)) = &e.actor else {
            let (lane, new) = self.tasks.take(e.started_us, end);
            if new {
                self.names
                    .push((lane + 1, format!("task instance {}", lane + 1)));
            }
            return lane + 1;
        };
        let (lanes, tids) = self.actors.entry(*id).or_default();
        let (lane, new) = lanes.take(e.started_us, end);
        if new {
            let tid = ACTOR_LANES + self.actor_lanes;
            self.actor_lanes += 1;
            tids.push(tid);
            let more = if lane > 0 {
                format!(" #{}", lane + 1)
            } else {
                String::new()
            };
            self.names
                .push((tid, format!("actor {class}({}){more}", id.short())));
        }
        tids[lane as usize]
    }
}

/// Job tasks as a Chrome trace (the JSON object format): a process per
/// node, a lane per task instance running at once and per actor; each
/// attempt or call that started is a slice from its start to its end,
/// with when it queued, its bytes in and out and how it ended in its
/// arguments; one that never started is an instant at its end. `now_us`
/// (0: now) ends the slices of attempts still running.
pub fn chrome_trace(nodes: &[NodeTasks], now_us: u64) -> Value {
    let now_us = now_or(now_us);
    let mut out = Vec::new();
    let mut unreachable = Vec::new();
    let mut dropped = 0;
    for (pid, n) in nodes.iter().enumerate() {
        let pid = pid as u64 + 1;
        let here = match &n.answer {
            Ok(here) => here,
            Err(why) => {
                unreachable.push(json!({ "node": n.node.to_string(), "why": why }));
                continue;
            }
        };
        dropped += here.kept.as_ref().map_or(0, |k| k.dropped);
        out.push(json!({"name": "process_name", "ph": "M", "pid": pid,
            "args": { "name": format!("node {}", n.node.short()) }}));
        let mut events: Vec<(&TaskEvent, bool)> = here
            .kept
            .iter()
            .flat_map(|k| &k.events)
            .map(|e| (e, false))
            .chain(here.unfinished.iter().map(|e| (e, true)))
            .collect();
        events.sort_by_key(|(e, _)| (e.started_us.max(e.queued_us), e.finished_us));
        let mut lanes = Lanes::default();
        for (e, running) in events {
            out.push(trace_event(e, running, pid, now_us, &mut lanes));
        }
        for (tid, name) in lanes.names {
            out.push(
                json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": { "name": name }}),
            );
        }
    }
    json!({
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": { "dropped": dropped, "unreachable": unreachable },
    })
}

fn trace_event(e: &TaskEvent, running: bool, pid: u64, now_us: u64, lanes: &mut Lanes) -> Value {
    let end = if running {
        now_us.max(e.started_us)
    } else {
        e.finished_us
    };
    let tid = lanes.lane(e, end);
    let name = match &e.actor {
        Some((_, class)) => format!("{class}.{}", e.function),
        None => e.function.to_string(),
    };
    let mut args = json!({
        "id": format!("{:032x}", e.id),
        "attempt": e.attempt,
        "queued_us": e.queued_us,
        "bytes_in": e.bytes_in,
        "bytes_out": e.bytes_out,
        "outcome": state(e, running),
    });
    if e.started_us > 0 {
        args["wait_ms"] = json!(e.started_us.saturating_sub(e.queued_us) as f64 / 1000.0);
    }
    if let Some(error) = &e.error {
        args["error"] = json!(error);
    }
    if e.started_us == 0 {
        return json!({"name": name, "cat": e.kind.label(), "ph": "i", "s": "t",
            "ts": end.max(e.queued_us), "pid": pid, "tid": tid, "args": args});
    }
    json!({"name": name, "cat": e.kind.label(), "ph": "X", "ts": e.started_us,
        "dur": end.saturating_sub(e.started_us), "pid": pid, "tid": tid, "args": args})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FabricError;
    use crate::task_events::JobEventsRead;
    use std::sync::Arc;

    fn ran(id: u128, start: u64, end: u64) -> TaskEvent {
        let mut e = TaskEvent::new(CallKind::Task, id, "f".into());
        e.queued_us = start - 5;
        e.started_us = start;
        e.finished_us = end;
        e
    }

    fn node(events: Vec<TaskEvent>, unfinished: Vec<TaskEvent>) -> NodeTasks {
        NodeTasks {
            node: NodeId::random(),
            answer: Ok(JobTasksHere {
                kept: Some(JobEventsRead {
                    events,
                    dropped: 0,
                    final_counts: None,
                }),
                unfinished,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn overlapping_tasks_get_their_own_lanes_and_later_ones_reuse_them() {
        let n = node(
            vec![ran(1, 100, 200), ran(2, 150, 250), ran(3, 210, 300)],
            vec![],
        );
        let trace = chrome_trace(&[n], 1000);
        let lanes: Vec<u64> = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| e["tid"].as_u64().unwrap())
            .collect();
        assert_eq!(lanes, [1, 2, 1]);
    }

    #[test]
    fn a_concurrent_actors_overlapping_calls_get_lanes_and_unstarted_calls_an_instant() {
        let actor = (crate::ids::ActorId::random(), Arc::from("Pool"));
        let call = |id, start, end| {
            let mut e = ran(id, start, end);
            e.kind = CallKind::ActorCall;
            e.actor = Some(actor.clone());
            e
        };
        let mut never = ran(9, 100, 120);
        never.started_us = 0;
        let n = node(vec![call(1, 100, 200), call(2, 150, 250), never], vec![]);
        let trace = chrome_trace(&[n], 1000);
        let events = trace["traceEvents"].as_array().unwrap();
        let tid = |id: u128| {
            let e = events
                .iter()
                .find(|e| e["args"]["id"] == format!("{id:032x}"))
                .unwrap();
            (
                e["ph"].as_str().unwrap().to_string(),
                e["tid"].as_u64().unwrap(),
            )
        };
        assert_eq!(
            tid(1).1 + 1,
            tid(2).1,
            "overlapping calls of one actor, side by side"
        );
        assert_eq!(
            tid(9),
            ("i".to_string(), 0),
            "never started: an instant on lane 0"
        );
    }

    #[test]
    fn the_summary_lists_failures_and_the_slowest_and_says_what_is_missing() {
        let failed = ran(1, 100, 110).ended::<()>(&Err(FabricError::Timeout));
        let mut running = ran(3, 100, 0);
        running.finished_us = 0;
        let nodes = [
            node(vec![failed, ran(2, 100, 900)], vec![running]),
            NodeTasks {
                node: NodeId::random(),
                answer: Err("unreachable".into()),
            },
        ];
        let s = TaskSummary::of(&nodes, 5000);
        assert_eq!(s.calls.failed, 1);
        assert_eq!(s.failures[0]["outcome"], "timeout");
        assert_eq!(s.slowest[0]["outcome"], "running", "still running, 4.9 ms");
        assert_eq!(s.slowest[1]["run_ms"], 0.8);
        assert_eq!(s.tasks.running, 1);
        assert!(s.truncated, "a node could not be asked");
    }
}
