//! Checkpoints: an actor saves its state so that a restart continues from
//! it instead of from the constructor's initial state.
//!
//! An actor created with `max_restarts` is restarted when its instance traps
//! or panics or its node dies: the constructor runs again, on the same node
//! or on another. A constructor that calls [`load`] gets the state the
//! actor last passed to [`save`]:
//!
//! ```no_run
//! #[fabric::actor]
//! struct Counter { n: u64 }
//!
//! #[fabric::actor]
//! impl Counter {
//!     fn new() -> Self {
//!         Counter { n: fabric::checkpoint::load().ok().flatten().unwrap_or(0) }
//!     }
//!
//!     fn incr(&mut self) -> fabric::Result<u64> {
//!         self.n += 1;
//!         fabric::checkpoint::save(&self.n)?;
//!         Ok(self.n)
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The state is kept by the node that created the actor (so it survives the
//! actor's node), and it reaches that node before the result of the call
//! that saved it. Object references inside the state are not kept alive by
//! it: a checkpoint holding one is refused.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::fabric::core::host;
use crate::error::{Error, Result};
use crate::value;

/// Saves `state` as this actor's checkpoint (replacing the previous one).
/// Fails outside an actor, and for a state over the job's result-size limit.
pub fn save<T: Serialize + ?Sized>(state: &T) -> Result<()> {
    let encoded = value::encode(state)?;
    if !encoded.nested.is_empty() {
        return Err(Error::InvalidArgument(
            "a checkpoint cannot hold object references (it does not keep them alive)".into(),
        ));
    }
    host::save_checkpoint(&encoded.bytes)?;
    Ok(())
}

/// The state this actor saved before it was restarted: `None` on its first
/// start, or when it never saved one.
pub fn load<T: DeserializeOwned>() -> Result<Option<T>> {
    match host::load_checkpoint() {
        Some(bytes) => value::decode(&bytes).map(Some),
        None => Ok(None),
    }
}
