//! A job's task events on the wire: what a node answers the head, and the
//! head a client ([`to_pb`] and [`from_pb`] at the edge; the rest of the
//! code sees [`crate::task_view::NodeTasks`]).

use wasmfabric_proto::v1 as pb;

use crate::ids::{ActorId, NodeId};
use crate::outcomes::{Outcome, TaskCountsRead};
use crate::task_events::{CallKind, JobEventsRead, JobTasksHere, TaskEvent};
use crate::task_view::NodeTasks;
use crate::wire::{id_bytes, parse_id};

fn event_to_pb(e: &TaskEvent, finished: bool) -> pb::TaskEventRecord {
    let (actor_id, class) = match &e.actor {
        Some((id, class)) => (id_bytes(id.as_u128()), class.to_string()),
        None => (Default::default(), String::new()),
    };
    pb::TaskEventRecord {
        kind: e.kind.label().into(),
        id: id_bytes(e.id),
        function: e.function.to_string(),
        actor_id,
        class,
        attempt: e.attempt,
        queued_us: e.queued_us,
        started_us: e.started_us,
        finished_us: e.finished_us,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        outcome: if finished {
            e.outcome.label().into()
        } else {
            String::new()
        },
        error: e.error.as_deref().unwrap_or_default().into(),
    }
}

/// An event from the wire; `None` for one this build cannot read (a kind
/// or outcome it does not know, a malformed id).
fn event_from_pb(e: pb::TaskEventRecord) -> Option<TaskEvent> {
    let actor = if e.actor_id.is_empty() {
        None
    } else {
        let id = ActorId::from_u128(parse_id(&e.actor_id).ok()?);
        Some((id, e.class.into()))
    };
    let outcome = match e.outcome.as_str() {
        "" => Outcome::Succeeded, // unfinished: `finished_us` is 0
        label => *Outcome::ALL.iter().find(|o| o.label() == label)?,
    };
    Some(TaskEvent {
        kind: CallKind::from_label(&e.kind)?,
        id: parse_id(&e.id).ok()?,
        function: e.function.into(),
        actor,
        attempt: e.attempt,
        queued_us: e.queued_us,
        started_us: e.started_us,
        finished_us: e.finished_us,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        outcome,
        error: (!e.error.is_empty()).then(|| e.error.into_boxed_str()),
    })
}

fn counts_to_pb(c: &TaskCountsRead) -> pb::TaskCounts {
    pb::TaskCounts {
        submitted: c.submitted,
        ended: Outcome::ALL
            .iter()
            .filter(|o| c.ended[**o as usize] > 0)
            .map(|o| (o.label().to_string(), c.ended[*o as usize]))
            .collect(),
    }
}

fn counts_from_pb(c: pb::TaskCounts) -> TaskCountsRead {
    let mut read = TaskCountsRead {
        submitted: c.submitted,
        ..Default::default()
    };
    for o in Outcome::ALL {
        read.ended[o as usize] = c.ended.get(o.label()).copied().unwrap_or(0);
    }
    read
}

/// What node `node` knows of a job's tasks, for the wire.
pub fn here_to_pb(node: NodeId, here: &JobTasksHere) -> pb::NodeTasks {
    let (events, dropped) = match &here.kept {
        Some(k) => (
            k.events.iter().map(|e| event_to_pb(e, true)).collect(),
            k.dropped,
        ),
        None => (Vec::new(), 0),
    };
    pb::NodeTasks {
        node_id: id_bytes(node.as_u128()),
        events,
        dropped,
        unfinished: here
            .unfinished
            .iter()
            .map(|e| event_to_pb(e, false))
            .collect(),
        unfinished_not_shown: here.unfinished_not_shown,
        counts: here.counts.as_ref().map(counts_to_pb),
        unreachable: String::new(),
        kept: here.kept.is_some(),
    }
}

/// One node's answer (or why there is none), for the wire.
pub fn to_pb(n: &NodeTasks) -> pb::NodeTasks {
    match &n.answer {
        Ok(here) => here_to_pb(n.node, here),
        Err(why) => pb::NodeTasks {
            node_id: id_bytes(n.node.as_u128()),
            unreachable: why.clone(),
            ..Default::default()
        },
    }
}

/// One node's answer from the wire; events this build cannot read are
/// left out (and counted as dropped).
pub fn from_pb(n: pb::NodeTasks) -> Result<NodeTasks, tonic::Status> {
    let node = NodeId::from_u128(parse_id(&n.node_id)?);
    if !n.unreachable.is_empty() {
        return Ok(NodeTasks {
            node,
            answer: Err(n.unreachable),
        });
    }
    let read_all = |events: Vec<pb::TaskEventRecord>| {
        let total = events.len();
        let read: Vec<TaskEvent> = events.into_iter().filter_map(event_from_pb).collect();
        let unread = (total - read.len()) as u64;
        (read, unread)
    };
    let (events, unread) = read_all(n.events);
    let (unfinished, unread_unfinished) = read_all(n.unfinished);
    let kept = n.kept.then(|| JobEventsRead {
        events,
        dropped: n.dropped + unread,
        final_counts: None,
    });
    Ok(NodeTasks {
        node,
        answer: Ok(JobTasksHere {
            kept,
            unfinished,
            unfinished_not_shown: n.unfinished_not_shown + unread_unfinished,
            counts: n.counts.map(counts_from_pb),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FabricError;

    #[test]
    fn an_answer_comes_back_as_it_went() {
        let mut done = TaskEvent::new(CallKind::ActorCall, 7, "step".into())
            .ended::<()>(&Err(FabricError::Timeout));
        done.actor = Some((ActorId::random(), "Counter".into()));
        done.bytes_in = 3;
        let mut running = TaskEvent::new(CallKind::Task, 9, "square".into());
        running.finished_us = 0;
        let mut counts = TaskCountsRead {
            submitted: 5,
            ..Default::default()
        };
        counts.ended[Outcome::Trap as usize] = 2;
        let here = JobTasksHere {
            kept: Some(JobEventsRead {
                events: vec![done.clone()],
                dropped: 4,
                final_counts: None,
            }),
            unfinished: vec![running.clone()],
            unfinished_not_shown: 1,
            counts: Some(counts),
        };
        let node = NodeId::random();
        let back = from_pb(here_to_pb(node, &here)).unwrap();
        assert_eq!(back.node, node);
        let got = back.answer.unwrap();
        assert_eq!(got.kept.as_ref().unwrap().events, [done]);
        assert_eq!(got.kept.unwrap().dropped, 4);
        assert_eq!(got.unfinished, [running]);
        assert_eq!(got.counts, Some(counts));
    }

    #[test]
    fn an_event_this_build_cannot_read_counts_as_dropped() {
        let mut n = here_to_pb(
            NodeId::random(),
            &JobTasksHere {
                kept: Some(JobEventsRead::default()),
                ..Default::default()
            },
        );
        n.events.push(pb::TaskEventRecord {
            kind: "teleport".into(),
            ..Default::default()
        });
        let kept = from_pb(n).unwrap().answer.unwrap().kept.unwrap();
        assert!(kept.events.is_empty());
        assert_eq!(kept.dropped, 1);
    }
}
