//! Streaming generators (issue 13, item 2): items as they come, with
//! backpressure, typed errors at the point of failure, a stream dropped
//! early, an actor's generator method, and items that nest references.

use std::time::Duration;

use fabric::prelude::*;
use fabric::{Error, Generator};

use super::{BankError, describe, opts};

/// The squares of 0..n.
#[fabric::remote]
fn squares(n: u64) -> Generator<u64> {
    Generator::new((0..n).map(|i| i * i))
}

/// 0, 1, .. then the typed error `Insufficient { needed: n }` at item n.
#[fabric::remote]
fn until_short(n: u64) -> Generator<u64, BankError> {
    Generator::fallible((0..=n).map(move |i| {
        if i < n {
            Ok(i)
        } else {
            Err(BankError::Insufficient { needed: n })
        }
    }))
}

/// Refuses to start: the function's own `Err`, before any item.
#[fabric::remote]
fn refuses(why: String) -> Result<Generator<u64>, String> {
    Err(why)
}

/// 0, 1, .. without end, telling `progress` which item it is about to
/// yield.
#[fabric::remote]
fn endless(progress: ActorHandle<Progress>) -> Generator<u64> {
    Generator::new((0u64..).inspect(move |&i| {
        let _ = progress.mark(i).remote().and_then(|r| fabric::get(&r));
    }))
}

/// Items that each nest a reference made inside the generator.
#[fabric::remote]
fn boxed(n: u64) -> fabric::Result<Generator<ObjectRef<u64>>> {
    let refs = (1..=n)
        .map(|i| fabric::put(&(i * 10)))
        .collect::<fabric::Result<Vec<_>>>()?;
    Ok(Generator::new(refs))
}

/// 0..n; its first attempt (the one that finds `attempts` unmarked) fails
/// halfway, and it is retried.
#[fabric::remote(max_retries = 1, retry_exceptions = true, backpressure = 4)]
fn flaky(n: u64, attempts: ActorHandle<Progress>) -> fabric::Result<Generator<u64>> {
    let first = fabric::get(&attempts.at().remote()?)?.is_none();
    fabric::get(&attempts.mark(1).remote()?)?;
    Ok(Generator::fallible((0..n).map(move |i| {
        if first && i == n / 2 {
            Err(Error::InvalidArgument("the first attempt fails".into()))
        } else {
            Ok(i)
        }
    })))
}

/// The highest item a generator said it was about to yield.
#[fabric::actor]
pub struct Progress {
    at: Option<u64>,
}

#[fabric::actor]
impl Progress {
    fn new() -> Self {
        Progress { at: None }
    }

    fn mark(&mut self, i: u64) {
        self.at = Some(self.at.map_or(i, |a| a.max(i)));
    }

    fn at(&self) -> Option<u64> {
        self.at
    }

    /// A generator method over the actor's own state: each item is the
    /// running total after adding it.
    fn add_each(&mut self, n: u64) -> Generator<'_, u64> {
        Generator::new((1..=n).map(move |i| {
            let total = self.at.unwrap_or(0) + i;
            self.at = Some(total);
            total
        }))
    }
}

fn values(stream: ObjectStream<u64>) -> fabric::Result<Vec<u64>> {
    stream.values().collect()
}

pub fn streams() -> fabric::Result<()> {
    let all = values(squares::options(opts().backpressure(4)).remote(20u64)?)?;
    println!(
        "squares: {} items, sum {}",
        all.len(),
        all.iter().sum::<u64>()
    );

    let mut got = Vec::new();
    let mut failure = None;
    for item in until_short::options(opts()).remote(3u64)? {
        match item.and_then(|r| fabric::get(&r)) {
            Ok(v) => got.push(v),
            Err(e) => failure = Some(e),
        }
    }
    let e = failure.expect("the stream ends with its error");
    println!(
        "typed: {got:?} then {} -> {:?}",
        describe(&e),
        e.app_error::<BankError>()
    );

    let e = refuses::options(opts())
        .remote("no input".to_string())?
        .next()
        .expect("one error")
        .expect_err("an error, no item");
    println!("refused: {} -> {:?}", describe(&e), e.app_error::<String>());

    backpressure()?;

    let attempts = Progress::remote()?;
    let got = values(flaky::options(opts()).remote(20u64, attempts)?)?;
    println!(
        "retried: each item once, in order {}",
        got == (0..20).collect::<Vec<u64>>()
    );

    let p = Progress::remote()?;
    let totals: Vec<u64> = p
        .add_each(4u64)
        .remote()?
        .values()
        .collect::<fabric::Result<_>>()?;
    let after = fabric::get(&p.at().remote()?)?;
    println!("actor: {totals:?} then at {after:?}");

    let inner: Vec<u64> = boxed::options(opts())
        .remote(3u64)?
        .values()
        .map(|r| r.and_then(|r| fabric::get(&r)))
        .collect::<fabric::Result<_>>()?;
    println!("nested: {inner:?}");
    Ok(())
}

/// A generator runs ahead of its caller by its backpressure and no more;
/// dropping the stream stops it.
fn backpressure() -> fabric::Result<()> {
    let progress = Progress::remote()?;
    let mut stream = endless::options(opts().backpressure(2)).remote(progress.clone())?;
    let first = fabric::get(&stream.next_ref()?.expect("an item"))?;
    // Items 1 and 2 may be yielded ahead; then it waits to yield item 3.
    std::thread::sleep(Duration::from_millis(700));
    let ahead = fabric::get(&progress.at().remote()?)?;
    let next: Vec<u64> = (0..3)
        .map(|_| fabric::get(&stream.next_ref()?.expect("an item")))
        .collect::<fabric::Result<_>>()?;
    println!("backpressure 2: first {first}, waiting at {ahead:?}, then {next:?}");
    drop(stream);
    // Stopped: it yields no further than one past what was taken.
    std::thread::sleep(Duration::from_millis(500));
    let stopped = fabric::get(&progress.at().remote()?)?;
    std::thread::sleep(Duration::from_millis(500));
    let later = fabric::get(&progress.at().remote()?)?;
    println!(
        "dropped: stopped {}",
        stopped == later && stopped.is_some_and(|s| s <= 6)
    );
    let e = match endless::options(opts().backpressure(0)).remote(progress.clone()) {
        Err(e) => e,
        Ok(_) => Error::Value("accepted".into()),
    };
    println!("backpressure 0: {e}");
    Ok(())
}
