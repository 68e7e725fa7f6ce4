//! Security tests of garbling: what the evaluator can learn, not only what it outputs.
//!
//! - The attack of issue 9: many sessions garbled over one COT sender (one `Δ`); the evaluator
//!   XORs what it holds (table rows and active labels) across sessions. It must never find
//!   `Δ`.
//! - The tweak discipline: one counter per `Δ`, advanced by every session and every other use,
//!   in step on both ends, checked at the start of each session.
//! - Public constants are folded (no table for an AND with a constant).
//! - The evaluator's view (active labels and their permute bits, arithmetic shares) is
//!   independent of the garbler's bits and of the values on the wires.

use std::collections::HashSet;

use rand_core::Rng;

use super::word;
use super::*;
use crate::block::Block;
use crate::channel::{FramedChannel, mem};
use crate::convert::y2a;
use crate::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
use crate::ot::{CotReceiver, CotSender, RotReceiver, RotSender};
use crate::prg::Prg;
use crate::view_test_util::{BIT_PATTERNS, Recorder, assert_balanced, assert_uniform_u64s};

const WORDS: usize = 8;
const WIDTH: usize = 8;

fn iknp_pair(seed: u64) -> (IknpSender, IknpReceiver) {
    let mut prg = Prg::from_u64(seed);
    let s = IknpSender::random(IknpConfig::default(), &mut prg);
    let r = IknpReceiver::new(IknpConfig::default(), &mut prg);
    (s, r)
}

fn bits_of(v: &[u64], l: usize) -> Vec<bool> {
    v.iter()
        .flat_map(|&x| (0..l).map(move |i| (x >> i) & 1 == 1))
        .collect()
}

/// The argmax circuit of the issue: the garbler owns words 0..4, the evaluator words 4..8
/// (8-bit signed), the index is revealed to the evaluator.
async fn argmax_session<B: Backend<Error = GcError>>(
    b: &mut B,
    gw: Option<&[u64]>,
    ew: Option<&[u64]>,
) -> Result<Option<Vec<bool>>, GcError> {
    let half = WORDS / 2;
    let g = b
        .input(
            Role::Garbler,
            half * WIDTH,
            gw.map(|v| bits_of(v, WIDTH)).as_deref(),
        )
        .await?;
    let e = b
        .input(
            Role::Evaluator,
            half * WIDTH,
            ew.map(|v| bits_of(v, WIDTH)).as_deref(),
        )
        .await?;
    let words: Vec<Vec<B::Wire>> = g
        .chunks(WIDTH)
        .chain(e.chunks(WIDTH))
        .map(|c| c.to_vec())
        .collect();
    let (_, idx) = word::argmax(b, &words).await?;
    b.reveal(&idx, RevealTo::Evaluator).await
}

fn index_of_max(v: &[u64]) -> usize {
    let s = |x: u64| x as u8 as i8;
    let mut best = 0;
    for i in 1..v.len() {
        if s(v[i]) > s(v[best]) {
            best = i;
        }
    }
    best
}

/// An evaluator that remembers the labels of every AND gate it evaluates (`[a, b, a ∧ b]`, in
/// order, folded gates included) and every input label it receives: what the attacker holds
/// besides the tables.
struct Tap<'a, B> {
    inner: &'a mut B,
    gates: Vec<[Block; 3]>,
    inputs: Vec<Block>,
}

impl<B: Backend<Wire = Block, Error = GcError>> Backend for Tap<'_, B> {
    type Wire = Block;
    type Error = GcError;

    fn role(&self) -> Option<Role> {
        self.inner.role()
    }

    fn constant(&mut self, bit: bool) -> Block {
        self.inner.constant(bit)
    }

    fn xor(&mut self, a: Block, b: Block) -> Block {
        self.inner.xor(a, b)
    }

    fn not(&mut self, a: Block) -> Block {
        self.inner.not(a)
    }

    async fn and(&mut self, a: Block, b: Block) -> Result<Block, GcError> {
        let c = self.inner.and(a, b).await?;
        self.gates.push([a, b, c]);
        Ok(c)
    }

    async fn and_n(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        let c = self.inner.and_n(a, b).await?;
        for i in 0..c.len() {
            self.gates.push([a[i], b[i], c[i]]);
        }
        Ok(c)
    }

    async fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> Result<Vec<Block>, GcError> {
        let w = self.inner.input(owner, n, bits).await?;
        self.inputs.extend(&w);
        Ok(w)
    }

    async fn reveal(
        &mut self,
        wires: &[Block],
        to: RevealTo,
    ) -> Result<Option<Vec<bool>>, GcError> {
        self.inner.reveal(wires, to).await
    }

    fn share(&mut self, wires: &[Block]) -> Result<Vec<bool>, GcError> {
        self.inner.share(wires)
    }

    async fn arith_shares(
        &mut self,
        words: &[Vec<Block>],
        signed: bool,
    ) -> Result<Vec<u64>, GcError> {
        self.inner.arith_shares(words, signed).await
    }
}

/// What the evaluator of one session holds: per garbled gate (in order) its two table rows and
/// its labels `[TG, TE, a, b, a ∧ b]`, and the input labels.
struct View {
    gates: Vec<[Block; 5]>,
    inputs: Vec<Block>,
}

/// Garbles the argmax `sessions` times over one IKNP pair; returns the evaluator's view of
/// each session and the sender's `Δ`.
async fn garble_sessions(sessions: usize, seed: u64) -> (Vec<View>, Block) {
    let (mut s, mut r) = iknp_pair(seed);
    let (c0, c1) = mem::pair();
    let mut c0: FramedChannel = c0;
    let mut c1 = Recorder::new(c1);
    let mut prg = Prg::from_u64(seed + 1);
    let cfg = GcConfig::new(0xa5);
    let mut views = Vec::new();
    for k in 0..sessions {
        let vals: Vec<u64> = (0..WORDS).map(|_| prg.next_u64() & 0xff).collect();
        let want = index_of_max(&vals);
        c1.clear();
        let mut grng = Prg::from_u64(seed + 100 + k as u64);
        let (g, e) = tokio::join!(
            async {
                let mut g = Garbler::new(&mut c0, &mut s, &mut grng, cfg).await?;
                argmax_session(&mut g, Some(&vals[..WORDS / 2]), None).await?;
                g.finish().await
            },
            async {
                let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
                let mut tap = Tap {
                    inner: &mut e,
                    gates: Vec::new(),
                    inputs: Vec::new(),
                };
                let out = argmax_session(&mut tap, None, Some(&vals[WORDS / 2..])).await?;
                let (gates, inputs) = (tap.gates, tap.inputs);
                e.finish().await?;
                Ok::<_, GcError>((out, gates, inputs))
            }
        );
        let ands = g.expect("garbler");
        let (idx, gates, inputs) = e.expect("evaluator");
        let idx = idx.expect("revealed to the evaluator");
        let got = idx
            .iter()
            .enumerate()
            .fold(0usize, |acc, (i, &b)| acc | ((b as usize) << i));
        assert_eq!(got, want, "session {k}: argmax of {vals:?}");
        let bytes: Vec<u8> = c1.bounded.concat();
        let rows: Vec<Block> = bytes
            .chunks_exact(16)
            .map(|c| Block::from_bytes(c.try_into().unwrap()))
            .collect();
        // The gates that have tables: all of them, unless public inputs were folded.
        let public = |x: Block| x == Block::ZERO || x == PUBLIC_TRUE;
        let garbled: Vec<[Block; 3]> = if 2 * gates.len() == rows.len() {
            gates
        } else {
            gates
                .into_iter()
                .filter(|g| !public(g[0]) && !public(g[1]))
                .collect()
        };
        assert_eq!(
            2 * garbled.len(),
            rows.len(),
            "session {k}: tables per gate"
        );
        assert_eq!(garbled.len() as u64, ands, "session {k}: garbled ANDs");
        let gates = garbled
            .iter()
            .zip(rows.chunks_exact(2))
            .map(|(g, r)| [r[0], r[1], g[0], g[1], g[2]])
            .collect();
        views.push(View { gates, inputs });
    }
    (views, s.delta())
}

/// Whether the XOR of some 1 to 4 of `vals` is `delta`.
fn some_xor_is(vals: &[Block], delta: Block) -> bool {
    let n = vals.len();
    for i in 0..n {
        if vals[i] == delta {
            return true;
        }
        for j in i + 1..n {
            let x2 = vals[i] ^ vals[j];
            if x2 == delta {
                return true;
            }
            for k in j + 1..n {
                let x3 = x2 ^ vals[k];
                if x3 == delta {
                    return true;
                }
                if vals[k + 1..].iter().any(|&v| x3 ^ v == delta) {
                    return true;
                }
            }
        }
    }
    false
}

/// Issue 9's attack: the XOR of two table rows (of the same or of different sessions, at the
/// same gate index or not) is never `Δ`, nor is the XOR of any four values the evaluator holds
/// (rows and labels, across all sessions). Before the fix, ANDs with constants were garbled
/// with the labels `0`/`Δ` and every session restarted its tweaks at 0: for an index
/// multiplexer `s ∧ c` (constant `c`) at the same gate of two sessions, the evaluator-half rows
/// satisfy `TE ⊕ TE' = A0 ⊕ A0'`, so `TE ⊕ TE' ⊕ Wa ⊕ Wa' = Δ` whenever the two selectors
/// differ.
#[tokio::test]
async fn xor_across_sessions_never_reveals_delta() {
    let (views, delta) = garble_sessions(4, 90).await;
    assert!(views.iter().all(|v| !v.gates.is_empty()));
    // Same gate index in every pair of sessions (the attack): no XOR of up to four of
    // the ten values (two rows and three labels per session) is delta.
    for a in 0..views.len() {
        for b in a + 1..views.len() {
            for (k, (x, y)) in views[a].gates.iter().zip(&views[b].gates).enumerate() {
                let vals: Vec<Block> = x.iter().chain(y).copied().collect();
                assert!(
                    !some_xor_is(&vals, delta),
                    "gate {k} of sessions {a} and {b}: rows and labels XOR to delta"
                );
            }
        }
    }
    // Any two values the evaluator holds, across all gates and sessions.
    let known: Vec<Block> = views
        .iter()
        .flat_map(|v| v.gates.iter().flatten().chain(&v.inputs))
        .copied()
        .collect();
    let set: HashSet<Block> = known.iter().copied().collect();
    assert!(
        known.iter().all(|x| !set.contains(&(*x ^ delta))),
        "two values the evaluator holds XOR to delta"
    );
    // No table row repeats (a repeated row would mean a repeated hash input and tweak).
    let rows: Vec<Block> = views
        .iter()
        .flat_map(|v| v.gates.iter().flat_map(|g| [g[0], g[1]]))
        .collect();
    let distinct: HashSet<Block> = rows.iter().copied().collect();
    assert_eq!(distinct.len(), rows.len(), "table rows repeat");
}

/// Every session, Y2A, IKNP random OT and additive-COT call over one correlation advances the
/// same counter, by exactly what it hashed, and the receiver's mirror stays in step.
#[tokio::test]
async fn one_tweak_counter_per_delta_across_sessions_and_uses() {
    let (mut s, mut r) = iknp_pair(91);
    let (mut c0, mut c1) = mem::pair();
    let cfg = GcConfig::new(3);
    let mut expected = 0u64;
    for k in 0..3u64 {
        let vals: Vec<u64> = (0..WORDS as u64).map(|i| (i * 37 + k) & 0xff).collect();
        let mut grng = Prg::from_u64(k);
        let (g, e) = tokio::join!(
            async {
                let mut g = Garbler::new(&mut c0, &mut s, &mut grng, cfg).await?;
                argmax_session(&mut g, Some(&vals[..WORDS / 2]), None).await?;
                let w = g.input(Role::Garbler, 8, Some(&[true; 8])).await?;
                let sh = y2a(&mut g, &[w], true).await?;
                Ok::<_, GcError>((g.finish().await?, sh))
            },
            async {
                let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
                argmax_session(&mut e, None, Some(&vals[WORDS / 2..])).await?;
                let w = e.input(Role::Garbler, 8, None).await?;
                let sh = y2a(&mut e, &[w], true).await?;
                e.finish().await?;
                Ok::<_, GcError>(sh)
            }
        );
        let ((ands, gs), es) = (g.unwrap(), e.unwrap());
        assert_eq!(gs[0].wrapping_add(es[0]), u64::MAX, "y2a of -1");
        expected += ands + 8;
        assert_eq!(s.tweaks().used(), expected, "session {k}");
        assert_eq!(r.tweaks().used(), expected, "receiver mirror, session {k}");
        // Other uses of the same correlation in between sessions.
        let (x, y) = tokio::join!(s.send_rot(&mut c0, 100), r.recv_rot(&mut c1, 100));
        x.unwrap();
        y.unwrap();
        expected += 100;
        let bits = vec![true; 10];
        let (x, y) = tokio::join!(
            crate::ot::b2a::b2a_bits::<_, IknpSender, IknpReceiver>(
                &mut c0,
                crate::ot::b2a::CotRole::Sender(&mut s),
                &bits
            ),
            crate::ot::b2a::b2a_bits::<_, IknpSender, IknpReceiver>(
                &mut c1,
                crate::ot::b2a::CotRole::Receiver(&mut r),
                &bits
            )
        );
        x.unwrap();
        y.unwrap();
        expected += 10;
        assert_eq!(s.tweaks().used(), expected);
        assert_eq!(r.tweaks().used(), expected);
    }
}

/// Ends whose counters disagree stop at the session header, naming the problem.
#[tokio::test]
async fn out_of_step_tweak_counters_are_refused() {
    let (mut s, mut r) = iknp_pair(92);
    s.tweaks().reserve(5);
    let (mut c0, mut c1) = mem::pair();
    let cfg = GcConfig::new(4);
    let mut grng = Prg::from_u64(1);
    let (g, e) = tokio::join!(
        async {
            let mut g = Garbler::new(&mut c0, &mut s, &mut grng, cfg).await?;
            let x = g.input(Role::Garbler, 1, Some(&[true])).await?;
            g.reveal(&x, RevealTo::Garbler).await
        },
        Evaluator::new(&mut c1, &mut r, cfg)
    );
    match e {
        Err(GcError::Protocol(m)) => assert!(m.contains("tweak counters"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(g.is_err());
}

/// ANDs with public constants send no table; results stay right (also for a wire that
/// cancels to a constant, `x ⊕ x`).
#[tokio::test]
async fn ands_with_public_constants_are_not_garbled() {
    let (mut s, mut r) = iknp_pair(93);
    let (mut c0, mut c1) = mem::pair();
    let cfg = GcConfig::new(5);
    let xv = [true, false, true, true];
    let yv = [true, true, false, true];
    async fn circuit<B: Backend<Error = GcError>>(
        b: &mut B,
        x: Option<&[bool]>,
        y: Option<&[bool]>,
    ) -> Result<Option<Vec<bool>>, GcError> {
        let x = b.input(Role::Garbler, 4, x).await?;
        let y = b.input(Role::Evaluator, 4, y).await?;
        let (t, f) = (b.constant(true), b.constant(false));
        let nf = b.not(f);
        let zero = b.xor(x[0], x[0]);
        let one = b.not(zero);
        let mut out = vec![
            b.and(x[0], t).await?,
            b.and(f, y[1]).await?,
            b.and(nf, y[2]).await?,
            b.and(zero, y[3]).await?,
            b.and(y[0], one).await?,
        ];
        // A bulk call mixing public and secret inputs; only the secret pairs are garbled.
        out.extend(
            b.and_n(&[x[0], t, x[2], f], &[y[0], y[1], y[2], x[3]])
                .await?,
        );
        out.push(b.and(x[1], y[1]).await?);
        b.reveal(&out, RevealTo::Both).await
    }
    let mut grng = Prg::from_u64(2);
    let (g, e) = tokio::join!(
        async {
            let mut g = Garbler::new(&mut c0, &mut s, &mut grng, cfg).await?;
            let out = circuit(&mut g, Some(&xv), None).await?;
            Ok::<_, GcError>((out, g.finish().await?))
        },
        async {
            let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
            let out = circuit(&mut e, None, Some(&yv)).await?;
            Ok::<_, GcError>((out, e.finish().await?))
        }
    );
    let ((gout, gands), (eout, eands)) = (g.unwrap(), e.unwrap());
    let want = vec![
        xv[0],
        false,
        yv[2],
        false,
        yv[0],
        xv[0] & yv[0],
        yv[1],
        xv[2] & yv[2],
        false,
        xv[1] & yv[1],
    ];
    assert_eq!(gout.unwrap(), want);
    assert_eq!(eout.unwrap(), want);
    // Garbled: x0∧y0 and x2∧y2 of the bulk call, and x1∧y1.
    assert_eq!((gands, eands), (3, 3));
    assert_eq!(s.tweaks().used(), 3);
    // Count folds the same constants but does not see that x ⊕ x (and its negation) is
    // public, so it counts the two gates on those wires: the only case where the label-based
    // folding is finer.
    let mut c = Count::new();
    circuit(&mut c, None, None).await.unwrap();
    assert_eq!(c.ands(), 5);
}

/// The evaluator's view of the garbler's input labels: distinct, never a public label, and
/// their permute bits (which the evaluator reads) independent of the garbler's bits, for
/// all-zero, all-one and alternating inputs.
#[tokio::test]
async fn evaluator_view_is_independent_of_the_garblers_bits() {
    const N: usize = 4096;
    for (k, (name, pat)) in BIT_PATTERNS.into_iter().enumerate() {
        let (mut s, mut r) = iknp_pair(94 + k as u64);
        let (mut c0, mut c1) = mem::pair();
        let cfg = GcConfig::new(6);
        let bits: Vec<bool> = (0..N).map(pat).collect();
        let mut grng = Prg::from_u64(10 + k as u64);
        let (g, e) = tokio::join!(
            async {
                let mut g = Garbler::new(&mut c0, &mut s, &mut grng, cfg).await?;
                let x = g.input(Role::Garbler, N, Some(&bits)).await?;
                let y = g.input(Role::Evaluator, N, None).await?;
                let z = g.and_n(&x, &y).await?;
                let sh = g.share(&z)?;
                g.finish().await?;
                Ok::<_, GcError>(sh)
            },
            async {
                let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
                let x = e.input(Role::Garbler, N, None).await?;
                let y = e.input(Role::Evaluator, N, Some(&vec![true; N])).await?;
                let z = e.and_n(&x, &y).await?;
                let sh = e.share(&z)?;
                e.finish().await?;
                Ok::<_, GcError>((x, z, sh))
            }
        );
        let gsh = g.unwrap();
        let (labels, zl, esh) = e.unwrap();
        let distinct: HashSet<Block> = labels.iter().copied().collect();
        assert_eq!(distinct.len(), N, "{name}: garbler input labels repeat");
        assert!(
            labels.iter().all(|&l| l != Block::ZERO && l != PUBLIC_TRUE),
            "{name}: a garbler input arrived as a public label"
        );
        let lsb_ones = labels.iter().filter(|l| l.lsb()).count();
        assert_balanced(lsb_ones, N, &format!("{name}: input label permute bits"));
        let agree = labels
            .iter()
            .zip(&bits)
            .filter(|(l, b)| l.lsb() == **b)
            .count();
        assert_balanced(
            agree,
            N,
            &format!("{name}: permute bits equal to the inputs"),
        );
        // AND outputs (= the garbler's bits, since the evaluator's are all 1): the evaluator's
        // boolean shares are independent of the values; the two shares XOR to them.
        let ones = esh.iter().filter(|&&b| b).count();
        assert_balanced(ones, N, &format!("{name}: evaluator's output shares"));
        let agree = esh.iter().zip(&bits).filter(|(a, b)| a == b).count();
        assert_balanced(
            agree,
            N,
            &format!("{name}: output shares equal to the values"),
        );
        for i in 0..N {
            assert_eq!(gsh[i] ^ esh[i], bits[i], "{name}: output {i}");
        }
        assert!(zl.iter().all(|&l| l != Block::ZERO && l != PUBLIC_TRUE));
    }
}

/// The evaluator's arithmetic shares from Y2A are uniform whatever the value (here the same
/// value in every word).
#[tokio::test]
async fn evaluator_arith_shares_are_uniform() {
    const N: usize = 1024;
    for value in [0u64, 0x5a] {
        let (mut s, mut r) = iknp_pair(97);
        let (mut c0, mut c1) = mem::pair();
        let cfg = GcConfig::new(7);
        let bits: Vec<bool> = (0..N).flat_map(|_| bits_of(&[value], 8)).collect();
        let mut grng = Prg::from_u64(3);
        let (g, e) = tokio::join!(
            async {
                let mut g = Garbler::new(&mut c0, &mut s, &mut grng, cfg).await?;
                let x = g.input(Role::Garbler, 8 * N, Some(&bits)).await?;
                let words: Vec<Vec<Block>> = x.chunks(8).map(|c| c.to_vec()).collect();
                let sh = y2a(&mut g, &words, false).await?;
                g.finish().await?;
                Ok::<_, GcError>(sh)
            },
            async {
                let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
                let x = e.input(Role::Garbler, 8 * N, None).await?;
                let words: Vec<Vec<Block>> = x.chunks(8).map(|c| c.to_vec()).collect();
                let sh = y2a(&mut e, &words, false).await?;
                e.finish().await?;
                Ok::<_, GcError>(sh)
            }
        );
        let (gs, es) = (g.unwrap(), e.unwrap());
        for i in 0..N {
            assert_eq!(gs[i].wrapping_add(es[i]), value);
        }
        assert_uniform_u64s(&es, &format!("evaluator's Y2A shares of {value}"));
        assert_uniform_u64s(&gs, &format!("garbler's Y2A shares of {value}"));
    }
}

/// The COT receiver's mirror counter is what the evaluator uses; a receiver that also ran
/// random OTs for itself stays in step only if the sender did the same (sanity check of the
/// trait contract on IKNP).
#[tokio::test]
async fn rot_calls_advance_both_counters() {
    let (mut s, mut r) = iknp_pair(98);
    let (mut c0, mut c1) = mem::pair();
    let (x, y) = tokio::join!(s.send_rot(&mut c0, 300), r.recv_rot(&mut c1, 300));
    let (m, (bits, got)) = (x.unwrap(), y.unwrap());
    for i in 0..300 {
        assert_eq!(got[i], m[i][bits[i] as usize]);
    }
    assert_eq!((s.tweaks().used(), r.tweaks().used()), (300, 300));
}

/// The cores hash with exactly the tweaks they are given: gate `i` of a bulk call with first
/// index `f` uses `(GcGarblerHalf, f + i)` and `(GcEvaluatorHalf, f + i)` (a known-answer check
/// against the half-gates formulas, across the cores' hash batches), and the evaluator
/// recovers the output label.
#[test]
fn cores_use_the_given_tweaks() {
    use crate::hash::{FIXED_KEY_AES, TweakDomain};
    let mut prg = Prg::from_u64(99);
    let delta = Block(Block::random(&mut prg).0 | 1);
    let n = 100;
    let a0: Vec<Block> = (0..n).map(|_| Block::random(&mut prg)).collect();
    let b0: Vec<Block> = (0..n).map(|_| Block::random(&mut prg)).collect();
    let first = 5000u64;
    let mut core = GarbleCore::new(delta).unwrap();
    let (mut out, mut tables) = (Vec::new(), Vec::new());
    core.and_many(&a0, &b0, first, &mut out, &mut tables);
    assert_eq!(core.ands(), n as u64);
    let mut single = GarbleCore::new(delta).unwrap();
    let h = |t: Block, x: Block| FIXED_KEY_AES.tccr(t, x);
    for i in 0..n {
        let g = TweakDomain::GcGarblerHalf.tweak(first + i as u64);
        let e = TweakDomain::GcEvaluatorHalf.tweak(first + i as u64);
        let (pa, pb) = (a0[i].lsb(), b0[i].lsb());
        let tg = h(g, a0[i]) ^ h(g, a0[i] ^ delta) ^ delta.select(pb);
        let te = h(e, b0[i]) ^ h(e, b0[i] ^ delta) ^ a0[i];
        let wg = h(g, a0[i]) ^ tg.select(pa);
        let we = h(e, b0[i]) ^ (te ^ a0[i]).select(pb);
        let t = &tables[32 * i..32 * i + 32];
        assert_eq!(t[..16], tg.to_bytes(), "TG of gate {i}");
        assert_eq!(t[16..], te.to_bytes(), "TE of gate {i}");
        assert_eq!(out[i], wg ^ we, "output zero-label of gate {i}");
        let mut one = Vec::new();
        assert_eq!(single.and(a0[i], b0[i], first + i as u64, &mut one), out[i]);
        assert_eq!(one, t);
        // The evaluator, for every input combination, gets the right label.
        for (va, vb) in [(false, false), (false, true), (true, false), (true, true)] {
            let (wa, wb) = (a0[i] ^ delta.select(va), b0[i] ^ delta.select(vb));
            let want = out[i] ^ delta.select(va & vb);
            let mut ev = EvalCore::new();
            assert_eq!(ev.and(wa, wb, first + i as u64, t), want, "gate {i}");
            let mut bulk = Vec::new();
            ev.and_many(&[wa], &[wb], first + i as u64, t, &mut bulk);
            assert_eq!(bulk, vec![want]);
            assert_eq!(ev.ands(), 2);
        }
    }
    // Bulk evaluation across the core's hash batches.
    let wa: Vec<Block> = a0.iter().map(|&x| x ^ delta).collect();
    let mut ev = EvalCore::new();
    let mut got = Vec::new();
    ev.and_many(&wa, &b0, first, &tables, &mut got);
    for i in 0..n {
        assert_eq!(got[i], out[i], "bulk gate {i}");
    }
}

/// Y2A hashes with the tweaks reserved for it (`(GcArith, f + i)`).
#[test]
fn arith_hash_uses_the_given_tweaks() {
    use crate::hash::{FIXED_KEY_AES, TweakDomain};
    let mut prg = Prg::from_u64(98);
    let xs: Vec<Block> = (0..70).map(|_| Block::random(&mut prg)).collect();
    let h = super::garble::arith_hash(300, &xs);
    for i in 0..xs.len() {
        let t = TweakDomain::GcArith.tweak(300 + i as u64);
        assert_eq!(h[i], FIXED_KEY_AES.tccr(t, xs[i]).0 as u64, "hash {i}");
    }
}
