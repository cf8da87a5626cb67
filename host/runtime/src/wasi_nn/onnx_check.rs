//! Reads an ONNX model's structure before ONNX Runtime does, to refuse a
//! model that references files.
//!
//! A tensor in an ONNX model may keep its data in a file beside the model
//! (`data_location = EXTERNAL`, with `external_data` naming the file);
//! loaded from bytes, ONNX Runtime would open that path on the node. So
//! every tensor the model can hold is visited: the graph's initializers,
//! constants in node attributes, subgraphs (`If`, `Loop`, `Scan` bodies),
//! functions and training graphs. The walk is a loop over a stack of at
//! most [`MAX_DEPTH`] cursors, never recursion over the guest's bytes.
//!
//! ```text
//! model.graph.initializer[i]                        (a tensor)
//! model.graph.node[j].attribute[k].t / .tensors     (constants)
//! model.graph.node[j].attribute[k].g / .graphs      (subgraphs: the same again)
//! model.functions[f].node[j]...                     (functions)
//! model.training_info[t].initialization / .algorithm
//! ```

use super::errors::Error;

/// Deepest nesting of messages read (protobuf's own default limit is 100).
pub(crate) const MAX_DEPTH: usize = 64;

/// The ONNX messages that can hold a tensor, directly or below.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Model,
    TrainingInfo,
    Function,
    Graph,
    Node,
    Attribute,
    SparseTensor,
    Tensor,
}

/// The message a length-delimited field `field` of a `kind` holds, among
/// those that can hold a tensor (field numbers from onnx.proto).
fn child(kind: Kind, field: u64) -> Option<Kind> {
    use Kind::*;
    Some(match (kind, field) {
        (Model, 7) | (TrainingInfo, 1 | 2) | (Attribute, 6 | 11) => Graph,
        (Model, 20) => TrainingInfo,
        (Model, 25) => Function,
        (Function, 7) | (Graph, 1) => Node,
        // A function's attributes' defaults (`attribute_proto`), which ONNX
        // Runtime fills in when it inlines the function.
        (Node, 5) | (Function, 11) => Attribute,
        (Graph, 5) | (Attribute, 5 | 10) | (SparseTensor, 1 | 2) => Tensor,
        (Graph, 15) | (Attribute, 22 | 23) => SparseTensor,
        _ => return None,
    })
}

/// `TensorProto.external_data` and `TensorProto.data_location`.
const EXTERNAL_DATA: u64 = 13;
const DATA_LOCATION: u64 = 14;

/// Refuses a model with a tensor kept outside it, or that is not a
/// well-formed protobuf message within [`MAX_DEPTH`].
pub(crate) fn refuse_external_data(model: &[u8]) -> Result<(), Error> {
    let mut stack: Vec<(&[u8], Kind)> = vec![(model, Kind::Model)];
    while let Some((bytes, kind)) = stack.last_mut() {
        let kind = *kind;
        if bytes.is_empty() {
            stack.pop();
            continue;
        }
        let (field, value) = next_field(bytes)?;
        match value {
            // An enum is read as its low 32 bits: anything but DEFAULT (0)
            // may be EXTERNAL to ONNX Runtime (1 + 2^32 is).
            Value::Varint(v) if kind == Kind::Tensor && field == DATA_LOCATION => {
                if v as u32 != 0 {
                    return Err(external());
                }
            }
            Value::Bytes(_) if kind == Kind::Tensor && field == EXTERNAL_DATA => {
                return Err(external());
            }
            Value::Bytes(inner) => {
                if let Some(k) = child(kind, field) {
                    if stack.len() >= MAX_DEPTH {
                        return Err(Error::invalid(format!(
                            "the model nests messages deeper than {MAX_DEPTH}"
                        )));
                    }
                    stack.push((inner, k));
                }
            }
            Value::Varint(_) | Value::Fixed => {}
        }
    }
    Ok(())
}

fn external() -> Error {
    Error::new(
        super::generated::wasi::nn::errors::ErrorCode::Security,
        "the model keeps tensor data in external files, which a guest's model may not: \
         save it with its data inside (onnx.save_model(..., save_as_external_data=False))",
    )
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads one field off the front of `bytes`, advancing it.
fn next_field<'a>(bytes: &mut &'a [u8]) -> Result<(u64, Value<'a>), Error> {
    let key = varint(bytes)?;
    let field = key >> 3;
    let value = match key & 7 {
        0 => Value::Varint(varint(bytes)?),
        1 => skip(bytes, 8).map(|_| Value::Fixed)?,
        5 => skip(bytes, 4).map(|_| Value::Fixed)?,
        2 => {
            let len = varint(bytes)?;
            let len = usize::try_from(len).map_err(|_| malformed())?;
            Value::Bytes(skip(bytes, len)?)
        }
        _ => return Err(malformed()),
    };
    Ok((field, value))
}

fn skip<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if bytes.len() < n {
        return Err(malformed());
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, Error> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or_else(malformed)?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed())
}

fn malformed() -> Error {
    Error::new(
        super::generated::wasi::nn::errors::ErrorCode::InvalidEncoding,
        "the model is not a well-formed ONNX (protobuf) message",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_varint(&mut v, n << 3 | 2);
        push_varint(&mut v, body.len() as u64);
        v.extend_from_slice(body);
        v
    }

    /// Refused as keeping data outside the model (not for another reason).
    fn external(model: &[u8]) -> bool {
        refuse_external_data(model).is_err_and(|e| e.to_string().contains("external files"))
    }

    #[test]
    fn tensors_kept_outside_the_model_are_refused_wherever_they_sit() {
        let inline_tensor = field(9, b"weights");
        let external_tensor = [vec![(DATA_LOCATION << 3) as u8, 1], field(8, b"w")].concat();
        let with_entry = [vec![(EXTERNAL_DATA << 3 | 2) as u8, 0]].concat();
        // model.graph.initializer
        let ok = field(7, &field(5, &inline_tensor));
        assert!(refuse_external_data(&ok).is_ok());
        let bad = field(7, &field(5, &external_tensor));
        assert!(external(&bad));
        let bad = field(7, &field(5, &with_entry));
        assert!(external(&bad));
        // model.graph.node.attribute.g.initializer (an If branch)
        let nested = field(
            7,
            &field(1, &field(5, &field(6, &field(5, &external_tensor)))),
        );
        assert!(external(&nested));
        // model.functions.node.attribute.t
        let in_function = field(25, &field(7, &field(5, &field(5, &external_tensor))));
        assert!(external(&in_function));
        // model.functions.attribute_proto.t (a default ONNX Runtime inlines)
        let default = field(25, &field(11, &field(5, &external_tensor)));
        assert!(external(&default));
        // model.training_info.algorithm.initializer
        let training = field(20, &field(2, &field(5, &external_tensor)));
        assert!(external(&training));
        // data_location 1 + 2^32: EXTERNAL once cut to 32 bits.
        let wide = [vec![
            (DATA_LOCATION << 3) as u8,
            0x81,
            0x80,
            0x80,
            0x80,
            0x10,
        ]]
        .concat();
        assert!(external(&field(7, &field(5, &wide))));
        // The same bytes in a field that is no tensor are only bytes.
        assert!(refuse_external_data(&field(7, &field(2, &external_tensor))).is_ok());
    }

    #[test]
    fn malformed_and_deep_models_are_refused_without_recursion() {
        assert!(
            refuse_external_data(&[0x3a, 0x05, 1]).is_err(),
            "a length past the end"
        );
        assert!(refuse_external_data(&[0x0b]).is_err(), "a group");
        assert!(
            refuse_external_data(&[0x80; 11]).is_err(),
            "an endless varint"
        );
        // graph.node.attribute.g.node.attribute.g... far past MAX_DEPTH.
        let mut deep = Vec::new();
        for _ in 0..100 {
            let len = deep.len();
            let mut v = vec![(6 << 3 | 2) as u8];
            push_varint(&mut v, len as u64);
            v.extend_from_slice(&deep);
            let attribute = v;
            let mut v = vec![(5 << 3 | 2) as u8];
            push_varint(&mut v, attribute.len() as u64);
            v.extend_from_slice(&attribute);
            let node = v;
            let mut v = vec![(1 << 3 | 2) as u8];
            push_varint(&mut v, node.len() as u64);
            v.extend_from_slice(&node);
            deep = v;
        }
        let mut model = vec![(7 << 3 | 2) as u8];
        push_varint(&mut model, deep.len() as u64);
        model.extend_from_slice(&deep);
        let e = refuse_external_data(&model).unwrap_err();
        assert!(e.to_string().contains("deeper than"), "{e}");
    }

    fn push_varint(v: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
    }
}
