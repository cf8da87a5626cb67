//! A fabric application that also imports an interface the host does not
//! provide (`evil:attack/host-secrets`). The node must refuse to load it
//! with a typed error naming the import.

wit_bindgen::generate!({
    path: "wit",
    world: "evil",
});

#[fabric::main]
fn main() -> fabric::Result<()> {
    println!(
        "{}",
        evil::attack::host_secrets::read_host_file("/etc/shadow")
    );
    Ok(())
}
