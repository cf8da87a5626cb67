//! Compiles fabric.proto with a vendored protoc (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=fabric.proto");
    tonic_prost_build::configure()
        // Object data and values: share the received buffer, don't copy it.
        .bytes(".fabric.v1")
        .compile_protos(&["fabric.proto"], &["."])?;
    Ok(())
}
