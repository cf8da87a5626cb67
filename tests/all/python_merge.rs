//! `fabric build` merges a Python component's dynamically linked core
//! modules (host/cli/flatten): the function table is then one a module
//! defines and fills from constant offsets, which wasmtime initializes
//! lazily, where componentize-py's output has every library fill `main`'s
//! table at each instantiation.

use wasmparser::{Chunk, ElementKind, Operator, Parser, Payload};

use crate::python::python_app;

/// Per core module of a component: (functions it places into its own
/// tables, functions it places into tables it imports, active segments of
/// its own tables at an offset that is not a constant).
fn table_fills(component: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut parser = Parser::new(0);
    let mut pos = 0;
    loop {
        let Chunk::Parsed { consumed, payload } = parser.parse(&component[pos..], true).unwrap()
        else {
            panic!("truncated component");
        };
        pos += consumed;
        match payload {
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                out.push(module_fills(&component[unchecked_range.clone()]));
                pos = unchecked_range.end;
            }
            Payload::ComponentSection {
                unchecked_range, ..
            } => pos = unchecked_range.end,
            Payload::End(_) => return out,
            _ => {}
        }
    }
}

fn module_fills(module: &[u8]) -> (usize, usize, usize) {
    let mut imported_tables = 0;
    let (mut into_own, mut into_imported, mut dynamic) = (0, 0, 0);
    for payload in Parser::new(0).parse_all(module) {
        match payload.unwrap() {
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    if matches!(i.unwrap().ty, wasmparser::TypeRef::Table(_)) {
                        imported_tables += 1;
                    }
                }
            }
            Payload::ElementSection(r) => {
                for e in r {
                    let e = e.unwrap();
                    let ElementKind::Active {
                        table_index,
                        offset_expr,
                    } = e.kind
                    else {
                        continue;
                    };
                    let n = match e.items {
                        wasmparser::ElementItems::Functions(f) => f.count() as usize,
                        wasmparser::ElementItems::Expressions(_, x) => x.count() as usize,
                    };
                    if table_index.unwrap_or(0) < imported_tables {
                        into_imported += n;
                    } else {
                        into_own += n;
                        let mut ops = offset_expr.get_operators_reader();
                        if !matches!(ops.read().unwrap(), Operator::I32Const { .. }) {
                            dynamic += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (into_own, into_imported, dynamic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_components_function_table_is_filled_lazily() {
    let wasm = python_app("examples/python/hello.py").await;
    let fills = table_fills(&std::fs::read(&wasm).unwrap());
    let into_imported: usize = fills.iter().map(|f| f.1).sum();
    let dynamic: usize = fills.iter().map(|f| f.2).sum();
    // Unmerged, libc, libpython and the rest place about 5,700 functions
    // into `main`'s table at every instantiation. Merged, what is left are
    // the shims' tables (the late imports, and wit-component's indirect
    // lowerings): a few hundred.
    assert!(
        into_imported < 1_000,
        "{into_imported} functions are placed into imported tables: {fills:?}"
    );
    assert_eq!(dynamic, 0, "segments at offsets wasmtime cannot precompute");
    let own = fills.iter().map(|f| f.0).max().unwrap_or(0);
    assert!(own > 5_000, "no module fills a table of its own: {fills:?}");
}
