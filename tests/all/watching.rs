//! Watching jobs on real node processes: one task's trace across nodes
//! (the node that sends a task and the node that runs it log it under the
//! same job and task ids at `--log-level debug`, so their logs join on
//! them), and `fabric submit`'s live progress on a terminal.

use crate::support::procs::ProcCluster;
use crate::support::programs;

/// `name=value` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap()
}

/// The log of node `i` without terminal colors.
fn log(c: &ProcCluster, i: usize) -> String {
    let raw = c.log(i);
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(ch);
        }
    }
    out
}

#[test]
fn a_task_sent_to_another_node_is_logged_under_the_same_ids_on_both() {
    let mut c = ProcCluster::start_logging(
        env!("CARGO_BIN_EXE_fabric"),
        "fabric_host=debug,fabric_runtime=debug,info",
        &["--num-cpus", "2"],
    );
    c.add(&["--num-cpus", "2"]);
    let worker = c.nodes[1].id.clone();
    let (out, err, ok) = c.submit(programs::CLUSTER, &["object-across", &worker]);
    assert!(ok, "{out}{err}");
    let (head, worker) = (log(&c, 0), log(&c, 1));
    let sent = head
        .lines()
        .find(|l| l.contains("forwarding a task") && l.contains("function=checksum"))
        .unwrap_or_else(|| panic!("the head did not log the task it sent:\n{head}"));
    let (job, task) = (field(sent, "job"), field(sent, "task"));
    let same = |l: &&str| l.contains(&format!("job={job}")) && l.contains(&format!("task={task}"));
    assert!(
        worker
            .lines()
            .filter(same)
            .any(|l| l.contains("a task arrived")),
        "the worker did not log task {task} arriving:\n{worker}"
    );
    let ran = worker
        .lines()
        .filter(same)
        .find(|l| l.contains("task ran"))
        .unwrap_or_else(|| panic!("the worker did not log task {task} running:\n{worker}"));
    assert!(ran.contains("outcome=succeeded"), "{ran}");
    assert!(
        head.lines()
            .any(|l| l.contains("a task's result arrived") && l.contains(&format!("task={task}"))),
        "the head did not log task {task}'s result:\n{head}"
    );
}

/// `fabric submit` on a terminal (a pseudo-terminal made by `script`) shows
/// the progress the head streams: tasks finished, pending and failed.
#[test]
fn submit_shows_the_jobs_progress_on_a_terminal() {
    let c = ProcCluster::start(env!("CARGO_BIN_EXE_fabric"), &["--num-cpus", "2"]);
    let cmd = format!(
        "{} submit --address {} {} -- fan-out 400",
        env!("CARGO_BIN_EXE_fabric"),
        c.head_address(),
        programs::CLUSTER
    );
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &cmd, "/dev/null"]);
    for (k, v) in c.command().get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("script (util-linux)");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{seen}");
    assert!(seen.contains("tasks 400"), "{seen:?}");
    let progress: Vec<&str> = seen
        .split("\x1b[2K")
        .filter(|s| s.starts_with("tasks: "))
        .collect();
    assert!(!progress.is_empty(), "no progress shown: {seen:?}");
    assert!(
        progress
            .iter()
            .all(|p| p.contains(" failed") && p.contains(" pending")),
        "{progress:?}"
    );
}
