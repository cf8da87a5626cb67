//! Paths of the guest components built by `build.rs`: `examples::HELLO`,
//! `programs::TASKS`, ... and `examples::ALL` / `programs::ALL` to check that
//! every program has a test.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
