//! A guest's `output` split into the values it returns: one, or (a task
//! called with `num-returns`) several, each its own object.
//!
//! The guest hands several values back as one buffer and the offsets where
//! each ends (see the WIT's `output-parts`): lifting one list of offsets
//! costs the host no more than the guest spent on it, where a list of
//! records would cost it several times more. Everything about the offsets
//! is the guest's to get wrong, so each is checked before use.

use bytes::Bytes;

use super::instance::{CallOutputs, CallResult};
use crate::error::{FabricError, FailureKind};
use crate::limits::exceeded;
use crate::object_store::ObjectRef;

/// The values in one `output`, before they are split (see the WIT's
/// `output-parts`; a lone `value` is one with no references).
pub(crate) struct Parts {
    pub value: Vec<u8>,
    pub nested: Vec<ObjectRef>,
    pub ends: Vec<u32>,
    pub nested_ends: Vec<u32>,
}

impl Parts {
    /// The one value of a call that returns one (an actor method's).
    pub fn one(self, what: &str, max_bytes: u64) -> CallResult {
        if self.ends.is_empty() && self.nested_ends.is_empty() {
            if self.value.len() as u64 > max_bytes {
                return Err(exceeded(
                    "result-bytes",
                    max_bytes,
                    format!("{what} returned {} bytes", self.value.len()),
                ));
            }
            return Ok((Bytes::from(self.value), self.nested));
        }
        let mut values = self.split(what, 1, max_bytes)?;
        Ok(values.pop().expect("one value, checked"))
    }

    /// The `returns` values, within `max_bytes` together; a guest that returned
    /// another number of them, or offsets that do not fit, fails with
    /// `bad-value`. With several, each value is copied out on its own, so
    /// each object is freed on its own.
    pub fn split(self, what: &str, returns: usize, max_bytes: u64) -> CallOutputs {
        let bad = |m: String| Err(FabricError::failure(what, FailureKind::BadValue, m));
        let too_large = |len: usize| {
            Err(exceeded(
                "result-bytes",
                max_bytes,
                format!("{what} returned {len} bytes"),
            ))
        };
        let Parts {
            value,
            mut nested,
            ends,
            nested_ends,
        } = self;
        // All of a call's values together, as one value would be.
        if value.len() as u64 > max_bytes {
            return too_large(value.len());
        }
        if ends.is_empty() && nested_ends.is_empty() {
            if returns != 1 {
                return bad(format!("returned 1 value; the call asked for {returns}"));
            }
            return Ok(vec![(Bytes::from(value), nested)]);
        }
        if ends.len() != returns || nested_ends.len() != returns {
            return bad(format!(
                "returned {} values; the call asked for {returns}",
                ends.len()
            ));
        }
        let fits = |offsets: &[u32], total: usize| {
            offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets.last().is_some_and(|&l| l as usize == total)
        };
        if !fits(&ends, value.len()) || !fits(&nested_ends, nested.len()) {
            return bad("its values' offsets do not fit its output".into());
        }
        let mut out = Vec::with_capacity(returns);
        let (mut start, mut nested_start) = (0usize, 0usize);
        for (&end, &nested_end) in ends.iter().zip(&nested_ends) {
            let (end, nested_end) = (end as usize, nested_end as usize);
            let bytes = match returns {
                1 => Bytes::new(),
                _ => Bytes::copy_from_slice(&value[start..end]),
            };
            out.push((bytes, nested_end - nested_start));
            (start, nested_start) = (end, nested_end);
        }
        if returns == 1 {
            out[0].0 = Bytes::from(value);
        }
        // From the back, so each value's references split off in place.
        let mut values = Vec::with_capacity(returns);
        for (bytes, count) in out.into_iter().rev() {
            let refs = nested.split_off(nested.len() - count);
            values.push((bytes, refs));
        }
        values.reverse();
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(value: &[u8], ends: &[u32]) -> Parts {
        Parts {
            value: value.to_vec(),
            nested: Vec::new(),
            ends: ends.to_vec(),
            nested_ends: vec![0; ends.len()],
        }
    }

    fn message(r: CallOutputs) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn values_split_at_their_ends_each_in_its_own_buffer() {
        let values = parts(b"abcde", &[3, 3, 5]).split("f", 3, 100).unwrap();
        let bytes: Vec<&[u8]> = values.iter().map(|(b, _)| &b[..]).collect();
        assert_eq!(bytes, [&b"abc"[..], b"", b"de"]);
        // Each is a copy of its own, so each is freed on its own.
        let (a, c) = (values[0].0.as_ptr() as usize, values[2].0.as_ptr() as usize);
        assert!(c < a || c >= a + 3, "the values share one buffer");
        let one = parts(b"xyz", &[]).split("f", 1, 100).unwrap();
        assert_eq!(&one[0].0[..], b"xyz");
    }

    #[test]
    fn offsets_that_do_not_fit_are_a_bad_value() {
        for (ends, returns) in [
            (&[3u32, 2, 5][..], 3),
            (&[3, 4][..], 2),
            (&[3, 9][..], 2),
            (&[5][..], 2),
        ] {
            let m = message(parts(b"abcde", ends).split("f", returns, 100));
            assert!(
                m.contains("got a value it could not decode"),
                "{ends:?}: {m}"
            );
        }
        let mut wrong_nested = parts(b"abcde", &[2, 5]);
        wrong_nested.nested_ends = vec![0, 1];
        assert!(message(wrong_nested.split("f", 2, 100)).contains("offsets do not fit"));
        let m = message(parts(b"abc", &[]).split("f", 2, 100));
        assert!(m.ends_with("returned 1 value; the call asked for 2"), "{m}");
    }

    #[test]
    fn the_values_together_are_held_to_the_result_limit() {
        let m = message(parts(b"abcdef", &[3, 6]).split("f", 2, 4));
        assert!(
            m.contains("result-bytes") && m.contains("returned 6 bytes"),
            "{m}"
        );
    }
}
