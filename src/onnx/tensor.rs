//! Initializers: a `TensorProto` whose data is kept as loaded (so untouched
//! weights round-trip bit for bit) and decoded to `ndarray` on demand.

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::onnx::{dtype, TensorProto};

/// Largest number of elements a single tensor may declare (guards against
/// absurd dims making us allocate gigabytes).
pub const MAX_ELEMENTS: u64 = 1 << 32;
/// Largest dense tensor a sparse initializer may expand to.
pub const MAX_DENSE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    proto: TensorProto,
}

impl Tensor {
    /// Wrap a proto after checking dtype, dims and data length agree.
    pub fn from_proto(proto: TensorProto) -> Result<Self> {
        let t = Tensor { proto };
        t.validate()?;
        Ok(t)
    }

    pub fn proto(&self) -> &TensorProto {
        &self.proto
    }
    pub fn into_proto(self) -> TensorProto {
        self.proto
    }
    pub fn name(&self) -> &str {
        self.proto.name()
    }
    pub fn set_name(&mut self, name: &str) {
        self.proto.name = Some(name.to_string());
    }
    pub fn dtype(&self) -> i32 {
        self.proto.data_type()
    }
    pub fn dims(&self) -> &[i64] {
        &self.proto.dims
    }
    pub fn shape(&self) -> Vec<usize> {
        self.proto.dims.iter().map(|&d| d.max(0) as usize).collect()
    }
    pub fn len(&self) -> u64 {
        self.proto.dims.iter().map(|&d| d.max(0) as u64).product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::tensor(self.proto.name(), reason)
    }

    fn validate(&self) -> Result<()> {
        let dt = self.dtype();
        if !dtype::is_known(dt) {
            return Err(self.err(format!("unknown data type {dt}")));
        }
        let mut n: u64 = 1;
        for &d in &self.proto.dims {
            if d < 0 {
                return Err(self.err(format!("negative dimension {d} in {:?}", self.proto.dims)));
            }
            n = n.checked_mul(d as u64).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| {
                self.err(format!("dims {:?} declare more than {MAX_ELEMENTS} elements", self.proto.dims))
            })?;
        }
        if let Some(raw) = &self.proto.raw_data {
            if let Some(sz) = dtype::size_of(dt) {
                let want = n * sz as u64;
                // 4-bit types pack two per byte; skip the exact check for them
                if !(21..=26).contains(&dt) && raw.len() as u64 != want {
                    return Err(self.err(format!(
                        "raw_data has {} bytes but dims {:?} of {} need {want}",
                        raw.len(),
                        self.proto.dims,
                        dtype::name(dt)
                    )));
                }
            }
        } else {
            let have = match dt {
                dtype::FLOAT => self.proto.float_data.len(),
                dtype::INT64 => self.proto.int64_data.len(),
                dtype::DOUBLE => self.proto.double_data.len(),
                dtype::UINT32 | dtype::UINT64 => self.proto.uint64_data.len(),
                dtype::STRING => self.proto.string_data.len(),
                _ => self.proto.int32_data.len(),
            } as u64;
            if have != n && self.proto.data_location != Some(1) {
                return Err(self.err(format!("has {have} values but dims {:?} need {n}", self.proto.dims)));
            }
        }
        Ok(())
    }

    /// The dense tensor a `SparseTensorProto` stands for (as a sparse initializer
    /// declares it: `values` [NNZ] named as the tensor, `indices` [NNZ] linear or
    /// [NNZ, rank] coordinates, `dims`). Zero elsewhere.
    pub fn from_sparse(sp: &crate::onnx::proto::SparseTensorProto) -> Result<Tensor> {
        let values = sp.values.clone().ok_or_else(|| Error::tensor("", "sparse initializer without values"))?;
        let name = values.name().to_string();
        let bad = |reason: String| Error::tensor(&name, format!("sparse initializer: {reason}"));
        if values.data_location == Some(1) {
            return Err(bad("values in external data are not supported".into()));
        }
        let values = Tensor::from_proto(values)?;
        let dt = values.dtype();
        let size = match dtype::size_of(dt) {
            Some(s) if !(21..=26).contains(&dt) => s,
            _ => return Err(bad(format!("{} values are not supported", dtype::name(dt)))),
        };
        if values.dims().len() != 1 {
            return Err(bad(format!("values have dims {:?}, expected [NNZ]", values.dims())));
        }
        let nnz = values.len() as usize;
        let dense = Tensor { proto: TensorProto { name: Some(name.clone()), data_type: Some(dt), dims: sp.dims.clone(), ..Default::default() } };
        let mut n: u64 = 1;
        for &d in &sp.dims {
            n = u64::try_from(d).ok().and_then(|d| n.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| bad(format!("dims {:?} are negative or too large", sp.dims)))?;
        }
        if n * size as u64 > MAX_DENSE_BYTES {
            return Err(bad(format!("dims {:?} are more than {} MiB dense", sp.dims, MAX_DENSE_BYTES >> 20)));
        }
        let indices = match &sp.indices {
            Some(i) => Tensor::from_proto(i.clone())?,
            None if nnz == 0 => Tensor::from_i64("", &[0], &[]),
            None => return Err(bad("values without indices".into())),
        };
        let idx = indices.to_i64().map_err(|_| bad("indices must be int64".into()))?;
        let rank = sp.dims.len();
        let linear: Vec<u64> = match indices.dims() {
            [k] if *k as usize == nnz => idx.iter().map(|&i| u64::try_from(i).unwrap_or(u64::MAX)).collect(),
            [k, r] if *k as usize == nnz && *r as usize == rank => idx
                .chunks(rank.max(1))
                .map(|c| {
                    c.iter().zip(&sp.dims).try_fold(0u64, |acc, (&i, &d)| {
                        let i = u64::try_from(i).ok().filter(|&i| i < d as u64)?;
                        acc.checked_mul(d as u64)?.checked_add(i)
                    })
                    .unwrap_or(u64::MAX)
                })
                .collect(),
            other => return Err(bad(format!("indices have dims {other:?}; expected [{nnz}] or [{nnz}, {rank}]"))),
        };
        let src = values.raw_bytes()?;
        let mut raw = vec![0u8; (n as usize) * size];
        for (k, &at) in linear.iter().enumerate() {
            if at >= n {
                return Err(bad(format!("index {k} lies outside dims {:?}", sp.dims)));
            }
            let at = at as usize * size;
            raw[at..at + size].copy_from_slice(&src[k * size..(k + 1) * size]);
        }
        let mut proto = dense.proto;
        proto.raw_data = Some(raw.into());
        Tensor::from_proto(proto)
    }

    /// The data as little-endian bytes (raw_data, or the typed field encoded).
    pub fn raw_bytes(&self) -> Result<Vec<u8>> {
        if let Some(r) = &self.proto.raw_data {
            return Ok(r.to_vec());
        }
        let p = &self.proto;
        Ok(match self.dtype() {
            dtype::FLOAT => p.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype::INT64 => p.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype::DOUBLE => p.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype::INT32 => p.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype::UINT64 => p.uint64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype::UINT32 => p.uint64_data.iter().flat_map(|v| (*v as u32).to_le_bytes()).collect(),
            dtype::INT16 => p.int32_data.iter().flat_map(|v| (*v as i16).to_le_bytes()).collect(),
            dtype::UINT16 | dtype::FLOAT16 | dtype::BFLOAT16 => p.int32_data.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect(),
            dtype::INT8 | dtype::UINT8 | dtype::BOOL => p.int32_data.iter().map(|v| *v as u8).collect(),
            other => return Err(self.err(format!("cannot encode {} data", dtype::name(other)))),
        })
    }

    /// Values as f32 (float, double, float16 converted).
    pub fn to_f32(&self) -> Result<ArrayD<f32>> {
        let shape = IxDyn(&self.shape());
        let p = &self.proto;
        let data: Vec<f32> = match (self.dtype(), &p.raw_data) {
            (dtype::FLOAT, Some(r)) => r.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            (dtype::FLOAT, None) => p.float_data.clone(),
            (dtype::DOUBLE, Some(r)) => r.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
            (dtype::DOUBLE, None) => p.double_data.iter().map(|&v| v as f32).collect(),
            (dtype::FLOAT16, Some(r)) => r.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            (dtype::FLOAT16, None) => p.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect(),
            (dt, _) => return Err(self.err(format!("expected floating-point data, found {}", dtype::name(dt)))),
        };
        ArrayD::from_shape_vec(shape, data).map_err(|e| self.err(e.to_string()))
    }

    /// Values as i64 (int64, int32 and smaller ints widened).
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let p = &self.proto;
        Ok(match (self.dtype(), &p.raw_data) {
            (dtype::INT64, Some(r)) => r.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
            (dtype::INT64, None) => p.int64_data.clone(),
            (dtype::INT32, Some(r)) => r.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            (dtype::INT16, Some(r)) => r.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            (dtype::UINT16, Some(r)) => r.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            (dtype::INT8, Some(r)) => r.iter().map(|&b| b as i8 as i64).collect(),
            (dtype::UINT8 | dtype::BOOL, Some(r)) => r.iter().map(|&b| b as i64).collect(),
            (dtype::UINT32, Some(r)) => r.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            (dtype::UINT32 | dtype::UINT64, None) => p.uint64_data.iter().map(|&v| v as i64).collect(),
            (dtype::INT32 | dtype::INT16 | dtype::INT8 | dtype::UINT8 | dtype::UINT16 | dtype::BOOL, None) => p.int32_data.iter().map(|&v| v as i64).collect(),
            (dt, _) => return Err(self.err(format!("expected integer data, found {}", dtype::name(dt)))),
        })
    }

    pub fn from_f32(name: &str, a: &ArrayD<f32>) -> Tensor {
        let raw: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor {
            proto: TensorProto {
                name: Some(name.into()),
                dims: a.shape().iter().map(|&d| d as i64).collect(),
                data_type: Some(dtype::FLOAT),
                raw_data: Some(bytes::Bytes::from(raw)),
                ..Default::default()
            },
        }
    }

    pub fn from_i64(name: &str, dims: &[i64], v: &[i64]) -> Tensor {
        let raw: Vec<u8> = v.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor {
            proto: TensorProto {
                name: Some(name.into()),
                dims: dims.to_vec(),
                data_type: Some(dtype::INT64),
                raw_data: Some(bytes::Bytes::from(raw)),
                ..Default::default()
            },
        }
    }

    /// A tensor of integer values stored as `dt` (int64, int32, bool, or
    /// float/double holding integers); `None` for other element types.
    pub fn from_ints(name: &str, dt: i32, dims: &[i64], v: &[i64]) -> Option<Tensor> {
        let raw: Vec<u8> = match dt {
            dtype::INT64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            dtype::INT32 => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
            dtype::INT16 => v.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect(),
            dtype::BOOL | dtype::UINT8 => v.iter().map(|&x| (x != 0 && dt == dtype::BOOL) as u8 | if dt == dtype::UINT8 { x as u8 } else { 0 }).collect(),
            dtype::INT8 => v.iter().map(|&x| x as i8 as u8).collect(),
            dtype::FLOAT => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
            dtype::DOUBLE => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
            _ => return None,
        };
        Some(Tensor {
            proto: TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(dt), raw_data: Some(bytes::Bytes::from(raw)), ..Default::default() },
        })
    }

    /// An int8 tensor (values clamped to the type's range by the caller).
    pub fn from_int8(name: &str, dims: &[i64], v: &[i64]) -> Tensor {
        Tensor::raw(name, dtype::INT8, dims, v.iter().map(|&x| x as i8 as u8).collect())
    }

    /// An int32 tensor.
    pub fn from_int32(name: &str, dims: &[i64], v: &[i64]) -> Tensor {
        Tensor::raw(name, dtype::INT32, dims, v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect())
    }

    fn raw(name: &str, dt: i32, dims: &[i64], raw: Vec<u8>) -> Tensor {
        Tensor { proto: TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(dt), raw_data: Some(bytes::Bytes::from(raw)), ..Default::default() } }
    }

    /// Same data, new name.
    pub fn renamed(&self, name: &str) -> Tensor {
        let mut t = self.clone();
        t.set_name(name);
        t
    }
}

fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}
