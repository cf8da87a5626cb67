//! How tasks ended, counted per tenant: what an operator's metrics show as
//! tasks submitted, finished and failed by failure kind.
//!
//! A task is counted on the node that submitted it (where its job's pending
//! count goes up and down), once, with its final outcome: retries are not
//! endings, and a task forwarded to another node ends on its owner when
//! the result comes back. Counting is one relaxed atomic add; nothing here
//! allocates or locks.
//!
//! ```
//! use fabric_runtime::error::FabricError;
//! use fabric_runtime::outcomes::{Outcome, TaskCounts};
//! let counts = TaskCounts::default();
//! counts.submitted();
//! counts.ended(Outcome::of(&Err::<(), _>(FabricError::Cancelled)));
//! assert_eq!(counts.read().submitted, 1);
//! assert_eq!(counts.read().ended[Outcome::Cancelled as usize], 1);
//! assert_eq!(Outcome::Cancelled.label(), "cancelled");
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{FabricError, FailureKind};

/// How a task ended (the label of its count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    ApplicationError,
    Panic,
    Trap,
    UnknownFunction,
    BadValue,
    System,
    Cancelled,
    LimitExceeded,
    ActorDied,
    ObjectLost,
    Timeout,
    Infeasible,
    NotFound,
    InvalidArgument,
}

impl Outcome {
    /// Every outcome, in the order of their counts.
    pub const ALL: [Outcome; 15] = [
        Outcome::Succeeded,
        Outcome::ApplicationError,
        Outcome::Panic,
        Outcome::Trap,
        Outcome::UnknownFunction,
        Outcome::BadValue,
        Outcome::System,
        Outcome::Cancelled,
        Outcome::LimitExceeded,
        Outcome::ActorDied,
        Outcome::ObjectLost,
        Outcome::Timeout,
        Outcome::Infeasible,
        Outcome::NotFound,
        Outcome::InvalidArgument,
    ];

    /// The outcome of a call that ended with `result`.
    pub fn of<T>(result: &Result<T, FabricError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Succeeded,
            Err(e) => Outcome::of_error(e),
        }
    }

    pub fn of_error(e: &FabricError) -> Outcome {
        match e {
            FabricError::TaskFailed(f) => match f.kind {
                FailureKind::ApplicationError => Outcome::ApplicationError,
                FailureKind::Panic => Outcome::Panic,
                FailureKind::Trap => Outcome::Trap,
                FailureKind::UnknownFunction => Outcome::UnknownFunction,
                FailureKind::BadValue => Outcome::BadValue,
                FailureKind::System => Outcome::System,
            },
            FabricError::Cancelled => Outcome::Cancelled,
            FabricError::LimitExceeded { .. } => Outcome::LimitExceeded,
            FabricError::ActorDied(_) => Outcome::ActorDied,
            FabricError::ObjectLost(_) => Outcome::ObjectLost,
            FabricError::Timeout => Outcome::Timeout,
            FabricError::ResourcesInfeasible(_) => Outcome::Infeasible,
            FabricError::NotFound(_) => Outcome::NotFound,
            FabricError::InvalidArgument(_) => Outcome::InvalidArgument,
        }
    }

    /// The label value metrics show (`snake_case`, as the WIT's failure
    /// kinds read).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::ApplicationError => "application_error",
            Outcome::Panic => "panic",
            Outcome::Trap => "trap",
            Outcome::UnknownFunction => "unknown_function",
            Outcome::BadValue => "bad_value",
            Outcome::System => "system",
            Outcome::Cancelled => "cancelled",
            Outcome::LimitExceeded => "limit_exceeded",
            Outcome::ActorDied => "actor_died",
            Outcome::ObjectLost => "object_lost",
            Outcome::Timeout => "timeout",
            Outcome::Infeasible => "infeasible",
            Outcome::NotFound => "not_found",
            Outcome::InvalidArgument => "invalid_argument",
        }
    }
}

/// One tenant's task counts on one node.
#[derive(Default)]
pub struct TaskCounts {
    submitted: AtomicU64,
    ended: [AtomicU64; Outcome::ALL.len()],
}

/// A reading of [`TaskCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCountsRead {
    pub submitted: u64,
    /// By [`Outcome`] (`Outcome as usize`).
    pub ended: [u64; Outcome::ALL.len()],
}

impl TaskCountsRead {
    /// Tasks that ended, however.
    pub fn ended(&self) -> u64 {
        self.ended.iter().sum()
    }

    /// Tasks that ended other than succeeded.
    pub fn failed(&self) -> u64 {
        self.ended() - self.ended[Outcome::Succeeded as usize]
    }

    /// Tasks submitted and not ended yet.
    pub fn pending(&self) -> u64 {
        self.submitted.saturating_sub(self.ended())
    }
}

impl TaskCounts {
    pub fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ended(&self, outcome: Outcome) {
        self.ended[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> TaskCountsRead {
        TaskCountsRead {
            submitted: self.submitted.load(Ordering::Relaxed),
            ended: std::array::from_fn(|i| self.ended[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_slot_and_label() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?} is out of order");
        }
        let labels: std::collections::BTreeSet<_> =
            Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), Outcome::ALL.len());
    }

    #[test]
    fn a_failure_counts_under_its_kind() {
        let failed = FabricError::failure("f", FailureKind::Trap, "boom");
        assert_eq!(Outcome::of::<()>(&Err(failed)), Outcome::Trap);
        assert_eq!(Outcome::of(&Ok::<_, FabricError>(1)), Outcome::Succeeded);
        let limit = FabricError::limit("memory", 1, "x");
        assert_eq!(Outcome::of_error(&limit), Outcome::LimitExceeded);
    }
}
