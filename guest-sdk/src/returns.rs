//! Functions that return several values, each its own object (Ray's
//! `num_returns`).
//!
//! `#[fabric::remote(num_returns = n)]` on a function that returns a tuple
//! or a `Vec` makes each of its values its own object: the caller gets one
//! [`ObjectRef`] per value, each freed on its own, and can pass one on
//! without the others. A tuple's length is fixed; a `Vec` function's count
//! can change per call with [`crate::TaskOptions::num_returns`] (the
//! function must return exactly that many, or every reference fails with
//! `bad-value`).
//!
//! ```no_run
//! use fabric::prelude::*;
//!
//! #[fabric::remote(num_returns = 2)]
//! fn split(words: Vec<String>) -> (Vec<String>, Vec<String>) {
//!     words.into_iter().partition(|w| w.len() < 5)
//! }
//!
//! #[fabric::remote(num_returns = 4)]
//! fn partition(words: Vec<String>, parts: usize) -> Vec<Vec<String>> {
//!     let mut out = vec![Vec::new(); parts];
//!     for w in words {
//!         out[w.len() % parts].push(w);
//!     }
//!     out
//! }
//!
//! # fn main() -> fabric::Result<()> {
//! let words: Vec<String> = vec!["a".into(), "sandbox".into()];
//! let (short, long) = split::remote(words.clone())?;
//! let parts = partition::options(TaskOptions::new().num_returns(3)).remote(words, 3usize)?;
//! assert_eq!(parts.len(), 3);
//! # let _ = (short, long);
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::__bindings::fabric::core::host;
use crate::error::Result;
use crate::object::ObjectRef;
use crate::value::{self, Encoded};

/// What a function declared with `num_returns` may return: a tuple (its
/// length is the count) or a `Vec` (the call says how many).
pub trait Returns: Sized {
    /// The references the caller gets: a tuple of them, or a `Vec`.
    type Refs;
    /// How many values the type always has (`None`: any number).
    const FIXED: Option<u32>;
    #[doc(hidden)]
    fn encode_each(self) -> Result<Vec<Encoded>>;
    #[doc(hidden)]
    fn refs(handles: Vec<host::ObjectRef>) -> Self::Refs;
}

impl<T: Serialize> Returns for Vec<T> {
    type Refs = Vec<ObjectRef<T>>;
    const FIXED: Option<u32> = None;

    fn encode_each(self) -> Result<Vec<Encoded>> {
        self.iter().map(value::encode).collect()
    }

    fn refs(handles: Vec<host::ObjectRef>) -> Self::Refs {
        handles.into_iter().map(ObjectRef::from_handle).collect()
    }
}

macro_rules! tuple_returns {
    ($n:expr; $($t:ident $v:ident),+) => {
        impl<$($t: Serialize),+> Returns for ($($t,)+) {
            type Refs = ($(ObjectRef<$t>,)+);
            const FIXED: Option<u32> = Some($n);

            fn encode_each(self) -> Result<Vec<Encoded>> {
                let ($($v,)+) = self;
                Ok(vec![$(value::encode(&$v)?),+])
            }

            fn refs(handles: Vec<host::ObjectRef>) -> Self::Refs {
                let mut h = handles.into_iter();
                ($({
                    let _: Option<$t> = None;
                    ObjectRef::from_handle(h.next().expect("checked: one per value"))
                },)+)
            }
        }
    };
}

tuple_returns!(1; A a);
tuple_returns!(2; A a, B b);
tuple_returns!(3; A a, B b, C c);
tuple_returns!(4; A a, B b, C c, D d);
tuple_returns!(5; A a, B b, C c, D d, E e);
tuple_returns!(6; A a, B b, C c, D d, E e, F f);
tuple_returns!(7; A a, B b, C c, D d, E e, F f, G g);
tuple_returns!(8; A a, B b, C c, D d, E e, F f, G g, H h);
