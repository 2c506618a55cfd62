//! Reads a graph's signature (input and output names, element types, dimensions) straight from
//! the ONNX protobuf, without building a session, so that a pack is checked at load while its
//! sessions are built lazily. Large fields (weights) are skipped by seeking, so a multi-gigabyte
//! graph costs a few reads.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// An element type of a tensor, as ONNX numbers them (only those the contract uses are named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float (ONNX 1).
    F32,
    /// 16-bit float (ONNX 10).
    F16,
    /// 64-bit signed integer (ONNX 7).
    I64,
    /// 32-bit signed integer (ONNX 6).
    I32,
    /// 64-bit float (ONNX 11).
    F64,
    /// Any other ONNX element type number.
    Other(i64),
}

impl ElemType {
    fn from_onnx(n: i64) -> ElemType {
        match n {
            1 => ElemType::F32,
            10 => ElemType::F16,
            7 => ElemType::I64,
            6 => ElemType::I32,
            11 => ElemType::F64,
            other => ElemType::Other(other),
        }
    }

    /// The contract's name for it (`fp32`, `fp16`, `int64`, ...).
    pub fn name(&self) -> String {
        match self {
            ElemType::F32 => "fp32".into(),
            ElemType::F16 => "fp16".into(),
            ElemType::I64 => "int64".into(),
            ElemType::I32 => "int32".into(),
            ElemType::F64 => "fp64".into(),
            ElemType::Other(n) => format!("onnx-type-{n}"),
        }
    }

    /// Whether it is a floating-point type.
    pub fn is_float(&self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F16 | ElemType::F64)
    }
}

/// One dimension: fixed or symbolic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named or unnamed dynamic size.
    Dynamic(String),
}

/// An input or output of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSig {
    /// Tensor name.
    pub name: String,
    /// Element type; `None` when the graph does not say (non-tensor values).
    pub elem: Option<ElemType>,
    /// Dimensions; `None` when the graph gives no shape.
    pub dims: Option<Vec<Dim>>,
}

impl TensorSig {
    /// The rank, when known.
    pub fn rank(&self) -> Option<usize> {
        self.dims.as_ref().map(Vec::len)
    }

    /// The fixed size of dimension `i`, when known.
    pub fn fixed(&self, i: usize) -> Option<i64> {
        match self.dims.as_ref()?.get(i)? {
            Dim::Fixed(n) => Some(*n),
            Dim::Dynamic(_) => None,
        }
    }
}

/// The inputs and outputs of a graph (initialisers excluded from the inputs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// Graph inputs, in order.
    pub inputs: Vec<TensorSig>,
    /// Graph outputs, in order.
    pub outputs: Vec<TensorSig>,
}

impl Signature {
    /// The input named `name`.
    pub fn input(&self, name: &str) -> Option<&TensorSig> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&TensorSig> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

/// Reads the signature of the ONNX model at `path`. The error is a short reason (the caller names
/// the file).
pub fn read_signature(path: &Path) -> Result<Signature, String> {
    let file = File::open(path).map_err(|e| format!("cannot be opened ({e})"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?
        .len();
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 16, file),
        pos: 0,
    };
    let mut sig = None;
    while r.pos < len {
        let (field, wire) = r.key()?;
        if field == 7 && wire == 2 {
            let n = r.varint()?;
            let end = r.end_of(n, len)?;
            sig = Some(read_graph(&mut r, end)?);
        } else {
            r.skip(wire, len)?;
        }
    }
    let sig = sig.ok_or("is not an ONNX model (no graph found)")?;
    if sig.inputs.is_empty() && sig.outputs.is_empty() {
        return Err("is not an ONNX model (its graph has no inputs or outputs)".into());
    }
    Ok(sig)
}

fn read_graph<R: Read + Seek>(r: &mut Reader<R>, end: u64) -> Result<Signature, String> {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut initializers = Vec::new();
    while r.pos < end {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (11 | 12, 2) => {
                let n = r.varint()?;
                let sub = r.end_of(n, end)?;
                let v = read_value_info(r, sub)?;
                if field == 11 {
                    inputs.push(v)
                } else {
                    outputs.push(v)
                }
            }
            (5, 2) => {
                let n = r.varint()?;
                let sub = r.end_of(n, end)?;
                if let Some(name) = read_tensor_name(r, sub)? {
                    initializers.push(name);
                }
            }
            _ => r.skip(wire, end)?,
        }
    }
    inputs.retain(|i: &TensorSig| !initializers.contains(&i.name));
    Ok(Signature { inputs, outputs })
}

fn read_tensor_name<R: Read + Seek>(r: &mut Reader<R>, end: u64) -> Result<Option<String>, String> {
    let mut name = None;
    while r.pos < end {
        let (field, wire) = r.key()?;
        if field == 8 && wire == 2 {
            name = Some(r.string(end)?);
        } else {
            r.skip(wire, end)?;
        }
    }
    Ok(name)
}

fn read_value_info<R: Read + Seek>(r: &mut Reader<R>, end: u64) -> Result<TensorSig, String> {
    let mut sig = TensorSig {
        name: String::new(),
        elem: None,
        dims: None,
    };
    while r.pos < end {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, 2) => sig.name = r.string(end)?,
            (2, 2) => {
                // TypeProto: tensor_type = 1.
                let n = r.varint()?;
                let type_end = r.end_of(n, end)?;
                while r.pos < type_end {
                    let (f, w) = r.key()?;
                    if f == 1 && w == 2 {
                        let n = r.varint()?;
                        let tensor_end = r.end_of(n, type_end)?;
                        read_tensor_type(r, tensor_end, &mut sig)?;
                    } else {
                        r.skip(w, type_end)?;
                    }
                }
            }
            _ => r.skip(wire, end)?,
        }
    }
    Ok(sig)
}

fn read_tensor_type<R: Read + Seek>(
    r: &mut Reader<R>,
    end: u64,
    sig: &mut TensorSig,
) -> Result<(), String> {
    while r.pos < end {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, 0) => sig.elem = Some(ElemType::from_onnx(r.varint()? as i64)),
            (2, 2) => {
                let n = r.varint()?;
                let shape_end = r.end_of(n, end)?;
                let mut dims = Vec::new();
                while r.pos < shape_end {
                    let (f, w) = r.key()?;
                    if f == 1 && w == 2 {
                        let n = r.varint()?;
                        let dim_end = r.end_of(n, shape_end)?;
                        let mut dim = Dim::Dynamic(String::new());
                        while r.pos < dim_end {
                            let (df, dw) = r.key()?;
                            match (df, dw) {
                                (1, 0) => dim = Dim::Fixed(r.varint()? as i64),
                                (2, 2) => dim = Dim::Dynamic(r.string(dim_end)?),
                                _ => r.skip(dw, dim_end)?,
                            }
                        }
                        dims.push(dim);
                    } else {
                        r.skip(w, shape_end)?;
                    }
                }
                sig.dims = Some(dims);
            }
            _ => r.skip(wire, end)?,
        }
    }
    Ok(())
}

struct Reader<R> {
    inner: R,
    pos: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| "is truncated or not an ONNX model".to_string())?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("is not an ONNX model (malformed varint)".into())
    }

    fn key(&mut self) -> Result<(u64, u8), String> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn end_of(&self, n: u64, limit: u64) -> Result<u64, String> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or("is not an ONNX model (bad length)")?;
        if end > limit {
            return Err("is truncated or not an ONNX model (a field runs past its end)".into());
        }
        Ok(end)
    }

    fn string(&mut self, limit: u64) -> Result<String, String> {
        let n = self.varint()?;
        self.end_of(n, limit)?;
        if n > 1 << 20 {
            return Err("is not an ONNX model (a name is longer than 1 MiB)".into());
        }
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| "is truncated or not an ONNX model".to_string())?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| "is not an ONNX model (a name is not UTF-8)".into())
    }

    fn skip(&mut self, wire: u8, limit: u64) -> Result<(), String> {
        let n = match wire {
            0 => {
                self.varint()?;
                return Ok(());
            }
            1 => 8,
            2 => self.varint()?,
            5 => 4,
            _ => {
                return Err(format!(
                    "is not an ONNX model (unknown protobuf wire type {wire})"
                ));
            }
        };
        let end = self.end_of(n, limit)?;
        self.inner
            .seek(SeekFrom::Current(n as i64))
            .map_err(|e| format!("cannot be read ({e})"))?;
        self.pos = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let dir = std::env::temp_dir().join(format!("likeness-onnx-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.onnx");
        std::fs::write(&f, b"this is not protobuf at all").unwrap();
        let err = read_signature(&f).unwrap_err();
        assert!(err.contains("ONNX"), "{err}");
        std::fs::write(&f, []).unwrap();
        assert!(read_signature(&f).unwrap_err().contains("no graph"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
