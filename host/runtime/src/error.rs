//! Typed errors: what a task, an object or an actor call can fail with, and
//! what loading an application can fail with.
//!
//! [`FabricError`] mirrors the WIT `error` variant one to one, so a failure
//! keeps its type from the place it happens, through the object store, to the
//! guest that calls `get` (and, in a cluster, across the wire).
//!
//! ```
//! use fabric_runtime::error::{FabricError, TaskFailure, FailureKind};
//! let e = FabricError::TaskFailed(Box::new(TaskFailure {
//!     function: "add".into(),
//!     kind: FailureKind::Panic,
//!     message: "boom".into(),
//!     retryable: false,
//!     value: None,
//! }));
//! assert_eq!(e.to_string(), "task `add` panicked: boom");
//! ```

use crate::bindings::fabric::core::types as wit;

/// Why a task failed. See the WIT `failure-kind` for each case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    ApplicationError,
    Panic,
    Trap,
    UnknownFunction,
    BadValue,
    System,
}

impl FailureKind {
    fn verb(self) -> &'static str {
        match self {
            FailureKind::ApplicationError => "returned an error",
            FailureKind::Panic => "panicked",
            FailureKind::Trap => "trapped",
            FailureKind::UnknownFunction => "is not exported",
            FailureKind::BadValue => "got a value it could not decode",
            FailureKind::System => "was lost",
        }
    }
}

/// A failed task or actor call, with enough to decide whether to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// `add`, or `Counter.increment` for an actor method.
    pub function: String,
    pub kind: FailureKind,
    pub message: String,
    pub retryable: bool,
    /// An application error's own value, encoded by the guest (at most
    /// [`MAX_ERROR_VALUE`] bytes), for the caller to decode.
    pub value: Option<bytes::Bytes>,
}

/// The largest application error value kept (see [`TaskFailure::value`]).
pub const MAX_ERROR_VALUE: usize = 64 << 10;

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task `{}` {}: {}",
            self.function,
            self.kind.verb(),
            self.message
        )
    }
}

/// Every failure the fabric reports to guests and clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FabricError {
    /// Boxed: a failure is rare and large (texts and a value), and every
    /// object value (`Result<Bytes, FabricError>`) is as large as the
    /// largest variant.
    #[error("{0}")]
    TaskFailed(Box<TaskFailure>),
    #[error("actor died: {0}")]
    ActorDied(String),
    #[error("object lost: {0}")]
    ObjectLost(String),
    #[error("timed out")]
    Timeout,
    #[error("cancelled")]
    Cancelled,
    #[error("resources infeasible: {0}")]
    ResourcesInfeasible(String),
    #[error("limit `{name}` ({value}) exceeded: {message}")]
    LimitExceeded {
        name: String,
        value: u64,
        message: String,
    },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl FabricError {
    pub fn limit(name: &str, value: u64, message: impl Into<String>) -> Self {
        FabricError::LimitExceeded {
            name: name.to_string(),
            value,
            message: message.into(),
        }
    }

    pub fn failure(function: &str, kind: FailureKind, message: impl Into<String>) -> Self {
        FabricError::TaskFailed(Box::new(TaskFailure {
            function: function.to_string(),
            kind,
            message: message.into(),
            retryable: kind == FailureKind::System,
            value: None,
        }))
    }

    /// This error as the outcome of task `task`, which did not run because
    /// its argument `index` (the result of `producer`, when known) failed
    /// with it: the same kind, its message saying so. The note names the
    /// argument's task and, past the first hop, the task that failed first;
    /// it replaces an earlier note, so a long chain of tasks that did not
    /// run does not grow the message.
    pub(crate) fn for_dependent(self, task: &str, index: usize, producer: Option<&str>) -> Self {
        let source = match producer {
            Some(p) => format!("the result of task `{p}`"),
            None => "an object that failed".to_string(),
        };
        let annotate = |m: String| {
            let (root, origin) = match m.rfind(DEPENDENT_NOTE) {
                Some(at) if m.ends_with(')') => {
                    let origin = first_to_fail(&m[at..]);
                    (m[..at].to_string(), Some(origin))
                }
                _ => (m, None),
            };
            let upstream = match origin {
                Some(Some(o)) => format!(", which did not run either; first to fail: task `{o}`"),
                Some(None) => ", which did not run either".to_string(),
                None => String::new(),
            };
            bound(format!(
                "{root}{DEPENDENT_NOTE}{task}` did not run: its argument {index} is {source}{upstream})"
            ))
        };
        let mut e = self.map_text(annotate);
        if let FabricError::TaskFailed(f) = &mut e {
            f.retryable = false;
        }
        e
    }

    /// Every text in this error through `f` (names and messages alike).
    fn map_text(self, f: impl Fn(String) -> String) -> Self {
        match self {
            FabricError::TaskFailed(mut t) => {
                t.message = f(t.message);
                FabricError::TaskFailed(t)
            }
            FabricError::ActorDied(m) => FabricError::ActorDied(f(m)),
            FabricError::ObjectLost(m) => FabricError::ObjectLost(f(m)),
            FabricError::ResourcesInfeasible(m) => FabricError::ResourcesInfeasible(f(m)),
            FabricError::LimitExceeded {
                name,
                value,
                message,
            } => FabricError::LimitExceeded {
                name,
                value,
                message: f(message),
            },
            FabricError::NotFound(m) => FabricError::NotFound(f(m)),
            FabricError::InvalidArgument(m) => FabricError::InvalidArgument(f(m)),
            FabricError::Timeout => FabricError::Timeout,
            FabricError::Cancelled => FabricError::Cancelled,
        }
    }

    /// This error as the other results of a call that returns several get
    /// it: its text cut to 1 KiB, pointing at the first result for the
    /// rest (an error value is shared, not copied).
    pub(crate) fn for_sibling(&self) -> Self {
        const BRIEF: usize = 1024;
        self.clone().map_text(|m| {
            if m.len() <= BRIEF {
                return m;
            }
            let mut cut = BRIEF;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            format!(
                "{}… (the whole text is in the call's first result)",
                &m[..cut]
            )
        })
    }

    /// This error with every text cut to a bounded length: what a guest (or
    /// a peer) hands the host as an error is kept no larger than this.
    pub fn bounded(self) -> Self {
        let mut e = self.map_text(bound);
        match &mut e {
            FabricError::TaskFailed(t) => {
                t.function = bound_name(std::mem::take(&mut t.function));
                if let Some(v) = t.value.take_if(|v| v.len() > MAX_ERROR_VALUE) {
                    t.message = format!(
                        "{} (its error value, {} bytes, was over {MAX_ERROR_VALUE} bytes and was dropped)",
                        t.message,
                        v.len()
                    );
                }
            }
            FabricError::LimitExceeded { name, .. } => *name = bound_name(std::mem::take(name)),
            _ => {}
        }
        e
    }

    /// Bytes of host memory its texts take (what storing it costs).
    pub(crate) fn text_bytes(&self) -> usize {
        match self {
            FabricError::TaskFailed(t) => {
                t.function.len() + t.message.len() + t.value.as_ref().map_or(0, |v| v.len())
            }
            FabricError::LimitExceeded { name, message, .. } => name.len() + message.len(),
            FabricError::ActorDied(m)
            | FabricError::ObjectLost(m)
            | FabricError::ResourcesInfeasible(m)
            | FabricError::NotFound(m)
            | FabricError::InvalidArgument(m) => m.len(),
            FabricError::Timeout | FabricError::Cancelled => 0,
        }
    }

    pub(crate) fn to_wit(&self) -> wit::Error {
        match self {
            FabricError::TaskFailed(t) => wit::Error::TaskFailed(wit::TaskFailure {
                function: t.function.clone(),
                kind: match t.kind {
                    FailureKind::ApplicationError => wit::FailureKind::ApplicationError,
                    FailureKind::Panic => wit::FailureKind::Panic,
                    FailureKind::Trap => wit::FailureKind::Trap,
                    FailureKind::UnknownFunction => wit::FailureKind::UnknownFunction,
                    FailureKind::BadValue => wit::FailureKind::BadValue,
                    FailureKind::System => wit::FailureKind::System,
                },
                message: t.message.clone(),
                retryable: t.retryable,
                value: t.value.as_ref().map(|v| v.to_vec()),
            }),
            FabricError::ActorDied(m) => wit::Error::ActorDied(m.clone()),
            FabricError::ObjectLost(m) => wit::Error::ObjectLost(m.clone()),
            FabricError::Timeout => wit::Error::Timeout,
            FabricError::Cancelled => wit::Error::Cancelled,
            FabricError::ResourcesInfeasible(m) => wit::Error::ResourcesInfeasible(m.clone()),
            FabricError::LimitExceeded {
                name,
                value,
                message,
            } => wit::Error::LimitExceeded(wit::Limit {
                name: name.clone(),
                value: *value,
                message: message.clone(),
            }),
            FabricError::NotFound(m) => wit::Error::NotFound(m.clone()),
            FabricError::InvalidArgument(m) => wit::Error::InvalidArgument(m.clone()),
        }
    }

    pub(crate) fn from_wit(e: wit::Error) -> Self {
        match e {
            wit::Error::TaskFailed(t) => FabricError::TaskFailed(Box::new(TaskFailure {
                function: t.function,
                kind: match t.kind {
                    wit::FailureKind::ApplicationError => FailureKind::ApplicationError,
                    wit::FailureKind::Panic => FailureKind::Panic,
                    wit::FailureKind::Trap => FailureKind::Trap,
                    wit::FailureKind::UnknownFunction => FailureKind::UnknownFunction,
                    wit::FailureKind::BadValue => FailureKind::BadValue,
                    wit::FailureKind::System => FailureKind::System,
                },
                message: t.message,
                retryable: t.retryable,
                value: t.value.map(bytes::Bytes::from),
            })),
            wit::Error::ActorDied(m) => FabricError::ActorDied(m),
            wit::Error::ObjectLost(m) => FabricError::ObjectLost(m),
            wit::Error::Timeout => FabricError::Timeout,
            wit::Error::Cancelled => FabricError::Cancelled,
            wit::Error::ResourcesInfeasible(m) => FabricError::ResourcesInfeasible(m),
            wit::Error::LimitExceeded(l) => FabricError::LimitExceeded {
                name: l.name,
                value: l.value,
                message: l.message,
            },
            wit::Error::NotFound(m) => FabricError::NotFound(m),
            wit::Error::InvalidArgument(m) => FabricError::InvalidArgument(m),
        }
    }
}

/// The longest message an error keeps (a guest's own error text included).
pub const MAX_ERROR_TEXT: usize = 64 << 10;

/// The longest name (of a function, a limit) an error keeps.
const MAX_ERROR_NAME: usize = 256;

/// What [`FabricError::for_dependent`] puts before a dependent's note.
const DEPENDENT_NOTE: &str = " (task `";

/// The task that failed first, from an earlier dependent's note: the one
/// it names as first to fail, else its argument's producer.
fn first_to_fail(note: &str) -> Option<String> {
    let after = |marker: &str| {
        let rest = &note[note.find(marker)? + marker.len()..];
        Some(rest[..rest.find('`')?].to_string())
    };
    after("first to fail: task `").or_else(|| after("is the result of task `"))
}

/// `text` cut to [`MAX_ERROR_TEXT`] bytes (at a character boundary).
fn bound(text: String) -> String {
    cut(text, MAX_ERROR_TEXT, " [truncated]")
}

fn bound_name(text: String) -> String {
    cut(text, MAX_ERROR_NAME, " [truncated]")
}

/// `text` cut to `max` bytes at a character boundary, `marker` added when
/// it was cut.
pub(crate) fn cut(mut text: String, max: usize, marker: &str) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str(marker);
    }
    text
}

/// Why a component could not be loaded as an application.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the file is not WebAssembly (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build it for the \
         `wasm32-wasip2` target with the wasmfabric SDK"
    )]
    CoreModule,
    #[error("the WebAssembly binary is invalid or could not be compiled: {0}")]
    Invalid(String),
    #[error("the component does not implement the `fabric:core/app` world: {0}")]
    WorldMismatch(String),
    #[error("the component is not a `wasi:http` proxy: {0}")]
    NotHttpProxy(String),
    #[error("compiling the component failed: {0}")]
    Compile(String),
    #[error("compiling the component broke its bound: {0}")]
    CompileBound(String),
    #[error("the node has no free instance slot to check the component with (try again): {0}")]
    Busy(String),
}

/// Why a node could not start or run a job.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid node configuration: {0}")]
    Config(String),
    #[error("could not create the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the driver could not start: {0}")]
    DriverStart(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object's value is a `Result<Bytes, FabricError>` (and so is
    /// every call's outcome): the error must stay as small as its texts
    /// alone make it, however large a task failure grows.
    #[test]
    fn an_error_is_no_larger_than_its_largest_plain_variant() {
        assert!(
            std::mem::size_of::<FabricError>() <= 56,
            "FabricError is {} bytes",
            std::mem::size_of::<FabricError>()
        );
    }

    #[test]
    fn every_error_survives_the_wit_round_trip() {
        let all = [
            FabricError::failure("f", FailureKind::Trap, "t"),
            FabricError::failure("f", FailureKind::System, "lost"),
            FabricError::ActorDied("a".into()),
            FabricError::ObjectLost("o".into()),
            FabricError::Timeout,
            FabricError::Cancelled,
            FabricError::ResourcesInfeasible("GPU: 1".into()),
            FabricError::limit("pending-tasks", 10, "too many"),
            FabricError::NotFound("n".into()),
            FabricError::InvalidArgument("i".into()),
        ];
        for e in all {
            assert_eq!(FabricError::from_wit(e.to_wit()), e);
        }
    }

    #[test]
    fn only_system_failures_are_retryable_by_default() {
        let FabricError::TaskFailed(t) = FabricError::failure("f", FailureKind::System, "x") else {
            unreachable!()
        };
        assert!(t.retryable);
        let FabricError::TaskFailed(t) = FabricError::failure("f", FailureKind::Panic, "x") else {
            unreachable!()
        };
        assert!(!t.retryable);
    }
}
