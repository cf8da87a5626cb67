//! A queue, an actor pool and a concurrent actor.
//!
//! A producer task fills a bounded `Queue` (it waits while the queue is
//! full); the driver takes the items and spreads them over an `ActorPool`
//! of workers; every worker asks one concurrent `Memo` actor, which starts
//! each slow square once and lets every caller of the same value await it,
//! without holding up the callers of other values. When the driver is done
//! with the pool, its workers stop: an actor lives while a handle to it does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use fabric::prelude::*;
use fabric::util::{ActorPool, Queue};

/// `x * x`, slowly.
#[fabric::remote]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    x * x
}

/// Remembers squares: a concurrent actor (it has `async fn` methods), so a
/// call waiting for a square lets the others run.
#[fabric::actor]
struct Memo {
    squares: RefCell<HashMap<u64, ObjectRef<u64>>>,
}

#[fabric::actor]
impl Memo {
    fn new() -> Self {
        Memo {
            squares: RefCell::new(HashMap::new()),
        }
    }

    /// `x * x`, computed once however many ask at once.
    async fn square(&self, x: u64) -> fabric::Result<u64> {
        let known = self.squares.borrow().get(&x).cloned();
        let r = match known {
            Some(r) => r,
            None => {
                let r = slow_square::remote(x)?;
                self.squares.borrow_mut().insert(x, r.clone());
                r
            }
        };
        // No `RefCell` borrow is held across this await.
        fabric::get_async(&r).await
    }

    fn computed(&self) -> usize {
        self.squares.borrow().len()
    }
}

#[fabric::actor]
struct Worker {
    memo: ActorHandle<Memo>,
}

#[fabric::actor]
impl Worker {
    fn new(memo: ActorHandle<Memo>) -> Self {
        Worker { memo }
    }

    fn work(&self, x: u64) -> fabric::Result<u64> {
        Ok(fabric::get(&self.memo.square(x).remote()?)? + 1)
    }
}

/// Puts `n` items on `q`, waiting while it is full.
#[fabric::remote]
fn produce(q: Queue<u64>, n: u64) -> fabric::Result<u64> {
    for i in 0..n {
        q.put(&(i % 4))?;
    }
    Ok(n)
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let memo = Memo::remote()?;
    let queue = Queue::<u64>::new(2)?;
    let producer = produce::remote(queue.clone(), 8)?;
    let items: Vec<u64> = (0..8).map(|_| queue.get()).collect::<fabric::Result<_>>()?;
    println!("produced {}, took {items:?}", fabric::get(&producer)?);
    let workers = (0..3)
        .map(|_| Worker::remote(memo.clone()))
        .collect::<fabric::Result<Vec<_>>>()?;
    let mut pool = ActorPool::new(workers);
    let results: Vec<u64> = pool
        .map(|w, x| w.work(x).remote(), items)
        .collect::<fabric::Result<_>>()?;
    println!("results {results:?}");
    println!(
        "slow squares computed: {}",
        fabric::get(&memo.computed().remote()?)?
    );
    Ok(())
}
