//! Errors a fabric call can return.

use crate::__bindings::fabric::core::types as wit;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The function returned an `Err`.
    ApplicationError,
    /// The function panicked.
    Panic,
    /// The instance trapped (e.g. out-of-bounds access, stack overflow).
    Trap,
    /// The component exports no remote function or method of that name.
    UnknownFunction,
    /// An argument or result could not be decoded.
    BadValue,
    /// The node or instance running it was lost.
    System,
}

/// Everything a fabric call can fail with.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A task or actor method failed.
    TaskFailed {
        function: String,
        kind: FailureKind,
        message: String,
        retryable: bool,
        /// The function's own error, encoded, when it returned an `Err`
        /// whose type implements `Serialize`: read it with
        /// [`Error::app_error`].
        value: Option<Vec<u8>>,
    },
    /// The actor is dead (killed, crashed, or its constructor failed).
    ActorDied(String),
    /// The object is gone and cannot be rebuilt.
    ObjectLost(String),
    /// A `get` or `wait` ran out of time.
    Timeout,
    /// The task was cancelled.
    Cancelled,
    /// No node could ever satisfy the requested resources.
    ResourcesInfeasible(String),
    /// A limit was hit; `name` says which, `value` its size.
    LimitExceeded {
        name: String,
        value: u64,
        message: String,
    },
    /// An id or name that does not exist (or is not yours).
    NotFound(String),
    /// A bad argument to a fabric call.
    InvalidArgument(String),
    /// A value could not be encoded or decoded in this instance.
    Value(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TaskFailed {
                function,
                kind,
                message,
                ..
            } => {
                let what = match kind {
                    FailureKind::ApplicationError => "returned an error",
                    FailureKind::Panic => "panicked",
                    FailureKind::Trap => "trapped",
                    FailureKind::UnknownFunction => "is not exported",
                    FailureKind::BadValue => "got a value it could not decode",
                    FailureKind::System => "was lost",
                };
                write!(f, "task `{function}` {what}: {message}")
            }
            Error::ActorDied(m) => write!(f, "actor died: {m}"),
            Error::ObjectLost(m) => write!(f, "object lost: {m}"),
            Error::Timeout => write!(f, "timed out"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::ResourcesInfeasible(m) => write!(f, "resources infeasible: {m}"),
            Error::LimitExceeded {
                name,
                value,
                message,
            } => write!(f, "limit `{name}` ({value}) exceeded: {message}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Value(m) => write!(f, "value error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::TaskFailed(t) => Error::TaskFailed {
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
                value: t.value,
            },
            wit::Error::ActorDied(m) => Error::ActorDied(m),
            wit::Error::ObjectLost(m) => Error::ObjectLost(m),
            wit::Error::Timeout => Error::Timeout,
            wit::Error::Cancelled => Error::Cancelled,
            wit::Error::ResourcesInfeasible(m) => Error::ResourcesInfeasible(m),
            wit::Error::LimitExceeded(l) => Error::LimitExceeded {
                name: l.name,
                value: l.value,
                message: l.message,
            },
            wit::Error::NotFound(m) => Error::NotFound(m),
            wit::Error::InvalidArgument(m) => Error::InvalidArgument(m),
        }
    }
}

impl Error {
    /// The error a task or actor method returned, as its own type, when it
    /// failed with `Err(e)` and `E` implements `Serialize` (it is encoded
    /// as MessagePack, kept up to 64 KiB). `None` for any other failure, or
    /// when the value does not decode as `E`. The `Display` text is still
    /// in the error's message.
    ///
    /// ```no_run
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// enum BankError { Insufficient { needed: u64 } }
    /// # fn demo(e: fabric::Error) {
    /// match e.app_error::<BankError>() {
    ///     Some(BankError::Insufficient { needed }) => println!("short by {needed}"),
    ///     None => println!("failed: {e}"),
    /// }
    /// # }
    /// ```
    pub fn app_error<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::TaskFailed {
                kind: FailureKind::ApplicationError,
                value: Some(v),
                ..
            } => rmp_serde::from_slice(v).ok(),
            _ => None,
        }
    }

    /// This error as the host's WIT error, returned by `function`: every
    /// kind keeps its kind (an error only this instance can have, a value
    /// it could not encode or decode, becomes `function`'s `bad-value`).
    pub(crate) fn into_wit(self, function: &str) -> wit::Error {
        match self {
            Error::TaskFailed {
                function,
                kind,
                message,
                retryable,
                value,
            } => wit::Error::TaskFailed(wit::TaskFailure {
                function,
                kind: match kind {
                    FailureKind::ApplicationError => wit::FailureKind::ApplicationError,
                    FailureKind::Panic => wit::FailureKind::Panic,
                    FailureKind::Trap => wit::FailureKind::Trap,
                    FailureKind::UnknownFunction => wit::FailureKind::UnknownFunction,
                    FailureKind::BadValue => wit::FailureKind::BadValue,
                    FailureKind::System => wit::FailureKind::System,
                },
                message,
                retryable,
                value,
            }),
            Error::ActorDied(m) => wit::Error::ActorDied(m),
            Error::ObjectLost(m) => wit::Error::ObjectLost(m),
            Error::Timeout => wit::Error::Timeout,
            Error::Cancelled => wit::Error::Cancelled,
            Error::ResourcesInfeasible(m) => wit::Error::ResourcesInfeasible(m),
            Error::LimitExceeded {
                name,
                value,
                message,
            } => wit::Error::LimitExceeded(wit::Limit {
                name,
                value,
                message,
            }),
            Error::NotFound(m) => wit::Error::NotFound(m),
            Error::InvalidArgument(m) => wit::Error::InvalidArgument(m),
            Error::Value(m) => failure(function, wit::FailureKind::BadValue, m),
        }
    }
}

/// A failure of `function` as the WIT error the host expects.
pub(crate) fn failure(function: &str, kind: wit::FailureKind, message: String) -> wit::Error {
    wit::Error::TaskFailed(wit::TaskFailure {
        function: function.to_string(),
        kind,
        message,
        retryable: false,
        value: None,
    })
}
