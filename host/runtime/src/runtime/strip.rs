//! Custom sections removed from a component before a node keeps it.
//!
//! Custom sections carry no code: debug information, producer notes, or
//! whatever a tenant puts there (a 48 MiB one costs a node 48 MiB for as long
//! as it keeps the component). A node keeps, compiles and sends to its peers
//! only the component without them, at every level of nesting. Small `name`
//! sections stay: they give the wasm backtraces in trap messages their
//! function names.
//!
//! ```
//! use fabric_runtime::runtime::strip::strip_custom_sections;
//! // An empty component with a 1 MiB custom section called "junk".
//! let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
//! let payload = vec![7u8; 1 << 20];
//! let mut section = vec![4u8];
//! section.extend_from_slice(b"junk");
//! section.extend_from_slice(&payload);
//! wasm.push(0);
//! let mut len = section.len();
//! while len >= 0x80 { wasm.push((len as u8 & 0x7f) | 0x80); len >>= 7; }
//! wasm.push(len as u8);
//! wasm.extend_from_slice(&section);
//! let stripped = strip_custom_sections(&wasm).unwrap();
//! assert_eq!(stripped, b"\0asm\x0d\0\x01\0");
//! ```

use wasm_encoder::{ComponentSectionId, CustomSection, RawSection, Section};
use wasmparser::{Encoding, Parser, Payload};

/// `name` sections up to this size are kept (for backtraces).
const NAMES_KEPT: usize = 1 << 20;

/// A module or component being rebuilt without its custom sections.
struct Level {
    encoding: Encoding,
    bytes: Vec<u8>,
}

impl Level {
    fn new(encoding: Encoding, header: &[u8]) -> Self {
        Level {
            encoding,
            bytes: header.to_vec(),
        }
    }

    fn push_raw(&mut self, id: u8, data: &[u8]) {
        append(&mut self.bytes, &RawSection { id, data });
    }
}

/// `section` with its id, as it stands in a binary.
fn append(sink: &mut Vec<u8>, section: &impl Section) {
    sink.push(section.id());
    section.encode(sink);
}

/// `wasm` (a component or a core module) without custom sections, except
/// `name` sections of at most 1 MiB. Walks nested modules and components
/// with an explicit stack: a deeply nested input cannot overflow the stack.
pub fn strip_custom_sections(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut stack: Vec<Level> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("{e}"))?;
        match payload {
            Payload::Version {
                encoding, range, ..
            } => stack.push(Level::new(encoding, bytes_at(wasm, range)?)),
            Payload::End(_) => {
                let done = stack.pop().ok_or("an end without a start")?;
                match stack.last_mut() {
                    None => return Ok(done.bytes),
                    Some(parent) => {
                        let id = match done.encoding {
                            Encoding::Module => ComponentSectionId::CoreModule,
                            Encoding::Component => ComponentSectionId::Component,
                        };
                        parent.push_raw(id as u8, &done.bytes);
                    }
                }
            }
            // Rebuilt from their own payloads, which follow.
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {}
            Payload::CustomSection(c) => {
                if c.name() == "name" && c.data().len() <= NAMES_KEPT {
                    let level = stack.last_mut().ok_or("a section outside any module")?;
                    let kept = CustomSection {
                        name: c.name().into(),
                        data: c.data().into(),
                    };
                    append(&mut level.bytes, &kept);
                }
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    let level = stack.last_mut().ok_or("a section outside any module")?;
                    level.push_raw(id, bytes_at(wasm, range)?);
                }
            }
        }
    }
    Err("the input ends inside a module or component".into())
}

/// The bytes of `range`, which the parser has not checked against the input.
fn bytes_at(wasm: &[u8], range: std::ops::Range<usize>) -> Result<&[u8], String> {
    wasm.get(range.clone())
        .ok_or_else(|| format!("a section at {range:?} runs past the end of the input"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A custom section named `name` holding `data`.
    fn custom(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let section = CustomSection {
            name: name.into(),
            data: data.into(),
        };
        append(&mut out, &section);
        out
    }

    fn module_section(module: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let section = RawSection {
            id: ComponentSectionId::CoreModule as u8,
            data: module,
        };
        append(&mut out, &section);
        out
    }

    #[test]
    fn a_nested_module_loses_its_custom_sections_too() {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend_from_slice(&custom("junk", &[9u8; 1000]));
        module.extend_from_slice(&custom("name", &[0u8; 3]));
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.extend_from_slice(&module_section(&module));
        component.extend_from_slice(&custom("junk", &[9u8; 1000]));
        let stripped = strip_custom_sections(&component).unwrap();
        let mut expected_module = b"\0asm\x01\0\0\0".to_vec();
        expected_module.extend_from_slice(&custom("name", &[0u8; 3]));
        let mut expected = b"\0asm\x0d\0\x01\0".to_vec();
        expected.extend_from_slice(&module_section(&expected_module));
        assert_eq!(stripped, expected);
        // Cut short anywhere: never a panic (a cut between two sections
        // leaves a smaller valid component); inside a section, an error.
        for end in 0..component.len() {
            let _ = strip_custom_sections(&component[..end]);
        }
        assert!(strip_custom_sections(&component[..component.len() - 5]).is_err());
        assert!(strip_custom_sections(&component[..12]).is_err());
    }
}
