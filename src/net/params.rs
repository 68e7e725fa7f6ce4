//! AGREEMENT parameters ([`SessionParams`]), their canonical encoding and hash, and the
//! first-difference report used when two parties disagree.

use std::collections::BTreeMap;
use std::fmt;

use privlm_protocols::gc::{DEFAULT_BATCH_ANDS, GcConfig};
use privlm_protocols::ot::iknp::{DEFAULT_CHUNK, IknpConfig, IknpError};
use privlm_protocols::ot::millionaire::DreluParams;
use privlm_protocols::trunc::TruncMode;
use serde::{Deserialize, Serialize};

/// Version of the privlm wire protocol. Bumped whenever messages or their order change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Bit width of the ring Z_2^k that shares live in. privlm's arithmetic is fixed to `u64`.
pub const RING_BITS: u32 = 64;

/// SECURITY: computational security parameter kappa, in bits (a constant, never tunable).
pub const COMPUTATIONAL_SECURITY_BITS: u32 = 128;

/// SECURITY: statistical security parameter, in bits (a constant, never tunable).
pub const STATISTICAL_SECURITY_BITS: u32 = 40;

/// Domain separator at the start of the canonical encoding.
const DOMAIN: &[u8] = b"privlm/session-params/v1";

/// A typed value of an approximation setting (degree, iteration count, method name, ...).
///
/// Floats compare by their bit pattern, exactly as they are hashed: `0.0` and `-0.0` differ.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ParamValue {
    /// An unsigned integer (degrees, iteration counts, bit widths).
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A float (clipping bounds, interval ends).
    F64(f64),
    /// A flag.
    Bool(bool),
    /// A name (for example a method: `"tanh"` or `"piecewise"`).
    Str(String),
}

impl PartialEq for ParamValue {
    fn eq(&self, other: &Self) -> bool {
        use ParamValue::*;
        match (self, other) {
            (U64(a), U64(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            (Bool(a), Bool(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for ParamValue {}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::U64(v) => write!(f, "{v}"),
            ParamValue::I64(v) => write!(f, "{v}"),
            ParamValue::F64(v) => write!(f, "{v:?}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Str(v) => write!(f, "{v:?}"),
        }
    }
}

impl From<u64> for ParamValue {
    fn from(v: u64) -> Self {
        ParamValue::U64(v)
    }
}
impl From<u32> for ParamValue {
    fn from(v: u32) -> Self {
        ParamValue::U64(v.into())
    }
}
impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::I64(v)
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::F64(v)
    }
}
impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Bool(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Str(v.to_string())
    }
}

/// One named tensor of the model: its name and shape, never its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Name, for example `"h.0.attn.c_attn.weight"`.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
}

/// What both parties must agree on about the model: the architecture and every tensor's
/// name and shape, in order. It never carries weights.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// Architecture name (for example `"SM+LN+G"`) together with whatever distinguishes
    /// variants that share tensor shapes.
    pub architecture: String,
    /// The model's tensors, in a fixed order.
    pub tensors: Vec<TensorSpec>,
}

impl ModelManifest {
    /// A manifest with no tensors yet.
    pub fn new(architecture: &str) -> Self {
        ModelManifest {
            architecture: architecture.to_string(),
            tensors: Vec::new(),
        }
    }

    /// Appends a tensor.
    pub fn with_tensor(mut self, name: &str, shape: &[usize]) -> Self {
        self.tensors.push(TensorSpec {
            name: name.to_string(),
            shape: shape.iter().map(|&d| d as u64).collect(),
        });
        self
    }
}

/// AGREEMENT parameters of the protocol building blocks (privlm-protocols): message sizes
/// that shape the transcript, comparison parameters and the truncation protocol. A party with
/// a different value would frame messages differently, compare different bits or truncate
/// differently; the handshake refuses such a peer, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolParams {
    /// OTs per IKNP extension message ([`IknpConfig::chunk`]).
    pub iknp_chunk: u64,
    /// Garbled AND tables per message ([`GcConfig::batch_ands`]).
    pub gc_batch_ands: u64,
    /// DReLU / comparison bit width `ℓ` ([`DreluParams::bits`]).
    pub drelu_bits: u32,
    /// Low bits left out of DReLU comparisons ([`DreluParams::drop_low`]).
    pub drelu_drop_low: u32,
    /// Digit size of the millionaires' protocol ([`DreluParams::digit_bits`]).
    pub drelu_digit_bits: u32,
    /// The truncation protocol after fixed-point products (`docs/numeric.md`).
    pub trunc_mode: TruncMode,
}

impl Default for ProtocolParams {
    /// The library defaults: IKNP chunk [`DEFAULT_CHUNK`], GC batch [`DEFAULT_BATCH_ANDS`],
    /// exact DReLU on 64-bit values with 4-bit digits (`DreluParams::exact(64)`, the 78-byte
    /// configuration of `docs/protocols/ot_applications.md`), dealer-assisted truncation.
    fn default() -> Self {
        let d = DreluParams::exact(64);
        ProtocolParams {
            iknp_chunk: DEFAULT_CHUNK as u64,
            gc_batch_ands: DEFAULT_BATCH_ANDS as u64,
            drelu_bits: d.bits,
            drelu_drop_low: d.drop_low,
            drelu_digit_bits: d.digit_bits,
            trunc_mode: TruncMode::default(),
        }
    }
}

impl ProtocolParams {
    /// The IKNP configuration, if the chunk size is valid.
    pub fn iknp(&self) -> Result<IknpConfig, IknpError> {
        let chunk = usize::try_from(self.iknp_chunk).unwrap_or(usize::MAX);
        IknpConfig::with_chunk(chunk)
    }

    /// The garbled-circuit configuration for circuit `circuit_id`.
    pub fn gc(&self, circuit_id: u64) -> GcConfig {
        GcConfig {
            circuit_id,
            batch_ands: usize::try_from(self.gc_batch_ands).unwrap_or(usize::MAX),
        }
    }

    /// The DReLU parameters.
    pub fn drelu(&self) -> DreluParams {
        DreluParams {
            bits: self.drelu_bits,
            drop_low: self.drelu_drop_low,
            digit_bits: self.drelu_digit_bits,
        }
    }
}

/// The name of a truncation mode in handshake messages and in the canonical encoding.
fn trunc_mode_name(m: TruncMode) -> &'static str {
    match m {
        TruncMode::DealerAssisted => "dealer-assisted",
        TruncMode::Local => "local",
    }
}

/// The AGREEMENT parameters of a session: everything both parties must set identically for
/// the computation to be correct. Both sides hash [`SessionParams::canonical_bytes`] in the
/// handshake and abort on any difference (see [`super::handshake`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParams {
    /// Wire protocol version ([`PROTOCOL_VERSION`]).
    pub protocol_version: u32,
    /// Ring width in bits ([`RING_BITS`] = 64).
    pub ring_bits: u32,
    /// Fixed-point fractional bits `f` (see `docs/numeric.md`).
    pub frac_bits: u32,
    /// Parameters of the protocol building blocks (chunk and batch sizes, DReLU, truncation).
    pub protocol: ProtocolParams,
    /// Approximation settings by name (for example `"gelu.method"`, `"exp.iterations"`),
    /// ordered by name. Typed values; a later issue may replace this map by typed structs.
    pub approximations: BTreeMap<String, ParamValue>,
    /// The model manifest.
    pub manifest: ModelManifest,
}

impl SessionParams {
    /// Parameters with the current protocol version, the 64-bit ring, `frac_bits`, the
    /// default [`ProtocolParams`] and the given manifest, and no approximation settings yet.
    pub fn new(frac_bits: u32, manifest: ModelManifest) -> Self {
        SessionParams {
            protocol_version: PROTOCOL_VERSION,
            ring_bits: RING_BITS,
            frac_bits,
            protocol: ProtocolParams::default(),
            approximations: BTreeMap::new(),
            manifest,
        }
    }

    /// Replaces the protocol parameters.
    pub fn with_protocol(mut self, protocol: ProtocolParams) -> Self {
        self.protocol = protocol;
        self
    }

    /// Adds (or replaces) an approximation setting.
    pub fn with_approximation(mut self, name: &str, value: impl Into<ParamValue>) -> Self {
        self.approximations.insert(name.to_string(), value.into());
        self
    }

    /// Adds the nonlinear layers' AGREEMENT parameters
    /// ([`privlm_protocols::nonlinear::NlParams::agreement_entries`], names `nonlinear.*`).
    pub fn with_nonlinear(mut self, nl: &privlm_protocols::nonlinear::NlParams) -> Self {
        use privlm_protocols::nonlinear::AgreementValue;
        for (name, v) in nl.agreement_entries() {
            let v = match v {
                AgreementValue::U64(x) => ParamValue::U64(x),
                AgreementValue::Str(x) => ParamValue::Str(x.to_string()),
                other => ParamValue::Str(format!("{other:?}")),
            };
            self.approximations.insert(name.to_string(), v);
        }
        self
    }

    /// The canonical encoding: a domain separator, then every field in a fixed order, each as
    /// a length-prefixed name followed by a tagged, length-prefixed value (integers as 8-byte
    /// little endian). The SECURITY constants are part of it, so two builds with different
    /// constants never agree. Independent of serde and bincode.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = Canon(Vec::with_capacity(256));
        c.bytes(DOMAIN);
        c.field_u64(
            "security.computational_bits",
            COMPUTATIONAL_SECURITY_BITS.into(),
        );
        c.field_u64(
            "security.statistical_bits",
            STATISTICAL_SECURITY_BITS.into(),
        );
        c.field_u64("protocol_version", self.protocol_version.into());
        c.field_u64("ring_bits", self.ring_bits.into());
        c.field_u64("frac_bits", self.frac_bits.into());
        let p = &self.protocol;
        c.field_u64("protocol.iknp_chunk", p.iknp_chunk);
        c.field_u64("protocol.gc_batch_ands", p.gc_batch_ands);
        c.field_u64("protocol.drelu.bits", p.drelu_bits.into());
        c.field_u64("protocol.drelu.drop_low", p.drelu_drop_low.into());
        c.field_u64("protocol.drelu.digit_bits", p.drelu_digit_bits.into());
        c.name("protocol.trunc_mode");
        c.bytes(trunc_mode_name(p.trunc_mode).as_bytes());
        c.name("approximations");
        c.u64(self.approximations.len() as u64);
        for (k, v) in &self.approximations {
            c.bytes(k.as_bytes());
            c.value(v);
        }
        c.name("manifest.architecture");
        c.bytes(self.manifest.architecture.as_bytes());
        c.name("manifest.tensors");
        c.u64(self.manifest.tensors.len() as u64);
        for t in &self.manifest.tensors {
            c.bytes(t.name.as_bytes());
            c.u64(t.shape.len() as u64);
            for &d in &t.shape {
                c.u64(d);
            }
        }
        c.0
    }

    /// SHA-256 of [`SessionParams::canonical_bytes`].
    pub fn hash(&self) -> ParamsHash {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.canonical_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        ParamsHash(out)
    }

    /// The first field (in canonical order) where `self` (ours) and `peer` differ, or `None`
    /// if they are equal.
    pub fn first_difference(&self, peer: &SessionParams) -> Option<Difference> {
        let diff = |field: String, ours: &dyn fmt::Display, theirs: &dyn fmt::Display| {
            Some(Difference {
                field,
                ours: ours.to_string(),
                peer: theirs.to_string(),
            })
        };
        if self.protocol_version != peer.protocol_version {
            return diff(
                "protocol version".into(),
                &self.protocol_version,
                &peer.protocol_version,
            );
        }
        if self.ring_bits != peer.ring_bits {
            return diff("ring bits".into(), &self.ring_bits, &peer.ring_bits);
        }
        if self.frac_bits != peer.frac_bits {
            return diff(
                "fixed-point fractional bits".into(),
                &self.frac_bits,
                &peer.frac_bits,
            );
        }
        let (p, pp) = (&self.protocol, &peer.protocol);
        let numeric: [(&str, u64, u64); 5] = [
            ("IKNP chunk size", p.iknp_chunk, pp.iknp_chunk),
            (
                "garbled-table batch size",
                p.gc_batch_ands,
                pp.gc_batch_ands,
            ),
            ("DReLU bit width", p.drelu_bits.into(), pp.drelu_bits.into()),
            (
                "DReLU dropped low bits",
                p.drelu_drop_low.into(),
                pp.drelu_drop_low.into(),
            ),
            (
                "DReLU digit bits",
                p.drelu_digit_bits.into(),
                pp.drelu_digit_bits.into(),
            ),
        ];
        for (field, ours, theirs) in numeric {
            if ours != theirs {
                return diff(field.into(), &ours, &theirs);
            }
        }
        if p.trunc_mode != pp.trunc_mode {
            return diff(
                "truncation mode".into(),
                &trunc_mode_name(p.trunc_mode),
                &trunc_mode_name(pp.trunc_mode),
            );
        }
        let keys: std::collections::BTreeSet<&String> = self
            .approximations
            .keys()
            .chain(peer.approximations.keys())
            .collect();
        for k in keys {
            let (a, b) = (self.approximations.get(k), peer.approximations.get(k));
            if a != b {
                let show = |v: Option<&ParamValue>| match v {
                    Some(v) => v.to_string(),
                    None => "(not set)".to_string(),
                };
                return diff(format!("approximation setting `{k}`"), &show(a), &show(b));
            }
        }
        let (m, pm) = (&self.manifest, &peer.manifest);
        if m.architecture != pm.architecture {
            return diff(
                "model architecture".into(),
                &format!("{:?}", m.architecture),
                &format!("{:?}", pm.architecture),
            );
        }
        for (i, (t, pt)) in m.tensors.iter().zip(&pm.tensors).enumerate() {
            if t.name != pt.name {
                return diff(
                    format!("name of model tensor #{i}"),
                    &format!("{:?}", t.name),
                    &format!("{:?}", pt.name),
                );
            }
            if t.shape != pt.shape {
                return diff(
                    format!("shape of model tensor `{}`", t.name),
                    &format!("{:?}", t.shape),
                    &format!("{:?}", pt.shape),
                );
            }
        }
        if m.tensors.len() != pm.tensors.len() {
            return diff(
                "model tensor count".into(),
                &m.tensors.len(),
                &pm.tensors.len(),
            );
        }
        None
    }
}

/// SHA-256 of a [`SessionParams`]' canonical encoding; `Display` is lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParamsHash(pub [u8; 32]);

impl fmt::Display for ParamsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ParamsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParamsHash({self})")
    }
}

/// The first parameter on which two parties disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Human-readable field name, for example `"fixed-point fractional bits"`.
    pub field: String,
    /// Our value.
    pub ours: String,
    /// The peer's value.
    pub peer: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "ring bits differ", "model architecture differs".
        let verb = if self.field.ends_with('s') {
            "differ"
        } else {
            "differs"
        };
        write!(
            f,
            "{} {verb}: ours {}, peer {}",
            self.field, self.ours, self.peer
        )
    }
}

struct Canon(Vec<u8>);

impl Canon {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn name(&mut self, n: &str) {
        self.bytes(n.as_bytes());
    }
    fn field_u64(&mut self, n: &str, v: u64) {
        self.name(n);
        self.u64(v);
    }
    fn value(&mut self, v: &ParamValue) {
        match v {
            ParamValue::U64(x) => {
                self.0.push(0);
                self.u64(*x);
            }
            ParamValue::I64(x) => {
                self.0.push(1);
                self.u64(*x as u64);
            }
            ParamValue::F64(x) => {
                self.0.push(2);
                self.u64(x.to_bits());
            }
            ParamValue::Bool(x) => {
                self.0.push(3);
                self.u64(*x as u64);
            }
            ParamValue::Str(s) => {
                self.0.push(4);
                self.bytes(s.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionParams {
        SessionParams::new(
            16,
            ModelManifest::new("SM+LN+G")
                .with_tensor("wte", &[50257, 768])
                .with_tensor("h.0.ln_1.weight", &[768]),
        )
        .with_approximation("gelu.method", "tanh")
        .with_approximation("exp.iterations", 8u32)
        .with_approximation("softmax.clip", -14.0)
    }

    #[test]
    fn nonlinear_parameters_are_agreed() {
        use privlm_protocols::nonlinear::NlParams;
        let nl = NlParams::default();
        let p = sample().with_nonlinear(&nl);
        assert_eq!(p.first_difference(&sample().with_nonlinear(&nl)), None);
        let other = NlParams { act_bits: 40, ..nl };
        let d = p
            .first_difference(&sample().with_nonlinear(&other))
            .expect("differs");
        assert!(d.field.contains("nonlinear.act_bits"), "{d:?}");
        assert_ne!(p.hash(), sample().with_nonlinear(&other).hash());
    }

    #[test]
    fn hash_is_deterministic_and_sensitive() {
        let p = sample();
        assert_eq!(p.hash(), sample().hash());
        assert_eq!(p.first_difference(&sample()), None);
        // Insertion order of approximations does not matter (ordered map).
        let q = SessionParams::new(16, p.manifest.clone())
            .with_approximation("softmax.clip", -14.0)
            .with_approximation("exp.iterations", 8u32)
            .with_approximation("gelu.method", "tanh");
        assert_eq!(p.hash(), q.hash());
        let variants = [
            SessionParams {
                frac_bits: 12,
                ..p.clone()
            },
            SessionParams {
                ring_bits: 32,
                ..p.clone()
            },
            SessionParams {
                protocol_version: 2,
                ..p.clone()
            },
            p.clone().with_approximation("exp.iterations", 9u32),
            p.clone().with_protocol(ProtocolParams {
                iknp_chunk: 1 << 13,
                ..ProtocolParams::default()
            }),
            p.clone().with_protocol(ProtocolParams {
                gc_batch_ands: 1024,
                ..ProtocolParams::default()
            }),
            p.clone().with_protocol(ProtocolParams {
                drelu_bits: 37,
                ..ProtocolParams::default()
            }),
            p.clone().with_protocol(ProtocolParams {
                drelu_drop_low: 8,
                ..ProtocolParams::default()
            }),
            p.clone().with_protocol(ProtocolParams {
                drelu_digit_bits: 3,
                ..ProtocolParams::default()
            }),
            p.clone().with_protocol(ProtocolParams {
                trunc_mode: TruncMode::Local,
                ..ProtocolParams::default()
            }),
            p.clone().with_approximation("softmax.clip", -14.000001),
            p.clone().with_approximation("extra", true),
            SessionParams {
                manifest: ModelManifest::new("SM+LN+R"),
                ..p.clone()
            },
            SessionParams {
                manifest: p.manifest.clone().with_tensor("lnf", &[768]),
                ..p.clone()
            },
        ];
        for v in &variants {
            assert_ne!(v.hash(), p.hash(), "{v:?}");
            assert!(p.first_difference(v).is_some());
        }
        // Length prefixes keep fields apart: moving a byte between names changes the hash.
        let a = SessionParams::new(16, ModelManifest::new("ab").with_tensor("c", &[1]));
        let b = SessionParams::new(16, ModelManifest::new("a").with_tensor("bc", &[1]));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn first_difference_names_the_field() {
        let p = sample();
        let d = p
            .first_difference(&SessionParams {
                frac_bits: 12,
                ..p.clone()
            })
            .unwrap();
        assert_eq!(
            d.to_string(),
            "fixed-point fractional bits differ: ours 16, peer 12"
        );
        let d = p
            .first_difference(&p.clone().with_approximation("exp.iterations", 9u32))
            .unwrap();
        assert_eq!(
            d.to_string(),
            "approximation setting `exp.iterations` differs: ours 8, peer 9"
        );
        let mut q = p.clone();
        q.approximations.remove("gelu.method");
        let d = p.first_difference(&q).unwrap();
        assert_eq!(d.ours, "\"tanh\"");
        assert_eq!(d.peer, "(not set)");
        let mut q = p.clone();
        q.manifest.tensors[1].shape = vec![1024];
        let d = p.first_difference(&q).unwrap();
        assert_eq!(
            d.to_string(),
            "shape of model tensor `h.0.ln_1.weight` differs: ours [768], peer [1024]"
        );
        // Protocol parameters are named, the truncation mode by its name.
        let local = p.clone().with_protocol(ProtocolParams {
            trunc_mode: TruncMode::Local,
            ..ProtocolParams::default()
        });
        assert_eq!(
            p.first_difference(&local).unwrap().to_string(),
            "truncation mode differs: ours dealer-assisted, peer local"
        );
        let q = p.clone().with_protocol(ProtocolParams {
            iknp_chunk: 1 << 13,
            ..ProtocolParams::default()
        });
        assert_eq!(
            p.first_difference(&q).unwrap().to_string(),
            "IKNP chunk size differs: ours 4096, peer 8192"
        );
        let q = p.clone().with_protocol(ProtocolParams {
            drelu_bits: 37,
            gc_batch_ands: 64,
            ..ProtocolParams::default()
        });
        assert_eq!(
            p.first_difference(&q).unwrap().to_string(),
            "garbled-table batch size differs: ours 4096, peer 64"
        );
        // The library configurations come out of the agreed values.
        let d = ProtocolParams::default();
        assert_eq!(d.iknp().unwrap(), IknpConfig::default());
        assert_eq!(d.gc(7), GcConfig::new(7));
        assert_eq!(d.drelu(), DreluParams::exact(64));
        assert!(
            ProtocolParams {
                iknp_chunk: 100,
                ..d
            }
            .iknp()
            .is_err()
        );

        // The first difference in canonical order wins.
        let q = SessionParams {
            frac_bits: 20,
            manifest: ModelManifest::new("other"),
            ..p.clone()
        };
        assert_eq!(
            p.first_difference(&q).unwrap().field,
            "fixed-point fractional bits"
        );
    }
}
