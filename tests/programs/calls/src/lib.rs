//! How calls return and take values (issue 13): several returns, refs as
//! one argument, typed application errors, byte objects read once.
//! Run with a scenario name, and `spread` to deal the tasks out over the
//! cluster's nodes.

use fabric::prelude::*;
use fabric::serde_bytes::ByteBuf;
use fabric::{Error, FailureKind, Refs};
use serde::{Deserialize, Serialize};

mod streams;

/// Options for every task: spread over the nodes when asked.
fn opts() -> TaskOptions {
    match std::env::args().nth(2).as_deref() {
        Some("spread") => TaskOptions::new().spread(),
        _ => TaskOptions::new(),
    }
}

/// Three values of different types, each its own object; the third is a
/// reference made inside the task.
#[fabric::remote(num_returns = 3)]
fn three(n: u32) -> fabric::Result<(u32, String, ObjectRef<u32>)> {
    Ok((n, format!("n is {n}"), fabric::put(&(n * 10))?))
}

/// `parts` lists of `size` bytes each, filled with the part's index.
#[fabric::remote(num_returns = 4)]
fn chunks(parts: u32, size: u32) -> Vec<ByteBuf> {
    (0..parts)
        .map(|i| ByteBuf::from(vec![i as u8; size as usize]))
        .collect()
}

#[fabric::remote]
fn length(b: ByteBuf) -> usize {
    b.len()
}

#[fabric::remote(num_returns = 2)]
fn slow_pair(ms: u64) -> (u64, u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    (ms, ms)
}

#[fabric::remote]
fn count(n: u64) -> u64 {
    n
}

#[fabric::remote]
fn total(parts: Vec<u64>) -> u64 {
    parts.iter().sum()
}

#[fabric::remote]
fn fail_at(n: u64) -> Result<u64, String> {
    Err(format!("no {n}"))
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum BankError {
    Insufficient { needed: u64 },
    Frozen(String),
}

impl std::fmt::Display for BankError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BankError::Insufficient { needed } => write!(f, "short by {needed}"),
            BankError::Frozen(why) => write!(f, "frozen: {why}"),
        }
    }
}

#[fabric::remote]
fn withdraw(balance: u64, amount: u64) -> Result<u64, BankError> {
    balance.checked_sub(amount).ok_or(BankError::Insufficient {
        needed: amount - balance,
    })
}

#[fabric::remote]
fn untyped() -> Result<u64, Box<dyn std::error::Error>> {
    Err("only text".into())
}

#[fabric::remote]
fn after(v: u64) -> u64 {
    v + 1
}

#[fabric::actor]
struct Account {
    balance: u64,
}

#[fabric::actor]
impl Account {
    fn new(balance: u64) -> Self {
        Account { balance }
    }

    fn take(&mut self, amount: u64) -> Result<u64, BankError> {
        if amount > self.balance {
            return Err(BankError::Frozen(format!("{amount} > {}", self.balance)));
        }
        self.balance -= amount;
        Ok(self.balance)
    }
}

#[fabric::remote]
fn make_bytes(len: u32) -> ByteBuf {
    ByteBuf::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn describe(e: &Error) -> String {
    match e {
        Error::TaskFailed { kind, .. } => format!("{kind:?}: {e}"),
        other => format!("{other}"),
    }
}

fn returns() -> fabric::Result<()> {
    let (n, text, inner) = three::options(opts()).remote(7u32)?;
    assert_ne!(n.id(), text.id());
    let inner: ObjectRef<u32> = fabric::get(&inner)?;
    println!(
        "three: {} / {} / {}",
        fabric::get(&n)?,
        fabric::get(&text)?,
        fabric::get(&inner)?
    );
    // Declared four; this call asks for three, each 300 KiB (past what
    // travels inline between nodes). Twice: spread, one of them runs on
    // another node.
    for _ in 0..2 {
        let parts = chunks::options(opts().num_returns(3)).remote(3u32, 300u32 << 10)?;
        // Each is its own object: the first goes, the others stay readable.
        let mut parts = parts.into_iter();
        drop(parts.next());
        let parts: Vec<_> = parts.collect();
        let lens: Vec<usize> = parts
            .iter()
            .map(|p| fabric::get(&length::options(opts()).remote(p)?))
            .collect::<fabric::Result<_>>()?;
        let firsts: Vec<u8> = parts
            .iter()
            .map(|p| fabric::get(p).map(|b| b[0]))
            .collect::<fabric::Result<_>>()?;
        println!("chunks: 2 of 3 refs kept, lengths {lens:?}, first bytes {firsts:?}");
    }
    // The function returns 2 values where the call asked for 5.
    let wrong = chunks::options(opts().num_returns(5)).remote(2u32, 8u32)?;
    for r in &wrong {
        assert_eq!(
            fabric::get(r).unwrap_err(),
            fabric::get(&wrong[0]).unwrap_err()
        );
    }
    println!(
        "wrong count: {}",
        describe(&fabric::get(&wrong[4]).unwrap_err())
    );
    let e = three::options(TaskOptions::new().num_returns(2))
        .remote(1u32)
        .unwrap_err();
    println!("tuple count: {}", describe(&e));
    let e = count::options(TaskOptions::new().num_returns(2))
        .remote(1u64)
        .unwrap_err();
    println!("undeclared: {}", describe(&e));
    // Cancelling through the second reference cancels the task.
    let (a, b) = slow_pair::options(opts()).remote(5_000u64)?;
    fabric::cancel(&b)?;
    println!(
        "cancelled: {} / {}",
        describe(&fabric::get(&a).unwrap_err()),
        describe(&fabric::get(&b).unwrap_err())
    );
    Ok(())
}

fn varargs() -> fabric::Result<()> {
    let parts: Vec<ObjectRef<u64>> = (1..=20u64)
        .map(|i| count::options(opts()).remote(i))
        .collect::<fabric::Result<_>>()?;
    let sum = total::options(opts()).remote(Refs(parts.clone()))?;
    println!("total of 20: {}", fabric::get(&sum)?);
    let empty = total::options(opts()).remote(Refs(Vec::new()))?;
    println!("total of none: {}", fabric::get(&empty)?);
    let name = fabric::put(&"ada".to_string())?;
    let (n, s, first): (String, u64, u64) = fabric::get_each((&name, &sum, &parts[0]))?;
    println!("each: {n} {s} {first}");
    let mut with_failure = parts;
    with_failure.push(fail_at::options(opts()).remote(5u64)?);
    let e = fabric::get(&total::options(opts()).remote(Refs(with_failure))?).unwrap_err();
    println!("failed part: {}", describe(&e));
    Ok(())
}

fn typed_errors() -> fabric::Result<()> {
    let e = fabric::get(&withdraw::options(opts()).remote(3u64, 8u64)?).unwrap_err();
    println!(
        "withdraw: {} -> {:?}",
        describe(&e),
        e.app_error::<BankError>()
    );
    let e = fabric::get(&fail_at::options(opts()).remote(4u64)?).unwrap_err();
    println!("string: {:?}", e.app_error::<String>());
    let e = fabric::get(&untyped::options(opts()).remote()?).unwrap_err();
    println!("untyped: {} -> {:?}", describe(&e), e.app_error::<String>());
    let failed = withdraw::options(opts()).remote(1u64, 2u64)?;
    let e = fabric::get(&after::options(opts()).remote(&failed)?).unwrap_err();
    println!("dependent: {:?}", e.app_error::<BankError>());
    let account = Account::remote(10u64)?;
    let e = fabric::get(&account.take(11u64).remote()?).unwrap_err();
    println!(
        "actor: {} -> {:?}",
        describe(&e),
        e.app_error::<BankError>()
    );
    assert!(matches!(
        e,
        Error::TaskFailed {
            kind: FailureKind::ApplicationError,
            ..
        }
    ));
    Ok(())
}

fn bytes() -> fabric::Result<()> {
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    let r = fabric::put_bytes(&data)?;
    let back = fabric::get_bytes(&r)?;
    println!("put_bytes 8 MiB: read back equal {}", back == data);
    let mut window = vec![0u8; 1000];
    let len = fabric::get_bytes_into(&r, 5_000_000, &mut window)?;
    println!(
        "window: length {len}, equal {}",
        window[..] == data[5_000_000..5_001_000]
    );
    let e = fabric::get_bytes_into(&r, len - 10, &mut window).unwrap_err();
    println!("past the end: {}", describe(&e));
    let made = make_bytes::options(opts()).remote(3_000_000u32)?;
    let got = fabric::get_bytes(&made)?;
    println!(
        "task bytes: {} bytes, equal {}",
        got.len(),
        got == data[..3_000_000]
    );
    let not_bytes = mistyped(5)?;
    println!(
        "not bytes: {}",
        describe(&fabric::get_bytes(&not_bytes).unwrap_err())
    );
    Ok(())
}

/// A reference typed as a byte object to `count(n)`'s result, a number
/// (as a guest in another language might hold one).
fn mistyped(n: u64) -> fabric::Result<ObjectRef<ByteBuf>> {
    let mut args = fabric::__rt::ArgList::new();
    args.push(Arg::Value(n))?;
    fabric::__rt::submit::<ByteBuf>(count::NAME, args, &opts())
}

/// Reads a byte object of `MiB` (argument 2, default 256) five times as a
/// `ByteBuf` and five times with `get_bytes`, and prints the best rate of
/// each (a figure, not a check).
fn bytes_speed() -> fabric::Result<()> {
    let mib: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let r = fabric::put_bytes(&vec![7u8; mib << 20])?;
    let best = |f: &dyn Fn() -> fabric::Result<usize>| -> fabric::Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            assert_eq!(f()?, mib << 20);
            best = best.min(started.elapsed().as_secs_f64());
        }
        Ok((mib << 20) as f64 / best / 1e9)
    };
    let decoded = best(&|| Ok(fabric::get(&r)?.len()))?;
    let once = best(&|| Ok(fabric::get_bytes(&r)?.len()))?;
    println!("{mib} MiB: get as ByteBuf {decoded:.2} GB/s, get_bytes {once:.2} GB/s");
    Ok(())
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "returns" => returns(),
        "varargs" => varargs(),
        "typed-errors" => typed_errors(),
        "bytes" => bytes(),
        "bytes-speed" => bytes_speed(),
        "streams" => streams::streams(),
        other => {
            println!("unknown scenario `{other}`");
            Ok(())
        }
    }
}
