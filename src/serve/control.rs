//! The per-session control exchange between client and server, before the session handshake.
//!
//! 1. The server sends an [`Offer`]: the model it hosts (name, public manifest, tokenizer) and
//!    its limits. A server at its session limit instead aborts the channel with a reason that
//!    starts with `busy:`.
//! 2. The client sends a [`SessionRequest`]: the model it expects (optional), the session id it
//!    drew (32 random bytes; both parties give it to the dealer, which pairs them by it), the
//!    prompt length in tokens and the number of tokens to generate. Never the prompt.
//! 3. The server checks the request ([`check_request`]) and answers [`Accepted`], or aborts the
//!    channel with the reason (the client fails with
//!    [`ChannelError::PeerAborted`](privlm_protocols::channel::ChannelError::PeerAborted)).
//!
//! Every message is read with a size bound ([`MAX_OFFER_LEN`], [`MAX_REQUEST_LEN`],
//! [`MAX_ACCEPTED_LEN`]) and checked field by field by its reader: the peer is untrusted.

use privlm_protocols::nonlinear::NlParams;
use serde::{Deserialize, Serialize};

use crate::model::tokenizer::TokenizerKind;
use crate::model::{ModelError, ModelManifest};
use crate::net::{self, SessionParams};

/// Version of the client-server control exchange.
pub const SERVE_PROTOCOL_VERSION: u32 = 1;

/// Largest [`Offer`] a client reads (GPT-2 small's manifest with per-query temperatures is
/// about 600 KB).
pub const MAX_OFFER_LEN: usize = 4 << 20;

/// Largest [`SessionRequest`] a server reads (the real one is under 400 bytes).
pub const MAX_REQUEST_LEN: usize = 1024;

/// Largest [`Accepted`] a client reads.
pub const MAX_ACCEPTED_LEN: usize = 256;

/// Longest model name a server offers or a client asks for, in bytes.
pub const MAX_MODEL_NAME_LEN: usize = 200;

/// Largest model a client accepts from an offer, in weight elements (an upper estimate, see
/// [`Offer::weight_elements`]): 2^32, above GPT-2 XL's 1.6 G. The client holds a share of
/// every weight (8 bytes each), so this bounds what a server's offer can make it allocate.
pub const MAX_OFFER_WEIGHT_ELEMENTS: u64 = 1 << 32;

/// Longest context a client accepts from an offer, in tokens.
pub const MAX_OFFER_CONTEXT: usize = 1 << 16;

/// What the server hosts, sent first on every connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// [`SERVE_PROTOCOL_VERSION`].
    pub version: u32,
    /// The model's name (the server's `--name`, by default its directory's name).
    pub model_name: String,
    /// The public description of the model: configuration and per-layer public constants
    /// (never weights).
    pub manifest: ModelManifest,
    /// The tokenizer the client encodes the prompt with.
    pub tokenizer: TokenizerKind,
    /// The most tokens this server generates in one session.
    pub max_new_tokens: u32,
    /// Fixed-point fractional bits the server computes with (AGREEMENT; checked again in the
    /// handshake).
    pub frac_bits: u32,
}

impl Offer {
    /// Checks an offer received from a server: version, name length, manifest consistency,
    /// and that the tokenizer fits the vocabulary.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != SERVE_PROTOCOL_VERSION {
            return Err(format!(
                "the server speaks serve protocol version {}, this client {}: use matching \
                 privlm releases",
                self.version, SERVE_PROTOCOL_VERSION
            ));
        }
        if self.model_name.len() > MAX_MODEL_NAME_LEN {
            return Err(format!(
                "the server's model name is {} bytes long (at most {MAX_MODEL_NAME_LEN})",
                self.model_name.len()
            ));
        }
        self.manifest
            .validate()
            .map_err(|e| format!("the server's model manifest is invalid: {e}"))?;
        let ctx = self.manifest.config.n_ctx;
        if ctx > MAX_OFFER_CONTEXT {
            return Err(format!(
                "the server's model has a context of {ctx} tokens, more than this client \
                 supports ({MAX_OFFER_CONTEXT})"
            ));
        }
        match self.weight_elements() {
            Some(n) if n <= MAX_OFFER_WEIGHT_ELEMENTS => {}
            n => {
                return Err(format!(
                    "the server's model has {} weight elements, more than this client holds \
                     shares of (at most {MAX_OFFER_WEIGHT_ELEMENTS})",
                    n.map_or_else(|| "over 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
        if self.tokenizer.vocab_size() != self.manifest.config.vocab_size {
            return Err(format!(
                "the server's tokenizer {} has {} tokens but its model's vocabulary has {}",
                self.tokenizer,
                self.tokenizer.vocab_size(),
                self.manifest.config.vocab_size
            ));
        }
        Ok(())
    }

    /// An upper estimate of the model's weight elements from the offered shapes (`None` on
    /// overflow): token and position embeddings, an untied head, and per layer four `d × d`
    /// attention matrices, the FFN's two `d × max(d_ff, d)` matrices where the layer has one,
    /// and a few `d`-vectors. Used to refuse offers too large to hold before anything is
    /// allocated.
    pub fn weight_elements(&self) -> Option<u64> {
        let c = &self.manifest.config;
        let (d, ff) = (c.d_model as u64, c.d_ff.max(c.d_model) as u64);
        let vocab = (c.vocab_size as u64).checked_mul(d)?;
        let head = if self.manifest.untied_lm_head {
            vocab
        } else {
            0
        };
        let pos = (c.n_ctx as u64).checked_mul(d)?;
        let attn = d.checked_mul(d)?.checked_mul(4)?;
        let ffn = d.checked_mul(ff)?.checked_mul(2)?;
        let vectors = d.checked_mul(16)?.checked_add(ff)?;
        let mut total = vocab.checked_add(head)?.checked_add(pos)?;
        for layer in 0..c.n_layer {
            let f = if c.architecture.has_ffn(layer) {
                ffn
            } else {
                0
            };
            total = total
                .checked_add(attn)?
                .checked_add(f)?
                .checked_add(vectors)?;
        }
        Some(total)
    }
}

/// A 32-byte session id (random, drawn by the client). `Display` shows its first 8 bytes in hex,
/// as the dealer's logs do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// A fresh random id from the operating system's generator.
    pub fn random() -> Self {
        SessionId(privlm_protocols::prg::os_seed())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("expected 64 hex digits, got {s:?}"));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(SessionId(out))
    }

    /// All 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&privlm_protocols::beaver::dealer::server::short_session_id(
            &self.0,
        ))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl std::str::FromStr for SessionId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SessionId::from_hex(s)
    }
}

/// The client's request for a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// [`SERVE_PROTOCOL_VERSION`].
    pub version: u32,
    /// The model the client expects (`None`: whatever the server hosts).
    pub model: Option<String>,
    /// The session id both parties give the dealer.
    pub session_id: SessionId,
    /// Prompt length in tokens.
    pub prompt_len: u32,
    /// Tokens to generate.
    pub max_new_tokens: u32,
}

/// The server's acceptance of a [`SessionRequest`]: the session handshake follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The accepted session id (echoed).
    pub session_id: SessionId,
}

/// Checks a session request against an offer: what the server does with every request (the
/// client runs it too, before sending, so that its user sees the reason without a round trip).
/// The error is the refusal's text, saying what to do.
pub fn check_request(offer: &Offer, req: &SessionRequest) -> Result<(), String> {
    if req.version != SERVE_PROTOCOL_VERSION {
        return Err(format!(
            "the client speaks serve protocol version {}, this server {}: use matching privlm \
             releases",
            req.version, SERVE_PROTOCOL_VERSION
        ));
    }
    if let Some(m) = &req.model {
        if m.len() > MAX_MODEL_NAME_LEN {
            return Err(format!(
                "the requested model name is {} bytes long (at most {MAX_MODEL_NAME_LEN})",
                m.len()
            ));
        }
        if *m != offer.model_name {
            return Err(format!(
                "this server hosts model `{}` ({}), not `{m}`: drop --model to use it, or \
                 connect to a server that hosts `{m}`",
                offer.model_name,
                offer.manifest.config.architecture.name()
            ));
        }
    }
    if req.session_id.0 == [0u8; 32] {
        return Err("the session id is all zeros: draw it at random".into());
    }
    let ctx = offer.manifest.config.n_ctx as u64;
    let (p, n) = (u64::from(req.prompt_len), u64::from(req.max_new_tokens));
    if p == 0 {
        return Err("empty prompt: give at least one token of text (--prompt TEXT)".into());
    }
    if n == 0 {
        return Err(
            "nothing to generate: ask for at least one new token (--max-new-tokens)".into(),
        );
    }
    if n > u64::from(offer.max_new_tokens) {
        return Err(format!(
            "{n} new tokens requested, but this server generates at most {} per session: ask \
             for fewer (--max-new-tokens)",
            offer.max_new_tokens
        ));
    }
    if p + n > ctx {
        let room = ctx.saturating_sub(n);
        return Err(format!(
            "the prompt ({p} tokens) plus {n} new tokens exceeds the model's context of {ctx} \
             tokens: shorten the prompt to at most {room} tokens or ask for fewer new tokens"
        ));
    }
    Ok(())
}

/// The AGREEMENT parameters of a session on `manifest` with fixed point `frac_bits` and the
/// nonlinear layers' `nl`: the model part is the architecture's name, its shapes and a SHA-256
/// of the whole public manifest (constants included), so that the handshake fails on any
/// difference in the model description as well as in the arithmetic.
pub fn session_params(
    manifest: &ModelManifest,
    frac_bits: u32,
    nl: &NlParams,
) -> Result<SessionParams, ModelError> {
    let c = &manifest.config;
    let json = serde_json::to_vec(manifest).map_err(|e| ModelError::BadConfig {
        field: "manifest",
        msg: e.to_string(),
    })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let net_manifest = net::ModelManifest::new(&c.architecture.name())
        .with_tensor("wte", &[c.vocab_size, c.d_model])
        .with_tensor("wpe", &[c.n_ctx, c.d_model])
        .with_tensor("blocks", &[c.n_layer, c.n_head, c.d_ff]);
    Ok(SessionParams::new(frac_bits, net_manifest)
        .with_nonlinear(nl)
        .with_approximation("model.manifest_sha256", hex.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, Model, ModelConfig};

    fn offer() -> Offer {
        let mut cfg = ModelConfig::gpt2_small(Architecture::gpt2(), 16);
        (
            cfg.n_layer,
            cfg.n_head,
            cfg.d_model,
            cfg.d_ff,
            cfg.vocab_size,
        ) = (1, 2, 8, 32, 256);
        let m = Model::random(cfg, 1).unwrap();
        Offer {
            version: SERVE_PROTOCOL_VERSION,
            model_name: "tiny".into(),
            manifest: m.manifest(),
            tokenizer: TokenizerKind::Byte,
            max_new_tokens: 8,
            frac_bits: 16,
        }
    }

    fn req(p: u32, n: u32) -> SessionRequest {
        SessionRequest {
            version: SERVE_PROTOCOL_VERSION,
            model: None,
            session_id: SessionId([7; 32]),
            prompt_len: p,
            max_new_tokens: n,
        }
    }

    #[test]
    fn requests_are_checked_with_helpful_reasons() {
        let o = offer();
        o.validate().unwrap();
        check_request(&o, &req(8, 8)).unwrap();
        let e = check_request(&o, &req(0, 4)).unwrap_err();
        assert!(e.contains("empty prompt"), "{e}");
        let e = check_request(&o, &req(4, 0)).unwrap_err();
        assert!(e.contains("at least one new token"), "{e}");
        let e = check_request(&o, &req(4, 9)).unwrap_err();
        assert!(e.contains("at most 8 per session"), "{e}");
        let e = check_request(&o, &req(9, 8)).unwrap_err();
        assert!(
            e.contains("context of 16") && e.contains("at most 8 tokens"),
            "{e}"
        );
        let e = check_request(&o, &req(u32::MAX, 8)).unwrap_err();
        assert!(e.contains("context"), "{e}");
        let mut r = req(1, 1);
        r.model = Some("other".into());
        let e = check_request(&o, &r).unwrap_err();
        assert!(e.contains("hosts model `tiny`"), "{e}");
        r.model = Some("tiny".into());
        check_request(&o, &r).unwrap();
        r.session_id = SessionId([0; 32]);
        assert!(check_request(&o, &r).unwrap_err().contains("zeros"));
        let mut r = req(1, 1);
        r.version = 9;
        assert!(check_request(&o, &r).unwrap_err().contains("version"));
    }

    #[test]
    fn offers_are_validated() {
        let mut o = offer();
        o.tokenizer = TokenizerKind::Gpt2;
        assert!(o.validate().unwrap_err().contains("vocabulary"));
        let mut o = offer();
        o.manifest.layers.clear();
        assert!(o.validate().unwrap_err().contains("manifest"));
        let mut o = offer();
        o.model_name = "x".repeat(MAX_MODEL_NAME_LEN + 1);
        assert!(o.validate().is_err());
    }

    #[test]
    fn offers_too_large_to_hold_are_refused() {
        let gpt2 = ModelConfig::gpt2_small(Architecture::gpt2(), 1024);
        let m = ModelManifest {
            layers: vec![
                crate::model::ops::LayerConstants {
                    beta: 1.0,
                    score_scale: 0.125,
                    temperature: None,
                };
                gpt2.n_layer
            ],
            config: gpt2,
            untied_lm_head: false,
        };
        let mut o = offer();
        o.manifest = m;
        o.tokenizer = TokenizerKind::Gpt2;
        let n = o.weight_elements().unwrap();
        // GPT-2 small: 124 M weights; the estimate is an upper bound within 5 %.
        assert!((124_000_000..131_000_000).contains(&n), "{n}");
        o.validate().unwrap();
        let mut big = o.clone();
        big.manifest.config.d_model = 1 << 16;
        big.manifest.config.n_head = 1;
        let e = big.validate().unwrap_err();
        assert!(e.contains("weight elements"), "{e}");
        let mut huge = o.clone();
        huge.manifest.config.d_model = 1 << 40;
        huge.manifest.config.n_head = 1;
        assert!(huge.weight_elements().is_none());
        assert!(huge.validate().unwrap_err().contains("over 2^64"));
        let mut long = o.clone();
        long.manifest.config.n_ctx = MAX_OFFER_CONTEXT + 1;
        assert!(long.validate().unwrap_err().contains("context"));
    }

    #[test]
    fn session_params_follow_the_manifest_and_arithmetic() {
        let o = offer();
        let nl = NlParams::default();
        let a = session_params(&o.manifest, 16, &nl).unwrap();
        assert_eq!(
            a.hash(),
            session_params(&o.manifest, 16, &nl).unwrap().hash()
        );
        let b = session_params(&o.manifest, 12, &nl).unwrap();
        assert_eq!(
            a.first_difference(&b).unwrap().field,
            "fixed-point fractional bits"
        );
        let mut m = o.manifest.clone();
        m.layers[0].score_scale *= 2.0;
        let c = session_params(&m, 16, &nl).unwrap();
        assert!(
            a.first_difference(&c)
                .unwrap()
                .field
                .contains("manifest_sha256")
        );
    }

    #[test]
    fn session_ids_parse_and_print() {
        let id = SessionId::random();
        assert_ne!(id.0, [0; 32]);
        assert_eq!(SessionId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.to_string().len(), 16);
        assert!(SessionId::from_hex("12").is_err());
        assert!(SessionId::from_hex(&"g".repeat(64)).is_err());
    }
}
