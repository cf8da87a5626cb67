//! Every guest program, and every scenario in a scenario program, has a test
//! (as wasmtime's test-programs check): adding a program without a test fails.

use crate::support::{examples, node, programs, run_ok, wat};

fn test_sources() -> String {
    let dir = std::path::Path::new(crate::support::REPO_ROOT).join("tests/all");
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "coverage.rs" {
            all.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    all
}

#[test]
fn every_guest_program_has_a_test() {
    let sources = test_sources();
    for (group, list) in [
        ("examples", examples::ALL),
        ("programs", programs::ALL),
        ("wat", wat::ALL),
    ] {
        for (package, _) in list {
            let name = package.trim_end_matches(".wat");
            let konst = format!("{group}::{}", name.replace('-', "_").to_uppercase());
            assert!(sources.contains(&konst), "no test uses {konst} ({package})");
        }
    }
}

#[test]
fn every_python_example_has_a_test() {
    let sources = test_sources();
    let dir = std::path::Path::new(crate::support::REPO_ROOT).join("examples/python");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".py") {
            count += 1;
            let path = format!("\"examples/python/{name}\"");
            assert!(
                sources.contains(&path),
                "no test runs examples/python/{name}"
            );
        }
    }
    assert!(count >= 6, "{count} Python examples");
}

/// The `fabric` binary carries the Python SDK it builds with: a module
/// added to guest-sdk/python/fabric but not to host/cli/python.rs's list
/// would be missing from every Python component.
#[test]
fn every_python_sdk_module_is_built_into_fabric() {
    let root = std::path::Path::new(crate::support::REPO_ROOT);
    let embedded = std::fs::read_to_string(root.join("host/cli/python.rs")).unwrap();
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("guest-sdk/python/fabric")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".py") {
            count += 1;
            let include = format!("include_str!(\"../../guest-sdk/python/fabric/{name}\")");
            assert!(
                embedded.contains(&include),
                "guest-sdk/python/fabric/{name} is not in host/cli/python.rs's SDK list"
            );
        }
    }
    assert!(count >= 10, "{count} SDK modules");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_has_a_test() {
    let sources = test_sources();
    for program in [
        programs::TASKS,
        programs::ACTORS,
        programs::HOSTILE,
        programs::BREACHES,
    ] {
        let list = run_ok(&node(1.0), program, &["list"]).await;
        let scenarios: Vec<&str> = list.split_whitespace().collect();
        assert!(scenarios.len() > 5, "{list}");
        for s in scenarios {
            assert!(
                sources.contains(&format!("\"{s}\"")),
                "scenario `{s}` of {program} has no test"
            );
        }
    }
}

#[test]
fn every_jobs_api_route_is_in_its_openapi_file() {
    let root = std::path::Path::new(crate::support::REPO_ROOT);
    let routes = std::fs::read_to_string(root.join("host/src/head/rest/mod.rs")).unwrap();
    let spec = std::fs::read_to_string(root.join("docs/jobs-api.yaml")).unwrap();
    let paths: Vec<&str> = routes
        .split(".route(\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap())
        .filter(|p| p.starts_with("/api/"))
        .collect();
    assert!(paths.len() >= 5, "{paths:?}");
    for p in paths {
        assert!(
            spec.contains(&format!("\n  {p}:\n")),
            "{p} is not described in docs/jobs-api.yaml"
        );
    }
}
