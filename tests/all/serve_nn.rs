//! Model inference through `wasi:nn`: the digits classifier of
//! examples/digits served over HTTP with its accuracy checked, and what a
//! tenant's models and tensors are refused. ONNX Runtime comes from the
//! `onnxruntime` wheel .ci/run installs.

use std::path::Path;

use fabric_host::limits::Limits;
use fabric_host::manifest::Policy;
use fabric_host::wasi_nn::NnSettings;
use fabric_host::{JobOutcome, NodeConfig};

use crate::hostile::{assert_victim_ok, finish, start_program, start_victim};
use crate::support::curl::{self, Body};
use crate::support::{REPO_ROOT, examples, node_with, programs, test_config};

/// The ONNX Runtime library of the installed `onnxruntime` wheel.
pub(crate) fn onnxruntime() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; print(u.find_spec('onnxruntime').submodule_search_locations[0])",
        ])
        .output()
        .expect("python3");
    let package = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !package.is_empty(),
        "no onnxruntime wheel: `python3 -m pip install --user --no-deps onnxruntime==1.22.1` \
         (.ci/run installs it)"
    );
    format!("{package}/capi")
}

/// The README's classifier: examples/digits/serve.toml (its component the
/// example as tests/artifacts built it), a Rust replica that loads its
/// ONNX model once and classifies each request's images; on the 450
/// held-out digits it is as accurate as scikit-learn was when `train.py`
/// made it (0.9733).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digits_classifier_serves_its_model_through_wasi_nn() {
    let dir = Path::new(REPO_ROOT).join("examples/digits");
    let config = std::fs::read_to_string(dir.join("serve.toml")).unwrap();
    let built = config
        .replace(
            "component = \".\"",
            &format!("component = {:?}", examples::DIGITS),
        )
        .replace("\"nn.toml\"", &format!("{:?}", dir.join("nn.toml")));
    assert_ne!(built, config);
    let path = crate::support::unique_temp_path("digits.toml");
    std::fs::write(&path, built).unwrap();
    let lib = onnxruntime();
    let s = crate::serve::start_with(&path, &["--onnxruntime", &lib]);
    classifies_the_held_out_digits(&s, "Rust");
}

/// Posts examples/digits' 450 held-out digits to `s`'s `/digits`, 50 to a
/// request: it is as accurate as scikit-learn was when `train.py` made
/// the model (0.9733); a request that is no batch of 8x8 images is the
/// replica's 400.
fn classifies_the_held_out_digits(s: &crate::serve::Served, replica: &str) {
    let dir = Path::new(REPO_ROOT).join("examples/digits");
    let test: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("test.json")).unwrap()).unwrap();
    let (images, labels) = (
        test["images"].as_array().unwrap(),
        test["labels"].as_array().unwrap(),
    );
    assert_eq!((images.len(), labels.len()), (450, 450));
    let url = format!("{}/digits", s.base);
    let mut right = 0;
    for (images, labels) in images.chunks(50).zip(labels.chunks(50)) {
        let body = serde_json::json!({ "images": images }).to_string();
        let (status, answer) = curl::request(Path::new(""), "POST", &url, None, Body::Json(&body));
        assert_eq!(status, 200, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let digits = answer["digits"].as_array().unwrap();
        assert_eq!(digits.len(), labels.len());
        right += digits.iter().zip(labels).filter(|(a, b)| a == b).count();
    }
    let accuracy = right as f64 / 450.0;
    eprintln!("{replica} digits classifier: {right} of 450 right ({accuracy:.4})");
    assert!(accuracy >= 0.97, "accuracy {accuracy:.4}");
    let (status, answer) = curl::request(
        Path::new(""),
        "POST",
        &url,
        None,
        Body::Json(r#"{"images": [[1, 2, 3]]}"#),
    );
    assert_eq!(
        (status, answer.as_str()),
        (400, "image 0 does not have 64 pixels")
    );
}

/// A manifest asking for `wasi:nn` and granting examples/digits (its
/// `model.onnx`) read-only as `/model`.
fn model_grant() -> String {
    let model_dir = Path::new(REPO_ROOT)
        .join("examples/digits")
        .canonicalize()
        .unwrap();
    format!(
        "[capabilities]\nnn = true\n[[capabilities.dir]]\nhost = {model_dir:?}\n\
         guest = \"/model\"\nmode = \"ro\"\n"
    )
}

/// The classifier in Python (examples/python/digits.py): its replica reads
/// the model from the directory its manifest grants, loads it once through
/// `fabric.nn` and answers as the Rust one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_digits_classifier_serves_its_model_through_wasi_nn() {
    let wasm = crate::python::python_app("examples/python/digits.py").await;
    let dir = crate::support::unique_temp_path("py-digits");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("digits-nn.toml"), model_grant()).unwrap();
    let config = format!(
        "[[deployment]]\nname = \"digits\"\ncomponent = {wasm:?}\nclass = \"Classifier\"\n\
         route = \"/digits\"\npublic = true\nmanifest = \"digits-nn.toml\"\n"
    );
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let s = crate::serve::start_with(&path, &["--onnxruntime", &onnxruntime()]);
    classifies_the_held_out_digits(&s, "Python");
}

/// `fabric.nn` from a Python job (tests/programs/python/nn_calls.py): its
/// refusals are typed `NnError`s, and nothing a call took on the node stays
/// held (5,000 failed loads and 5,000 runs in one instance, past the 4,160
/// wasi-nn resources one instance may hold); a model for the GPU is refused
/// to work given no GPU, and, on a node whose ONNX Runtime has no CUDA (the
/// CPU wheel CI installs), to work given one; without the `nn` capability
/// every load is refused as `SECURITY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_job_runs_models_and_gives_back_what_each_call_took() {
    let wasm = crate::python::python_app("tests/programs/python/nn_calls.py").await;
    let dir = crate::support::unique_temp_path("py-nn-calls");
    std::fs::create_dir_all(&dir).unwrap();
    let granted = dir.join("granted.toml");
    std::fs::write(&granted, model_grant()).unwrap();
    let refused = dir.join("refused.toml");
    std::fs::write(&refused, "[capabilities]\nnn = false\n").unwrap();
    let run = |manifest: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fabric"))
            .env("XDG_CACHE_HOME", crate::support::cache_dir())
            .args(["run", &wasm, "--manifest"])
            .arg(manifest)
            .args(["--onnxruntime", &onnxruntime(), "--num-gpus", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(
        run(&granted),
        "not a model: INVALID_ENCODING True\n5000 refusals: ['INVALID_ARGUMENT True']\n\
         on a GPU, given none: UNSUPPORTED_OPERATION True\n\
         on a GPU, given one: UNSUPPORTED_OPERATION: this node's ONNX Runtime cannot run \
         models on a GPU (no CUDA execution provider: the node needs onnxruntime-gpu 1.22, \
         CUDA 12)\non a GPU, given half: UNSUPPORTED_OPERATION: this task or replica was \
         given no whole GPU\n5000 runs: [(0,)]\nwrong type: INVALID_ARGUMENT\nclosed\n"
    );
    assert_eq!(
        run(&refused),
        "not a model: SECURITY True\n5000 refusals: ['SECURITY True']\n\
         no model directory: FileNotFoundError\n"
    );
}

/// `fabric run` on the example classifies one digit in its driver.
#[test]
fn the_digits_example_runs_as_a_job() {
    let manifest = format!("{REPO_ROOT}/examples/digits/nn.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fabric"))
        .env("XDG_CACHE_HOME", crate::support::cache_dir())
        .args(["run", examples::DIGITS, "--manifest", &manifest])
        .args(["--onnxruntime", &onnxruntime()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "an 8x8 zero is classified as 0\n");
}

/// A node whose operator lets manifests grant `wasi:nn`, with ONNX Runtime.
fn nn_node(grant: bool, onnxruntime: bool) -> fabric_host::Node {
    let lib = onnxruntime.then(self::onnxruntime);
    node_with(NodeConfig {
        num_cpus: Some(2.0),
        max_limits: Some(Limits::max()),
        policy: Policy {
            grant_nn: grant,
            ..Policy::default()
        },
        // A small bound on what an instance holds, to reach it.
        nn: lib.map(|l| NnSettings {
            max_held: 8 << 20,
            ..NnSettings::new(l.into())
        }),
        ..test_config()
    })
}

const NN_MANIFEST: &str = r#"
[limits]
memory = "256 MiB"
cpu-time = "10s"
wall-time = "30s"
[capabilities]
nn = true
"#;

/// Mallory's models that reach for a file, outgrow the node's bounds or are
/// no models get typed refusals (never a crash of ONNX Runtime's host),
/// tensors that lie about their size trap only their own instance, and
/// alice's job beside it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_nn_refuses_what_a_tenants_model_must_not_do() {
    let node = nn_node(true, true);
    let victim = start_victim(&node, 1500).await;
    let attack = start_program(&node, programs::HOSTILE, "mallory", NN_MANIFEST, &["nn"]).await;
    let out = finish(attack).await.ok();
    assert_victim_ok(&finish(victim).await);
    let expected = [
        "external data: ErrorCode::Security: the model keeps tensor data in external files",
        "external default: ErrorCode::Security: the model keeps tensor data in external files",
        "too large: ErrorCode::TooLarge: the model is 68157440 bytes, past the node's [nn] \
         max-model of 67108864",
        "not a model: ErrorCode::InvalidEncoding: the model is not a well-formed ONNX",
        "empty: ErrorCode::InvalidArgument: ONNX Runtime refused the model",
        "on a GPU, given none: ErrorCode::UnsupportedOperation: this task or replica was \
         given no whole GPU",
        "wrong type: ErrorCode::InvalidArgument: input `X` takes",
        "unknown input: ErrorCode::InvalidArgument: the model has no input `Y`",
        "wrong shape: ErrorCode::RuntimeError: the inference failed: Got invalid dimensions",
        "well formed: loaded",
        "model 5: ErrorCode::TooLarge: no room for this model: this instance holds 4 models",
        "after dropping them: loaded",
        "lying tensor: Err(\"task `lying_tensor` trapped",
    ];
    for line in expected {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    assert!(out.contains("needs 256 bytes, got 3"), "{out}");
    assert!(
        out.contains("lying tensor, by the SDK: Some(NnError { code: ErrorCode::InvalidArgument"),
        "{out}"
    );
    assert!(out.contains("refusals dropped: 5000 of 5000\n"), "{out}");
    assert!(
        out.contains("big tensor: Err(\"task `big_tensor` trapped")
            && out.contains("past the node's [nn] max-held of 8388608"),
        "{out}"
    );
    assert!(
        out.contains("hoard: Err(\"task `hoard_contexts` trapped")
            && out.contains(
                "the guest keeps its errors: no room for an error: this instance \
                 holds 4160 wasi-nn resources"
            ),
        "{out}"
    );
}

/// A model that never ends (a `Loop` of 2^63 - 1 rounds) runs as its
/// task's CPU time and is stopped at its limit, inside ONNX Runtime; alice's
/// job beside it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_ends_stops_at_its_cpu_time_limit() {
    let node = nn_node(true, true);
    let victim = start_victim(&node, 1500).await;
    let manifest = NN_MANIFEST.replace("cpu-time = \"10s\"", "cpu-time = \"1s\"");
    let attack = start_program(&node, programs::HOSTILE, "mallory", &manifest, &["nn-spin"]);
    let out = finish(attack.await).await.ok();
    assert_victim_ok(&finish(victim).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        [1, 2, 3].map(|n| format!("spin {n}: limit-exceeded cpu-time 1000")),
        "{out}"
    );
    assert!(
        lines[3].starts_with("after the spins: classified as ")
            && lines[3].ends_with(" within 5 s: true"),
        "{out}"
    );
}

/// `wasi:nn` is off unless the job asks for it, the operator allows it and
/// the node has ONNX Runtime; each refusal says which is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_nn_is_off_unless_asked_allowed_and_present() {
    // Not asked: the manifest does not grant it. The job stops where it
    // must load a model to go on.
    let out = nn_job(true, true, "").await.stdout();
    assert!(
        out.contains("external data: ErrorCode::Security: wasi-nn is not granted to this job"),
        "{out}"
    );
    // Not allowed: the job is refused before it starts.
    let refused = job_error(&nn_job(false, true, NN_MANIFEST).await.outcome);
    assert!(
        refused.contains("the operator does not allow granting wasi-nn"),
        "{refused}"
    );
    // Not present: the node names no ONNX Runtime.
    let out = nn_job(true, false, NN_MANIFEST).await.stdout();
    assert!(
        out.contains(
            "external data: ErrorCode::UnsupportedOperation: this node has no ONNX Runtime"
        ),
        "{out}"
    );
}

/// Mallory's `nn` attacks under `manifest` on a node that allows `wasi:nn`
/// (`grant`) and has ONNX Runtime (`present`), or not.
async fn nn_job(grant: bool, present: bool, manifest: &str) -> crate::hostile::Job {
    let node = nn_node(grant, present);
    finish(start_program(&node, programs::HOSTILE, "mallory", manifest, &["nn"]).await).await
}

fn job_error(outcome: &JobOutcome) -> String {
    match &outcome.result {
        Ok(_) => panic!("the job ran"),
        Err(e) => e.to_string(),
    }
}
