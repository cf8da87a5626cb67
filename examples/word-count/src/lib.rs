//! Map-reduce word count, the Ray way:
//!
//! - the text is one byte object (`put_bytes`); each mapper reads only its
//!   slice of it, straight into its own buffer (`get_bytes_into`);
//! - each mapper returns one partition per reducer, each its own object
//!   (`num_returns`), so a reducer fetches only its part;
//! - each reducer takes its partition of every mapper as one argument
//!   (`Refs`): the host gathers them before the reducer starts;
//! - a mapper that gets bad input fails with a typed error the driver
//!   matches on (`app_error`).
//!
//! Run: `fabric run examples/target/wasm32-wasip2/release/word_count.wasm`

use std::collections::BTreeMap;

use fabric::prelude::*;
use fabric::serde_bytes::ByteBuf;
use serde::{Deserialize, Serialize};

const TEXT: &str = "the quick brown fox jumps over the lazy dog \
the dog sleeps and the fox runs \
a fox is quick and a dog is lazy \
the end of the story is the fox and the dog";

/// Reducers, and so partitions per mapper.
const PARTS: u32 = 3;
/// Mappers.
const MAPPERS: usize = 4;

type Counts = BTreeMap<String, u64>;

/// Why a mapper refused its slice.
#[derive(Serialize, Deserialize, Debug)]
enum InputError {
    NotText { at: u64 },
    Unreadable(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::NotText { at } => write!(f, "not UTF-8 at byte {at}"),
            InputError::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// Which reducer counts `word`.
fn part_of(word: &str, parts: usize) -> usize {
    let hash = word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % parts as u64) as usize
}

/// Counts the words of `len` bytes of `text` from `start`, split into one
/// map per reducer.
#[fabric::remote(num_returns = 3)]
fn count_words(text: ObjectRef<ByteBuf>, start: u64, len: u64) -> Result<Vec<Counts>, InputError> {
    let mut slice = vec![0u8; len as usize];
    fabric::get_bytes_into(&text, start, &mut slice)
        .map_err(|e| InputError::Unreadable(e.to_string()))?;
    let words = std::str::from_utf8(&slice).map_err(|e| InputError::NotText {
        at: start + e.valid_up_to() as u64,
    })?;
    let mut parts = vec![Counts::new(); PARTS as usize];
    for w in words.split_whitespace() {
        *parts[part_of(w, PARTS as usize)]
            .entry(w.to_string())
            .or_default() += 1;
    }
    Ok(parts)
}

/// Sums one partition of every mapper.
#[fabric::remote]
fn merge(partitions: Vec<Counts>) -> Counts {
    let mut total = Counts::new();
    for p in partitions {
        for (w, n) in p {
            *total.entry(w).or_default() += n;
        }
    }
    total
}

/// `MAPPERS` slices of `text` that end at a space.
fn slices(text: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    for m in 1..=MAPPERS {
        let mut end = (text.len() * m / MAPPERS).max(start);
        while end < text.len() && text[end] != b' ' {
            end += 1;
        }
        out.push((start as u64, (end - start) as u64));
        start = end;
    }
    out
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let text = fabric::put_bytes(TEXT.as_bytes())?;
    let mapped: Vec<Vec<ObjectRef<Counts>>> = slices(TEXT.as_bytes())
        .into_iter()
        .map(|(start, len)| count_words::remote(text.clone(), start, len))
        .collect::<fabric::Result<_>>()?;
    let reduced: Vec<ObjectRef<Counts>> = (0..PARTS as usize)
        .map(|i| merge::remote(Refs(mapped.iter().map(|m| m[i].clone()).collect())))
        .collect::<fabric::Result<_>>()?;
    let mut counts: Vec<(String, u64)> = fabric::get_all(&reduced)?.into_iter().flatten().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    println!("{total} words, {} distinct", counts.len());
    for (w, n) in counts.iter().take(3) {
        println!("{w}: {n}");
    }
    // A slice that is not text: the mapper's own error comes back typed.
    let bad = fabric::put_bytes(b"fine words \xff then")?;
    let refused = count_words::remote(bad, 0u64, 16u64)?;
    match fabric::get(&refused[0]) {
        Err(e) => match e.app_error::<InputError>() {
            Some(InputError::NotText { at }) => println!("refused: not text at byte {at}"),
            other => println!("failed otherwise: {e} ({other:?})"),
        },
        Ok(_) => println!("bad input was counted"),
    }
    Ok(())
}
