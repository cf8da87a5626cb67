//! The Rust half of a job made of two components (tests/all/python.rs): a
//! Rust driver that calls the Python component `py`
//! (tests/programs/python/polyglot.py), whose actor calls back into this
//! component's tasks. The job names this component `rust`.

use std::collections::BTreeMap;

use fabric::{AnyActor, Error, FailureKind, ObjectRef};
use serde::{Deserialize, Serialize};

/// Called from Python: `fabric.function("rust", "double")`.
#[fabric::remote]
fn double(x: i64) -> i64 {
    2 * x
}

/// Called from Python with a Python actor's handle: calls it from Rust.
#[fabric::remote]
fn poke(actor: AnyActor, by: i64) -> fabric::Result<i64> {
    fabric::get(&actor.method::<i64>("add").arg(by).remote()?)
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Reading {
    sensor: String,
    values: Vec<f64>,
}

/// What Python's features function returns for a reading.
#[derive(Deserialize, Debug)]
struct Features {
    sensor: String,
    mean: f64,
    count: u32,
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // `calls RESOURCE`: the Python work asks for one of RESOURCE, so it
        // runs on the node that has it.
        Some("calls") => calls(args.get(1).map(String::as_str)),
        Some("errors") => errors(),
        Some("objects") => objects(),
        other => Err(Error::InvalidArgument(format!(
            "unknown scenario {other:?}"
        ))),
    }
}

/// A Python task and a Python actor that calls back into a Rust task.
fn calls(resource: Option<&str>) -> fabric::Result<()> {
    let (mut task, mut actor) = (fabric::TaskOptions::new(), fabric::ActorOptions::new());
    if let Some(r) = resource {
        task = task.resource(r, 1.0);
        actor = actor.resource(r, 1.0);
    }
    let reading = Reading {
        sensor: "t1".into(),
        values: vec![1.0, 2.0, 6.0],
    };
    let f = fabric::function::<Features>("py", "features")
        .arg(&reading)
        .options(task)
        .remote()?;
    let f = fabric::get(&f)?;
    println!("features {} mean {} count {}", f.sensor, f.mean, f.count);
    let scorer = fabric::actor_class("py", "Scorer")
        .arg(10)
        .options(actor)
        .remote()?;
    let s = fabric::get(&scorer.method::<i64>("score").arg(5).remote()?)?;
    println!("score {s}");
    // The Python actor's handle goes into a Rust task, which calls it.
    let total = fabric::get(&poke::remote(scorer.clone(), 7)?)?;
    println!("poked total {total}");
    let lang = fabric::get(&scorer.method::<String>("language").remote()?)?;
    println!("actor language {lang}");
    let here = fabric::context().node_id;
    let there = fabric::get(&scorer.method::<String>("node").remote()?)?;
    println!("actor on the driver's node {}", here == there);
    Ok(())
}

/// Python's exceptions reach Rust as the same typed errors.
fn errors() -> fabric::Result<()> {
    let r = fabric::function::<i64>("py", "fail")
        .arg("bad input")
        .remote()?;
    match fabric::get(&r) {
        Err(e @ Error::TaskFailed { kind, .. }) => {
            let detail = e
                .app_error::<BTreeMap<String, String>>()
                .unwrap_or_default();
            let first = match &e {
                Error::TaskFailed { message, .. } => message.lines().next().unwrap_or(""),
                _ => "",
            };
            println!(
                "fail: {kind:?} {first} | type {:?}",
                detail.get("type").map(String::as_str)
            );
            assert_eq!(kind, FailureKind::ApplicationError);
        }
        other => println!("fail: unexpected {other:?}"),
    }
    match fabric::function::<i64>("nowhere", "x").remote() {
        Err(e) => println!("nowhere: {e}"),
        Ok(_) => println!("nowhere: submitted"),
    }
    let r = fabric::function::<i64>("py", "missing").remote()?;
    match fabric::get(&r) {
        Err(Error::TaskFailed { kind, .. }) => println!("missing: {kind:?}"),
        other => println!("missing: unexpected {other:?}"),
    }
    Ok(())
}

/// Objects either language stores, the other reads, references included.
fn objects() -> fabric::Result<()> {
    let reading = fabric::put(&Reading {
        sensor: "t2".into(),
        values: vec![4.0, 8.0],
    })?;
    // Python gets the reading by reference, stores its own object, and
    // returns a reference to it nested in a value.
    let out = fabric::function::<BTreeMap<String, ObjectRef<Reading>>>("py", "rescale")
        .arg_ref(&reading)
        .arg(0.5)
        .remote()?;
    let refs = fabric::get(&out)?;
    let scaled = fabric::get(&refs["scaled"])?;
    println!("rescaled {} {:?}", scaled.sensor, scaled.values);
    Ok(())
}
