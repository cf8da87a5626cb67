//! A GPU task: it runs only where a GPU is free, and reads the ids of the
//! GPUs it was given. On a node without GPUs the call fails at once with a
//! resources-infeasible error naming the GPU.
//!
//! Run it:
//! ```text
//! cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p gpu
//! fabric run examples/target/wasm32-wasip2/release/gpu.wasm --num-gpus 1
//! ```

#[fabric::remote(num_gpus = 1)]
fn use_gpu() -> String {
    let ctx = fabric::context();
    format!("task ran with GPU ids {:?}", ctx.gpu_ids)
}

#[fabric::main]
fn main() -> fabric::Result<()> {
    let r = use_gpu::remote()?;
    println!("{}", fabric::get(&r)?);
    Ok(())
}
