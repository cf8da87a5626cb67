//! `wasi:nn` attacks (tests/all/serve_nn.rs): models that reach outside
//! the model, past the node's bounds, or that are not models at all, and
//! tensors that lie about their size. Each prints what it got back.

use fabric::nn::{Model, NnError, Tensor, TensorType};

/// The digits classifier examples/digits serves.
const DIGITS: &[u8] = include_bytes!("../../../../examples/digits/model.onnx");

fn show<T>(what: &str, r: Result<T, NnError>) {
    match r {
        Ok(_) => println!("{what}: loaded"),
        Err(e) => println!("{what}: {:?}: {}", e.code, e.message),
    }
}

pub(crate) fn attacks() -> fabric::Result<()> {
    show("external data", Model::onnx(&external_data_model()));
    // The same tensor as a function's attribute default, which ONNX Runtime
    // fills in where it inlines the function.
    show("external default", Model::onnx(&external_default_model()));
    show("too large", Model::onnx(&vec![0u8; 65 << 20]));
    show("not a model", Model::onnx(b"\x0a\x03abc this is no onnx"));
    show("empty", Model::onnx(&[]));
    show("on a GPU, given none", Model::onnx_on_gpu(DIGITS));
    let model = Model::onnx(DIGITS).map_err(|e| fabric::Error::InvalidArgument(e.to_string()))?;
    let wrong_type = Tensor::i64(&[1, 64], &[0; 64]);
    show("wrong type", model.run(&[("X", wrong_type)]));
    show(
        "unknown input",
        model.run(&[("Y", Tensor::f32(&[1, 64], &[0.; 64]))]),
    );
    show(
        "wrong shape",
        model.run(&[("X", Tensor::f32(&[1, 63], &[0.; 63]))]),
    );
    let answered = model.run(&[("X", Tensor::f32(&[1, 64], &[0.; 64]))]);
    show("well formed", answered);
    // Models are bounded per instance (the node's default: 4).
    let mut kept = vec![model];
    let more = loop {
        match Model::onnx(DIGITS) {
            Ok(m) if kept.len() < 16 => kept.push(m),
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    show(&format!("model {}", kept.len() + 1), more);
    drop(kept);
    show("after dropping them", Model::onnx(DIGITS));
    let lie = lying_tensor::remote()?;
    println!(
        "lying tensor: {:?}",
        fabric::get(&lie).map_err(|e| e.to_string())
    );
    refusals_go();
    let big = big_tensor::remote()?;
    println!(
        "big tensor: {:?}",
        fabric::get(&big).map_err(|e| e.to_string())
    );
    let hoard = hoard_contexts::remote()?;
    println!(
        "hoard: {:?}",
        fabric::get(&hoard).map_err(|e| e.to_string())
    );
    Ok(())
}

/// A model that never ends (a `Loop` of 2^63 - 1 rounds, made by
/// `onnx.helper`), run in a task: its native work counts as the task's CPU
/// time, and stops at its limit.
/// Three of them, one after another, on a node of 2 CPUs (2 places for
/// native work): a run left spinning would keep its place, and the third,
/// or the classification after them, would wait for one.
pub(crate) fn spin() -> fabric::Result<()> {
    for round in 1..=3 {
        match fabric::get(&spin_forever::remote()?).map(|_| ()) {
            Ok(()) => println!("spin {round}: UNEXPECTED SUCCESS"),
            Err(fabric::Error::LimitExceeded { name, value, .. }) => {
                println!("spin {round}: limit-exceeded {name} {value}")
            }
            Err(e) => println!("spin {round}: {e}"),
        }
    }
    let started = std::time::Instant::now();
    let digit = fabric::get(&classify_zero::remote()?)?;
    let quick = started.elapsed().as_secs() < 5;
    println!("after the spins: classified as {digit} within 5 s: {quick}");
    Ok(())
}

#[fabric::remote]
fn classify_zero() -> i64 {
    let model = Model::onnx(DIGITS).expect("the digits model loads");
    let outputs = model.run(&[("X", Tensor::f32(&[1, 64], &[0.; 64]))]);
    outputs
        .expect("an answer")
        .get("label")
        .and_then(Tensor::to_i64)
        .expect("labels")[0]
}

#[fabric::remote]
fn spin_forever() -> String {
    let model = Model::onnx(include_bytes!("../spin.onnx")).expect("the spin model loads");
    let answer = model.run(&[("X", Tensor::f32(&[1], &[0.]))]);
    format!("UNEXPECTED: {:?}", answer.map(|_| ()))
}

/// Execution contexts kept in a loop: each counts in the instance's
/// bounds, and past them even the refusal has no room, so the instance
/// traps.
#[fabric::remote]
fn hoard_contexts() -> String {
    use fabric::nn::raw::graph;
    let model = graph::load(
        &[DIGITS.to_vec()],
        graph::GraphEncoding::Onnx,
        graph::ExecutionTarget::Cpu,
    )
    .expect("the digits model loads");
    let mut kept = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..10_000 {
        match model.init_execution_context() {
            Ok(context) => kept.push(context),
            Err(e) => refusals.push(e),
        }
    }
    format!(
        "UNEXPECTED: {} kept, {} refused",
        kept.len(),
        refusals.len()
    )
}

/// A tensor whose bytes do not fill its shape traps its instance: the
/// constructor has no error to return.
#[fabric::remote]
fn lying_tensor() -> String {
    // The SDK refuses it; the raw binding sends it on.
    let lie = Tensor {
        dimensions: vec![1, 64],
        ty: TensorType::Fp32,
        data: vec![0; 3],
    };
    let model = Model::onnx(DIGITS).expect("the digits model loads");
    println!(
        "lying tensor, by the SDK: {:?}",
        model.run(&[("X", lie.clone())]).err()
    );
    let raw = fabric::nn::raw::tensor::Tensor::new(&lie.dimensions, lie.ty, &lie.data);
    format!("UNEXPECTED: made {raw:?}")
}

/// A tensor past the node's `[nn] max-held` traps its instance (its
/// constructor has no error to return).
#[fabric::remote]
fn big_tensor() -> String {
    let data = vec![0u8; 16 << 20];
    let raw = fabric::nn::raw::tensor::Tensor::new(&[16 << 20], TensorType::U8, &data);
    format!("UNEXPECTED: made {raw:?}")
}

/// Refusals the guest drops are given back: many more than the instance
/// may hold at once.
fn refusals_go() {
    let mut refused = 0;
    for _ in 0..5_000 {
        if fabric::nn::raw::graph::load_by_name("none").is_err() {
            refused += 1;
        }
    }
    println!("refusals dropped: {refused} of 5000");
}

/// An ONNX model whose one initializer keeps its data in `/etc/passwd`
/// (`data_location = EXTERNAL`), as `onnx.save_model(...,
/// save_as_external_data=True)` writes it.
fn external_data_model() -> Vec<u8> {
    let entry = [field(1, b"location"), field(2, b"/etc/passwd")].concat();
    let tensor = [
        vec![1 << 3, 4],   // dims: [4]
        vec![2 << 3, 1],   // data_type: FLOAT
        field(8, b"w"),    // name
        field(13, &entry), // external_data
        vec![14 << 3, 1],  // data_location: EXTERNAL
    ]
    .concat();
    let graph = [field(5, &tensor), field(2, b"g")].concat();
    [vec![1 << 3, 8], field(7, &graph)].concat() // ir_version 8, graph
}

/// A model whose one local function has an attribute whose default is a
/// tensor kept in `/etc/passwd` (`FunctionProto.attribute_proto`).
fn external_default_model() -> Vec<u8> {
    let entry = [field(1, b"location"), field(2, b"/etc/passwd")].concat();
    let tensor = [
        vec![1 << 3, 4],
        vec![2 << 3, 1],
        field(13, &entry),
        vec![14 << 3, 1],
    ]
    .concat();
    let attribute = [field(1, b"v"), field(5, &tensor)].concat();
    let function = [field(1, b"f"), field(11, &attribute)].concat();
    [vec![1 << 3, 8], field(25, &function)].concat()
}

/// A length-delimited protobuf field (fields below 2048, bodies below 128
/// bytes: keys of one or two bytes, lengths of one).
fn field(number: u16, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128 && number < 2048);
    let key = number << 3 | 2;
    let mut v = if key < 128 {
        vec![key as u8]
    } else {
        vec![(key as u8) | 0x80, (key >> 7) as u8]
    };
    v.push(body.len() as u8);
    v.extend_from_slice(body);
    v
}
