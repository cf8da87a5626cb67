//! Compiling untrusted components under a time and memory bound.
//!
//! Wasmtime does not treat a component that is slow or memory-hungry to
//! compile as a vulnerability, so a node must not compile a tenant's
//! component in its own process without a bound. With a [`CompileSandbox`]
//! the engine compiles each new component in a child process (the `fabric`
//! binary's hidden `__compile` command) whose CPU time and address space
//! are capped with `setrlimit`, and which is killed past a wall-clock
//! deadline. The child writes wasmtime's compiled artifact to its stdout;
//! the node loads it with `Component::deserialize`. A child that breaks a
//! bound fails the load with a typed [`LoadError::CompileBound`].
//!
//! The child's engine is configured exactly as the node's (the same
//! [`EngineSettings`]), except that it allocates instances on demand: it
//! never runs one, and the pool's address-space reservation would not fit
//! under the memory bound.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::engine::{EngineSettings, engine_config};
use super::function_pack::{FunctionPack, PACK_BYTES as FUNCTION_PACK_BYTES};
use crate::error::LoadError;

/// Where and how tightly to compile untrusted components.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileSandbox {
    /// The `fabric` binary (it serves the hidden `__compile` command).
    pub program: PathBuf,
    /// CPU time one compilation may use.
    pub time: Duration,
    /// Address space the compiler process may map, in bytes.
    pub memory: u64,
}

impl CompileSandbox {
    /// Bounds for `program` that fit any component our SDK builds: 60 s of
    /// CPU and 4 GiB of address space.
    pub fn new(program: PathBuf) -> Self {
        CompileSandbox {
            program,
            time: Duration::from_secs(60),
            memory: 4 << 30,
        }
    }
}

/// Exit code of a child that ran out of memory (as opposed to crashing).
/// Public for the CLI, which passes it through.
const EXIT_NO_MEMORY: i32 = 86;

/// What a compiler process gives back: wasmtime's artifact and, when it
/// was handed a function pack, the pack to keep next (`None`: keep the one
/// there is) and how many functions it took from the pack and compiled.
pub(crate) struct Compiled {
    pub artifact: Vec<u8>,
    pub pack: Option<Vec<u8>>,
    pub functions: (u64, u64),
}

/// Compiles `bytes` in a bounded child process, reusing the functions of
/// `pack` (see [`super::function_pack`]) when there is one.
pub(crate) async fn compile_in_child(
    sandbox: &CompileSandbox,
    settings: &EngineSettings,
    bytes: &[u8],
    pack: Option<Vec<u8>>,
) -> Result<Compiled, LoadError> {
    let with_pack = pack.is_some();
    let mut child = spawn_compiler(sandbox, settings, with_pack)?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let input = bytes.to_vec();
    let work = async move {
        let feed = async move {
            // A child that dies early closes the pipe: its exit says why.
            if let Some(pack) = pack {
                let _ = stdin.write_all(&(pack.len() as u64).to_le_bytes()).await;
                let _ = stdin.write_all(&pack).await;
            }
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let mut artifact = Vec::new();
        let mut message = Vec::new();
        let (_, out, _) = tokio::join!(
            feed,
            stdout.read_to_end(&mut artifact),
            stderr.read_to_end(&mut message)
        );
        out.map(|_| (artifact, message))
    };
    // The CPU limit is the real bound; the wall clock catches a child that
    // sleeps or is starved.
    let deadline = sandbox.time * 2 + Duration::from_secs(5);
    let (artifact, message) = match tokio::time::timeout(deadline, work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(LoadError::Compile(format!(
                "reading the compiler's output: {e}"
            )));
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(LoadError::CompileBound(format!(
                "compiling took longer than {} s of wall-clock time",
                deadline.as_secs()
            )));
        }
    };
    let status = child
        .wait()
        .await
        .map_err(|e| LoadError::Compile(format!("waiting for the compiler: {e}")))?;
    if !status.success() {
        return Err(why_it_failed(sandbox, status, &message));
    }
    if !with_pack {
        return Ok(Compiled {
            artifact,
            pack: None,
            functions: (0, 0),
        });
    }
    split_output(artifact)
}

/// The artifact, the counts and the next pack out of a compiler's output
/// with a pack (see [`write_output`]).
fn split_output(mut out: Vec<u8>) -> Result<Compiled, LoadError> {
    let short = || LoadError::Compile("the compiler's output is cut short".into());
    let len = out
        .first_chunk::<8>()
        .map(|n| u64::from_le_bytes(*n) as usize)
        .filter(|&n| n <= out.len().saturating_sub(24))
        .ok_or_else(short)?;
    let count = |at: usize| u64::from_le_bytes(out[at..at + 8].try_into().expect("8 bytes"));
    let functions = (count(8 + len), count(16 + len));
    let pack = &out[24 + len..];
    if pack.len() > FUNCTION_PACK_BYTES {
        return Err(LoadError::Compile(
            "the compiler's function pack is over its bound".into(),
        ));
    }
    // One copy of the pack; the artifact stays in place.
    let pack = (!pack.is_empty()).then(|| pack.to_vec());
    out.truncate(8 + len);
    out.drain(..8);
    Ok(Compiled {
        artifact: out,
        functions,
        pack,
    })
}

/// Starts the compiler process, under its bounds from its first instruction.
fn spawn_compiler(
    sandbox: &CompileSandbox,
    settings: &EngineSettings,
    with_pack: bool,
) -> Result<tokio::process::Child, LoadError> {
    let cpu_secs = sandbox.time.as_secs().max(1);
    let memory = sandbox.memory;
    let mut command = tokio::process::Command::new(&sandbox.program);
    // The limits must hold from the child's first instruction: an
    // allocator that reserves address space at start-up (mimalloc does)
    // would otherwise commit memory inside reservations made before a
    // limit set in the child's `main`.
    // SAFETY: the closure runs between fork and exec and only calls
    // setrlimit, which is async-signal-safe, on its own stack values.
    unsafe {
        command.pre_exec(move || {
            limit(libc::RLIMIT_CPU, cpu_secs, cpu_secs + 1);
            limit(libc::RLIMIT_AS, memory, memory);
            Ok(())
        });
    }
    command
        .arg("__compile")
        .arg(format!("--cpu-secs={cpu_secs}"))
        .arg(format!("--memory={}", sandbox.memory))
        .arg(format!("--settings={}", settings.to_arg()))
        .args(with_pack.then_some("--functions"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            LoadError::Compile(format!(
                "cannot start the compiler process {}: {e}",
                sandbox.program.display()
            ))
        })
}

/// Why a compiler process that exited with `status` (saying `message` on
/// stderr) failed: a bound it broke, an invalid component, or a crash.
fn why_it_failed(
    sandbox: &CompileSandbox,
    status: std::process::ExitStatus,
    message: &[u8],
) -> LoadError {
    use std::os::unix::process::ExitStatusExt;
    let message = String::from_utf8_lossy(message).trim().to_string();
    let no_memory = || {
        LoadError::CompileBound(format!(
            "compiling needs more than the {} MiB memory bound",
            sandbox.memory >> 20
        ))
    };
    match (status.code(), status.signal()) {
        (Some(EXIT_NO_MEMORY), _) => no_memory(),
        // Rust aborts when an allocation fails under the address-space cap.
        (_, Some(libc::SIGABRT)) if message.contains("memory allocation") => no_memory(),
        // A thread or mapping the cap refused, reported as a panic.
        (Some(101), _)
            if message.contains("Cannot allocate memory")
                || message.contains("Resource temporarily unavailable") =>
        {
            no_memory()
        }
        (_, Some(libc::SIGXCPU | libc::SIGKILL)) => LoadError::CompileBound(format!(
            "compiling took more than the {} s CPU-time bound",
            sandbox.time.as_secs().max(1)
        )),
        (Some(1), _) if !message.is_empty() => LoadError::Invalid(message),
        _ => LoadError::Compile(format!("the compiler process failed ({status}): {message}")),
    }
}

/// The child's side: reads a component on stdin, writes its compiled
/// artifact to stdout. Exit codes: 0 done, 1 invalid component (message on
/// stderr), [`EXIT_NO_MEMORY`] out of memory, 2 bad arguments.
///
/// With `functions`, stdin starts with a function pack (its length, 8 bytes
/// little-endian, then the pack), and stdout carries the artifact's length,
/// the artifact and the pack to keep next (see [`split_output`]).
pub fn child_main(cpu_secs: u64, memory: u64, settings: &str, functions: bool) -> i32 {
    let settings = match EngineSettings::from_arg(settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bad engine settings: {e}");
            return 2;
        }
    };
    limit(libc::RLIMIT_CPU, cpu_secs, cpu_secs + 1);
    limit(libc::RLIMIT_AS, memory, memory);
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read the component: {e}");
        return 2;
    }
    let pack = match functions.then(|| read_pack(&mut input)).transpose() {
        Ok(pack) => pack.map(std::sync::Arc::new),
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let mut config = engine_config(&settings);
    // One thread: no thread pool to start under the address-space cap (its
    // stacks alone can exceed a small bound), and the CPU bound is the
    // compile's own time either way.
    config
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand)
        .parallel_compilation(false);
    if let Some(pack) = &pack
        && let Err(e) = config.enable_incremental_compilation(pack.clone())
    {
        eprintln!("cannot use the function pack: {e:#}");
        return 2;
    }
    let engine = match wasmtime::Engine::new(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot configure the compiler: {e:#}");
            return if format!("{e:#}").contains("memory") {
                EXIT_NO_MEMORY
            } else {
                2
            };
        }
    };
    match engine.precompile_component(&input) {
        Ok(artifact) => match write_output(&artifact, pack.as_deref()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cannot write the artifact: {e}");
                2
            }
        },
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("{message}");
            if message.contains("allocate") || message.contains("out of memory") {
                EXIT_NO_MEMORY
            } else {
                1
            }
        }
    }
}

/// Takes the pack off the front of the compiler's input. A pack that does
/// not decode is left out: the compile goes on without it.
fn read_pack(input: &mut Vec<u8>) -> Result<FunctionPack, String> {
    let len = input
        .first_chunk::<8>()
        .map(|n| u64::from_le_bytes(*n) as usize)
        .filter(|&n| n <= input.len() - 8)
        .ok_or("the input is cut short inside the function pack")?;
    let rest = input.split_off(8 + len);
    let pack = FunctionPack::decode(&input[8..]).unwrap_or_else(|e| {
        eprintln!("ignoring a function pack: {e}");
        FunctionPack::default()
    });
    *input = rest;
    Ok(pack)
}

/// The artifact, or with a pack the artifact's length, the artifact, the
/// functions reused and compiled (8 bytes each), and the next pack (empty
/// when this compile added nothing).
fn write_output(artifact: &[u8], pack: Option<&FunctionPack>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let Some(pack) = pack else {
        return out.write_all(artifact);
    };
    out.write_all(&(artifact.len() as u64).to_le_bytes())?;
    out.write_all(artifact)?;
    let (reused, made) = pack.counts();
    out.write_all(&(reused as u64).to_le_bytes())?;
    out.write_all(&(made as u64).to_le_bytes())?;
    if pack.changed() {
        out.write_all(&pack.encode())?;
    }
    out.flush()
}

fn limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) {
    let rl = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this
    // process's limits.
    unsafe {
        libc::setrlimit(resource, &rl);
    }
}
