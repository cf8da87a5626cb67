//! Actor scenarios for the integration tests, selected by the driver's
//! first argument.

use fabric::Error;
use fabric::prelude::*;

const SCENARIOS: &[&str] = &[
    "order",
    "named",
    "kill",
    "method-panic",
    "ctor-panic",
    "method-error",
    "handle-passing",
    "unknown-method",
    "ctor-args",
    "actor-from-task",
    "restart",
    "restart-no-checkpoint",
    "checkpoint-outside-actor",
    "checkpoint-too-big",
];

#[fabric::actor]
struct Log {
    entries: Vec<u32>,
}

#[fabric::actor]
impl Log {
    fn new() -> Self {
        Log {
            entries: Vec::new(),
        }
    }

    fn append(&mut self, i: u32) -> usize {
        self.entries.push(i);
        self.entries.len()
    }

    fn entries(&self) -> Vec<u32> {
        self.entries.clone()
    }

    fn explode(&mut self) -> u32 {
        panic!("log exploded after {} entries", self.entries.len());
    }

    fn check(&self, limit: u32) -> Result<u32, String> {
        if self.entries.len() as u32 > limit {
            Err(format!(
                "{} entries is over the limit of {limit}",
                self.entries.len()
            ))
        } else {
            Ok(limit)
        }
    }
}

#[fabric::actor]
struct Fragile {
    _x: u32,
}

#[fabric::actor]
impl Fragile {
    fn new(x: u32) -> Self {
        if x == 0 {
            panic!("cannot build a Fragile from zero");
        }
        Fragile { _x: x }
    }

    fn ping(&self) -> String {
        "pong".into()
    }
}

#[fabric::actor]
struct Account {
    owner: String,
    balance: i64,
}

#[fabric::actor]
impl Account {
    fn new(owner: String, balance: i64) -> Result<Self, String> {
        if balance < 0 {
            return Err(format!("{owner} cannot open with a negative balance"));
        }
        Ok(Account { owner, balance })
    }

    fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    fn describe(&self) -> String {
        format!("{}: {}", self.owner, self.balance)
    }
}

/// A counter that checkpoints after every increment, so a restart
/// continues from the last count.
#[fabric::actor]
struct Durable {
    n: u64,
    /// Constructor runs of this actor (1 plus its restarts).
    lives: u64,
    checkpoints: bool,
}

#[fabric::actor]
impl Durable {
    fn new(checkpoints: bool) -> fabric::Result<Self> {
        let (n, lives) = fabric::checkpoint::load::<(u64, u64)>()?.unwrap_or((0, 0));
        Ok(Durable {
            n,
            lives: lives + 1,
            checkpoints,
        })
    }

    fn incr(&mut self) -> fabric::Result<(u64, u64)> {
        self.n += 1;
        if self.checkpoints {
            fabric::checkpoint::save(&(self.n, self.lives))?;
        }
        Ok((self.n, self.lives))
    }

    fn crash(&mut self) -> u64 {
        panic!("crashed at {}", self.n);
    }

    /// Tries to save `mib` MiB as the checkpoint.
    fn save_big(&mut self, mib: usize) -> String {
        let state = fabric::serde_bytes::ByteBuf::from(vec![1u8; mib << 20]);
        match fabric::checkpoint::save(&state) {
            Ok(()) => "saved".into(),
            Err(e) => format!("{e:?}"),
        }
    }
}

/// A task that tries to checkpoint (it is no actor).
#[fabric::remote]
fn checkpoint_in_task() -> String {
    match fabric::checkpoint::save(&1u8) {
        Ok(()) => "saved".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// A task that creates an actor and hands it back: it outlives the task.
#[fabric::remote]
fn make_log(first: u32) -> fabric::Result<ActorHandle<Log>> {
    let log = Log::remote()?;
    fabric::get(&log.append(first).remote()?)?;
    Ok(log)
}

/// A task that calls an actor through a handle it was given.
#[fabric::remote]
fn append_from_task(log: ActorHandle<Log>, i: u32) -> fabric::Result<usize> {
    fabric::get(&log.append(i).remote()?)
}

fn describe(e: &Error) -> String {
    match e {
        Error::TaskFailed {
            function,
            kind,
            message,
            ..
        } => format!("TaskFailed {function} {kind:?}: {message}"),
        other => format!("{other:?}"),
    }
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "list" => println!("{}", SCENARIOS.join(" ")),
        "order" => {
            let log = Log::remote()?;
            let calls: Vec<_> = (0..1000)
                .map(|i| log.append(i).remote())
                .collect::<fabric::Result<_>>()?;
            let lens = fabric::get_all(&calls)?;
            let entries = fabric::get(&log.entries().remote()?)?;
            let in_order = entries == (0..1000).collect::<Vec<u32>>()
                && lens == (1..=1000).collect::<Vec<usize>>();
            println!("order {} {}", entries.len(), in_order);
        }
        "named" => {
            let log = Log::options(ActorOptions::new().name("journal")).remote()?;
            fabric::get(&log.append(7).remote()?)?;
            let found: ActorHandle<Log> = fabric::get_actor("journal")?;
            println!("found {:?}", fabric::get(&found.entries().remote()?)?);
            let again =
                Log::options(ActorOptions::new().name("journal").get_if_exists(true)).remote()?;
            println!("same {}", again.id() == log.id());
            println!(
                "{}",
                describe(
                    &Log::options(ActorOptions::new().name("journal"))
                        .remote()
                        .unwrap_err()
                )
            );
            println!(
                "{}",
                describe(&fabric::get_actor::<Log>("nobody").unwrap_err())
            );
        }
        "kill" => {
            let log = Log::remote()?;
            fabric::get(&log.append(1).remote()?)?;
            log.kill()?;
            println!(
                "{}",
                describe(&fabric::get(&log.append(2).remote()?).unwrap_err())
            );
        }
        "method-panic" => {
            let log = Log::remote()?;
            fabric::get(&log.append(1).remote()?)?;
            println!(
                "{}",
                describe(&fabric::get(&log.explode().remote()?).unwrap_err())
            );
            println!(
                "{}",
                describe(&fabric::get(&log.append(2).remote()?).unwrap_err())
            );
        }
        "ctor-panic" => {
            let f = Fragile::remote(0)?;
            println!(
                "{}",
                describe(&fabric::get(&f.ping().remote()?).unwrap_err())
            );
            let ok = Fragile::remote(1)?;
            println!("{}", fabric::get(&ok.ping().remote()?)?);
        }
        "method-error" => {
            let log = Log::remote()?;
            fabric::get(&log.append(1).remote()?)?;
            fabric::get(&log.append(2).remote()?)?;
            println!(
                "{}",
                describe(&fabric::get(&log.check(1).remote()?).unwrap_err())
            );
            println!("still alive {}", fabric::get(&log.append(3).remote()?)?);
        }
        "handle-passing" => {
            let log = Log::remote()?;
            let refs: Vec<_> = (0..5)
                .map(|i| append_from_task::remote(log.clone(), i))
                .collect::<fabric::Result<_>>()?;
            fabric::get_all(&refs)?;
            let mut entries = fabric::get(&log.entries().remote()?)?;
            entries.sort_unstable();
            println!("from tasks {entries:?}");
        }
        "unknown-method" => {
            let log = Log::remote()?;
            // An Account handle pointing at a Log: its methods are unknown there.
            let encoded = rmp_serde::to_vec(&log).expect("a handle encodes");
            let wrong: ActorHandle<Account> =
                rmp_serde::from_slice(&encoded).expect("a handle held here decodes");
            println!(
                "{}",
                describe(&fabric::get(&wrong.describe().remote()?).unwrap_err())
            );
        }
        "ctor-args" => {
            let a = Account::remote("ada".to_string(), 10)?;
            fabric::get(&a.deposit(5).remote()?)?;
            println!("{}", fabric::get(&a.describe().remote()?)?);
            let bad = Account::remote("bob".to_string(), -1)?;
            println!(
                "{}",
                describe(&fabric::get(&bad.describe().remote()?).unwrap_err())
            );
        }
        "actor-from-task" => {
            let log = fabric::get(&make_log::remote(41)?)?;
            fabric::get(&log.append(42).remote()?)?;
            println!(
                "made by a task {:?}",
                fabric::get(&log.entries().remote()?)?
            );
        }
        "restart" | "restart-no-checkpoint" => {
            // Restarts allowed: 2. Each crash fails its own call; the calls
            // behind it run on the restarted instance.
            let c = Durable::options(ActorOptions::new().max_restarts(2))
                .remote(scenario == "restart")?;
            for _ in 0..3 {
                fabric::get(&c.incr().remote()?)?;
            }
            for round in 1..=3 {
                let crash = c.crash().remote()?;
                let next = c.incr().remote()?;
                println!(
                    "crash {round}: {}",
                    describe(&fabric::get(&crash).unwrap_err())
                );
                match fabric::get(&next) {
                    Ok((n, lives)) => println!("after crash {round}: n={n} lives={lives}"),
                    Err(e) => println!("after crash {round}: {}", describe(&e)),
                }
            }
        }
        "checkpoint-too-big" => {
            // Over the 64 MiB cap: refused, and the actor lives on.
            let c = Durable::options(ActorOptions::new().max_restarts(1)).remote(true)?;
            println!("{}", fabric::get(&c.save_big(65).remote()?)?);
            println!("{:?}", fabric::get(&c.incr().remote()?)?);
        }
        "checkpoint-outside-actor" => {
            println!("{}", fabric::get(&checkpoint_in_task::remote()?)?);
            println!("{:?}", fabric::checkpoint::load::<u8>());
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown scenario `{other}`; try: {}",
                SCENARIOS.join(" ")
            )));
        }
    }
    Ok(())
}

/// A Serve replica in Rust (tests/all/serve.rs): each HTTP request is one
/// call of `call`, its `Response` the answer.
#[fabric::actor]
struct Greeter {
    served: u64,
}

/// A typed JSON answer.
#[derive(serde::Serialize)]
struct Sum {
    sum: i64,
}

/// Deployment `target`'s answer to `request` (its path made `/relayed`),
/// through the deployment's handle, marked as relayed.
fn relay(target: &str, mut request: fabric::serve::Request) -> fabric::serve::Response {
    request.path = "/relayed".into();
    let answer = fabric::serve::deployment(target).and_then(|d| {
        d.method::<fabric::serve::Response>("call")
            .arg(&request)
            .remote()?
            .get()
    });
    match answer {
        Ok(answer) => answer.header("x-via", "greeter"),
        Err(e) => fabric::serve::Response::text(502, e.to_string()),
    }
}

#[fabric::actor]
impl Greeter {
    fn new() -> Self {
        Greeter { served: 0 }
    }

    fn call(&mut self, request: fabric::serve::Request) -> fabric::serve::Response {
        if let Some(target) = request.path.strip_prefix("/hi/via/") {
            return relay(target, request.clone());
        }
        if request.path == "/hi/sum" {
            return fabric::serve::handle_json(&request, |numbers: Vec<i64>| Sum {
                sum: numbers.iter().sum(),
            });
        }
        self.served += 1;
        let agent = request.headers.contains_key("user-agent");
        fabric::serve::Response::text(
            200,
            format!(
                "{} {}?{} {} bytes, agent {agent}, #{}",
                request.method,
                request.path,
                request.query,
                request.body.len(),
                self.served
            ),
        )
        .header("x-served", self.served.to_string())
    }
}
