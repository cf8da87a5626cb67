//! `wasi:nn/errors`: a failed `wasi:nn` call's code and message, as a
//! resource the guest reads (and that counts in its instance's bounds).

use wasmtime::component::Resource;

use super::generated::wasi::nn::errors::{self as wit, ErrorCode};
use super::ledger::{ITEM_BYTES, Kind};
use super::{Held, NnView};

/// Most characters of a guest's or a model's text quoted in a message.
const MAX_QUOTED: usize = 128;

/// A `wasi:nn` error: what the guest gets back (its code and message), or a
/// broken contract or limit (a stale handle, its CPU time) that traps its
/// instance.
pub struct Error {
    code: Option<ErrorCode>,
    message: String,
    _held: Option<Held>,
}

impl Error {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::debug!(?code, %message, "wasi-nn call refused");
        Error {
            code: Some(code),
            message,
            _held: None,
        }
    }

    /// An error that traps the instance.
    pub(crate) fn trap(message: impl Into<String>) -> Self {
        Error {
            code: None,
            message: message.into(),
            _held: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::TooLarge, message)
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::RuntimeError, message)
    }
}

/// ONNX Runtime's message, cut short: it quotes the model's names.
pub(crate) fn cut(text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    let mut shown: String = text.chars().take(4 * MAX_QUOTED).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

/// `text` (a guest's or a model's) as a message quotes it: escaped, and
/// cut short.
pub(crate) fn quoted(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_QUOTED).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    format!("`{}`", shown.escape_debug())
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl From<wasmtime::component::ResourceTableError> for Error {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Error::trap(e.to_string())
    }
}

impl wit::Host for NnView<'_> {}

/// What a `wasi:nn` call returns to the guest.
pub(crate) type Answer<T> = wasmtime::Result<Result<T, Resource<Error>>>;

impl NnView<'_> {
    /// `r` as the guest gets it: an error with a code as a resource in its
    /// table (within its bounds), one without as a trap.
    pub(crate) fn answer<T>(&mut self, r: Result<T, Error>) -> Answer<T> {
        let mut e = match r {
            Ok(v) => return Ok(Ok(v)),
            Err(e) if e.code.is_none() => {
                return Err(wasmtime::format_err!("wasi-nn: {}", e.message));
            }
            Err(e) => e,
        };
        let cost = ITEM_BYTES + e.message.len() as u64;
        let held = self
            .state
            .hold(cost, Kind::Error, "an error")
            .map_err(|why| wasmtime::format_err!("wasi-nn: the guest keeps its errors: {why}"))?;
        e._held = Some(held);
        Ok(Err(self.table.push(e)?))
    }
}

impl wit::HostError for NnView<'_> {
    fn code(&mut self, error: Resource<Error>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&error)?.code.unwrap_or(ErrorCode::Unknown))
    }

    fn data(&mut self, error: Resource<Error>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<Error>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}
