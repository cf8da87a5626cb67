//! A WASI 0.2 command that does not implement `fabric:core/app`: `fabric run`
//! must refuse it with a clear error.
fn main() {
    println!("I am not a fabric application");
}
