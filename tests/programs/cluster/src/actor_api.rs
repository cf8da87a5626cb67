//! Scenarios of Ray's actor API: handles counted wherever they are,
//! concurrent actors, an actor pool and a queue.

use std::time::Duration;

use fabric::prelude::*;

use crate::{Tally, here};

/// Holds a handle to a [`Tally`] (an actor's handles count too).
#[fabric::actor]
struct Keeper {
    tally: ActorHandle<Tally>,
}

#[fabric::actor]
impl Keeper {
    fn new(tally: ActorHandle<Tally>) -> Self {
        Keeper { tally }
    }

    fn poke(&self, n: i64) -> fabric::Result<i64> {
        Ok(fabric::get(&self.tally.add(n).remote()?)?.1)
    }
}

/// A concurrent actor: its calls take turns on one state while they wait.
#[fabric::actor]
struct Napper {
    active: std::cell::Cell<u32>,
    most_active: std::cell::Cell<u32>,
    naps: std::cell::Cell<u32>,
}

#[fabric::actor]
impl Napper {
    fn new() -> Self {
        Napper {
            active: Default::default(),
            most_active: Default::default(),
            naps: Default::default(),
        }
    }

    /// Sleeps `ms`, counting the calls asleep at once.
    async fn nap(&self, ms: u64) -> String {
        self.active.set(self.active.get() + 1);
        self.most_active
            .set(self.most_active.get().max(self.active.get()));
        fabric::sleep(Duration::from_millis(ms)).await;
        self.active.set(self.active.get() - 1);
        self.naps.set(self.naps.get() + 1);
        here()
    }

    /// Waits for the object inside `r` (another call may finish meanwhile).
    async fn wait_for(&self, r: Vec<ObjectRef<u64>>) -> fabric::Result<u64> {
        fabric::get_async(&r[0]).await
    }

    /// The length of `s` (a call whose argument may be another call's
    /// result).
    async fn length(&self, s: String) -> usize {
        s.len()
    }

    /// The most calls asleep at once, and the naps taken.
    fn counts(&self) -> (u32, u32) {
        (self.most_active.get(), self.naps.get())
    }

    /// The naps taken so far, then `n` more numbers: a generator method of
    /// a concurrent actor (it waits for room as it yields).
    fn count_from_naps(&self, n: u64) -> Generator<'_, u64> {
        let start = u64::from(self.naps.get());
        Generator::new((0..n).map(move |i| start + i))
    }
}

/// `v`, after `ms` milliseconds.
#[fabric::remote]
fn slow_value(v: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    v
}

/// Calls take turns on a concurrent actor (on `actor_node`, at most 4 at
/// once): a call waits for an object while 12 naps run in the 3 slots left;
/// the counts are the one state's.
pub(crate) fn concurrent(actor_node: &str) -> fabric::Result<()> {
    let options = match actor_node {
        "here" => ActorOptions::new(),
        n => ActorOptions::new().on_node(n, false),
    };
    let napper = Napper::options(options.max_concurrency(4)).remote()?;
    let slow = slow_value::remote(42, 3000)?;
    let waiting = napper.wait_for(vec![slow]).remote()?;
    let naps: Vec<_> = (0..12)
        .map(|_| napper.nap(200).remote())
        .collect::<fabric::Result<_>>()?;
    let nodes = fabric::get_all(&naps)?;
    let pending = fabric::wait(std::slice::from_ref(&waiting), 1, Some(Duration::ZERO))?
        .0
        .is_empty();
    println!("naps done while a call waits for an object: {pending}");
    println!("it waited for {}", fabric::get(&waiting)?);
    let (most, count) = fabric::get(&napper.counts().remote()?)?;
    println!(
        "most naps at once {most}, naps {count}, on the chosen node: {}",
        nodes
            .iter()
            .all(|n| actor_node == "here" || n == actor_node)
    );
    // A call whose argument is another call's result: it waits for it
    // without holding up that call.
    let first = napper.nap(100).remote()?;
    let chained = napper.length(first).remote()?;
    let len = fabric::get_timeout(&chained, Duration::from_secs(30))?;
    println!("a call on another call's result: {}", len > 0);
    // A generator method streams from the concurrent actor, 2 items ahead
    // of its caller at most.
    let items = napper.count_from_naps(6).backpressure(2).remote()?;
    let counted = items
        .map(|r| fabric::get(&r?))
        .collect::<fabric::Result<Vec<u64>>>()?;
    println!("a generator method streams: {counted:?}");
    Ok(())
}

/// A worker for the actor pool.
#[fabric::actor]
struct Squarer;

#[fabric::actor]
impl Squarer {
    fn new() -> Self {
        Squarer
    }

    fn square(&self, x: u64) -> u64 {
        x * x
    }
}

/// Takes `n` items from `q`, each waiting for one.
#[fabric::remote]
fn take_items(q: fabric::util::Queue<String>, n: usize) -> fabric::Result<Vec<String>> {
    (0..n).map(|_| q.get()).collect()
}

/// An actor pool (ordered and unordered maps, submit and get_next) and a
/// bounded queue (its actor on `queue_node`) that a task on `task_node`
/// takes from while the driver puts, waiting for room.
pub(crate) fn pool_queue(queue_node: &str, task_node: &str) -> fabric::Result<()> {
    use fabric::util::{ActorPool, Queue, QueueError};
    let workers = (0..3)
        .map(|_| Squarer::remote())
        .collect::<fabric::Result<Vec<_>>>()?;
    let mut pool = ActorPool::new(workers);
    let ordered: Vec<u64> = pool
        .map(|w, x| w.square(x).remote(), 0..10u64)
        .collect::<fabric::Result<_>>()?;
    println!("map in order: {ordered:?}");
    let mut unordered: Vec<u64> = pool
        .map_unordered(|w, x| w.square(x).remote(), 0..10u64)
        .collect::<fabric::Result<_>>()?;
    unordered.sort_unstable();
    println!("map_unordered, sorted: {unordered:?}");
    pool.submit(|w| w.square(7).remote());
    pool.submit(|w| w.square(8).remote());
    let (a, b) = (pool.get_next()?, pool.get_next()?);
    println!("submit then get_next: {a} {b}, more: {}", pool.has_next());

    let on = |node: &str| match node {
        "here" => ActorOptions::new(),
        n => ActorOptions::new().on_node(n, false),
    };
    let q: Queue<String> = Queue::with_options(2, on(queue_node))?;
    q.put(&"a".to_string())?;
    q.put(&"b".to_string())?;
    let refused = q
        .put_nowait(&"c".to_string())
        .map_err(|e| QueueError::of(&e));
    println!("a put on a full queue: {refused:?}");
    let task = match task_node {
        "here" => TaskOptions::new(),
        n => TaskOptions::new().on_node(n, false),
    };
    let consumer = take_items::options(task).remote(q.clone(), 5)?;
    for i in 0..3 {
        q.put(&format!("item{i}"))?;
    }
    println!("the task took {:?}", fabric::get(&consumer)?);
    let nothing = q
        .get_timeout(Duration::from_millis(100))
        .map_err(|e| QueueError::of(&e));
    println!("a get on an empty queue: {nothing:?}, size {}", q.qsize()?);
    Ok(())
}

/// Calls the tally whose handle is inside `boxed`.
#[fabric::remote]
fn add_from_box(boxed: ObjectRef<Vec<ActorHandle<Tally>>>, n: i64) -> fabric::Result<i64> {
    let inside = fabric::get(&boxed)?;
    Ok(fabric::get(&inside[0].add(n).remote()?)?.1)
}

/// An actor lives while a handle to it does, anywhere: a call made before
/// the last local handle went, a handle inside an object read by a task on
/// node `task_node`, one held by another actor; it stops once the last goes,
/// and gives its seat (the one `ssd` of `actor_node`) back.
pub(crate) fn handle_lifetime(actor_node: &str, task_node: &str) -> fabric::Result<()> {
    let on = |node: &str| match node {
        "here" => ActorOptions::new(),
        n => ActorOptions::new().on_node(n, false),
    };
    let seat = || Tally::options(on(actor_node).resource("ssd", 1.0));
    let tally = seat().remote()?;
    let first = tally.add(1).remote()?;
    let boxed = fabric::put(&vec![tally.clone()])?;
    let keeper = Keeper::options(on(task_node)).remote(tally.clone())?;
    drop(tally);
    println!("a call made before the drop: {}", fabric::get(&first)?.1);
    let task = match task_node {
        "here" => TaskOptions::new(),
        n => TaskOptions::new().on_node(n, false),
    };
    let via = add_from_box::options(task).remote(boxed.clone(), 2)?;
    println!("through an object, from a task: {}", fabric::get(&via)?);
    drop(boxed);
    println!(
        "held by another actor: {}",
        fabric::get(&keeper.poke(3).remote()?)?
    );
    // The keeper's last handle: it stops, and with it the tally's last one.
    drop(keeper);
    let next = seat().remote()?;
    let answered = fabric::get_timeout(&next.add(5).remote()?, Duration::from_secs(30));
    match answered {
        Ok((_, total)) => println!("the seat was given back: a new tally says {total}"),
        Err(e) => println!("the seat was not given back: {e}"),
    }
    Ok(())
}

/// Watches on an actor (on `actor_node`) that their watcher drops go from
/// the actor's list: three rounds of 3,000 watches made and dropped leave
/// room for more than the 4,096 one actor may have waiting, and a watch
/// fires when the actor is killed.
pub(crate) fn watch_churn(actor_node: &str) -> fabric::Result<()> {
    let options = match actor_node {
        "here" => ActorOptions::new(),
        n => ActorOptions::new().on_node(n, false),
    };
    let tally = Tally::options(options).remote()?;
    for _ in 0..3 {
        let watches = (0..3000)
            .map(|_| tally.watch())
            .collect::<fabric::Result<Vec<_>>>()?;
        let (fired, _) = fabric::wait(&watches, 1, Some(Duration::from_millis(100)))?;
        println!("watches fired while it lives: {}", fired.len());
        drop(watches);
        // The watcher's node cancels dropped watches with its heartbeat.
        std::thread::sleep(Duration::from_millis(400));
    }
    let last = tally.watch()?;
    tally.kill()?;
    let fired = fabric::get_timeout(&last, Duration::from_secs(10));
    println!(
        "the last watch after the kill: {}",
        matches!(fired, Err(fabric::Error::ActorDied(_)))
    );
    Ok(())
}
