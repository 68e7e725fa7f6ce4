//! View tests of the OT layer: what each party sees is independent of the other's secrets.
//!
//! - Base OT: the receiver's reply is fresh randomness whatever its choices (a predictable
//!   receiver scalar would let the sender read the choices, which are IKNP's `Δ`), looks
//!   uniform for all-0 and all-1 choices, and the receiver cannot derive the other key from
//!   what it holds.
//! - IKNP: the sender's view (the `u` columns) looks uniform for any choice pattern; the
//!   receiver's outputs carry no global offset.
//! - Dealer-supplied OTs: every dealt value is uniform and fresh per batch.
//! - B2A, multiplexer, DReLU: every message a party receives looks uniform for fixed inputs.
//!
//! Statistics: see [`crate::view_test_util`] (fixed seeds, about `1e-7` false positives per
//! check).

use std::collections::HashSet;

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use rand_core::Rng;

use super::apps_test_util::{Ends, ends};
use super::base::{BASE_OT_COUNT, BaseOtSender, POINT_LEN, base_ot_receiver_reply, kdf};
use super::dealer::{DealerCotReceiver, DealerCotSender, deal_cot, deal_rot};
use super::iknp::{IknpConfig, IknpReceiver, IknpSender};
use super::{CotReceiver, CotSender, RotReceiver, RotSender};
use crate::block::Block;
use crate::channel::mem;
use crate::prg::Prg;
use crate::share::Party;
use crate::view_test_util::{
    BIT_PATTERNS, Recorder, assert_balanced, assert_uniform_bytes, assert_uniform_u64s,
};

fn block_bytes(v: &[Block]) -> Vec<u8> {
    v.iter().flat_map(|b| b.to_bytes()).collect()
}

/// The receiver's reply points for `choices` against sender `a`, with rng seed `seed`.
fn reply(a: &[u8; POINT_LEN], choices: &[bool], seed: u64) -> Vec<[u8; POINT_LEN]> {
    let (r, _) = base_ot_receiver_reply(&mut Prg::from_u64(seed), a, choices).unwrap();
    r.chunks_exact(POINT_LEN)
        .map(|c| c.try_into().unwrap())
        .collect()
}

/// The base-OT receiver's message is fresh randomness: two runs with the same choices and
/// different randomness share no point, and no point repeats within a run. (A receiver whose
/// scalars were predictable, `b_i = i + 1`, would send the same points every time, and the
/// sender could test `B_i − b_i·G ∈ {0, A}` to read every choice bit.)
#[test]
fn base_ot_receiver_message_is_fresh() {
    let s = BaseOtSender::new(&mut Prg::from_u64(1));
    let a = s.first_message();
    for choices in [vec![false; BASE_OT_COUNT], vec![true; BASE_OT_COUNT]] {
        let r1 = reply(&a, &choices, 2);
        let r2 = reply(&a, &choices, 3);
        let all: HashSet<[u8; POINT_LEN]> = r1.iter().chain(&r2).copied().collect();
        assert_eq!(all.len(), 2 * BASE_OT_COUNT, "reply points repeat");
    }
}

/// The sender's view of the receiver's reply looks the same for all-0 and all-1 choices:
/// uniform encodings (bytes 1..=30 of a canonical Ristretto encoding; byte 0's lowest bit and
/// byte 31's highest are always 0).
#[test]
fn base_ot_sender_view_is_independent_of_choices() {
    const N: usize = 1024;
    let s = BaseOtSender::new(&mut Prg::from_u64(4));
    let a = s.first_message();
    for (k, c) in [false, true].into_iter().enumerate() {
        let pts = reply(&a, &vec![c; N], 5 + k as u64);
        let bytes: Vec<u8> = pts.iter().flat_map(|p| p[1..31].iter().copied()).collect();
        assert_uniform_bytes(&bytes, &format!("base-OT reply points for choices all {c}"));
    }
}

/// The receiver holds `A`, its scalars `b_i`, the points `B_i` and `k_{c_i}`. Every key it can
/// form from them with the key derivation differs from the other key `k_{1−c_i}`, and the two
/// keys differ.
#[test]
fn base_ot_receiver_cannot_derive_the_other_key() {
    let mut prg = Prg::from_u64(6);
    let choices: Vec<bool> = (0..BASE_OT_COUNT)
        .map(|_| prg.next_u64() & 1 == 1)
        .collect();
    let s = BaseOtSender::new(&mut Prg::from_u64(7));
    let a_enc = s.first_message();
    let (rep, got) = base_ot_receiver_reply(&mut Prg::from_u64(8), &a_enc, &choices).unwrap();
    let keys = s.finish(&rep, BASE_OT_COUNT).unwrap();
    // Replay the receiver's randomness: its scalars.
    let mut replay = Prg::from_u64(8);
    let a = CompressedRistretto(a_enc).decompress().unwrap();
    let g = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    for i in 0..BASE_OT_COUNT {
        let b = Scalar::random(&mut replay);
        let enc = &rep[i * POINT_LEN..(i + 1) * POINT_LEN];
        let big_b = CompressedRistretto(enc.try_into().unwrap())
            .decompress()
            .unwrap();
        let c = choices[i] as usize;
        assert_eq!(got[i], keys[i][c]);
        assert_ne!(keys[i][0], keys[i][1], "OT {i}: equal keys");
        let candidates: [RistrettoPoint; 6] =
            [b * a, b * a - a, b * a + a, b * g, b * big_b, big_b];
        for p in candidates {
            assert_ne!(
                kdf(i, &a_enc, enc, &p),
                keys[i][1 - c],
                "OT {i}: other key derived"
            );
        }
    }
}

fn iknp_pair(seed: u64, chunk: usize) -> (IknpSender, IknpReceiver) {
    let cfg = IknpConfig::with_chunk(chunk).unwrap();
    let mut prg = Prg::from_u64(seed);
    let s = IknpSender::random(cfg.clone(), &mut prg);
    let r = IknpReceiver::new(cfg, &mut prg);
    (s, r)
}

/// The IKNP sender sees only the `u` columns (and derandomization bits): uniform for all-0,
/// all-1 and alternating choice bits.
#[tokio::test]
async fn iknp_sender_view_is_independent_of_choices() {
    const N: usize = 4096;
    for (k, (name, pat)) in BIT_PATTERNS.into_iter().enumerate() {
        let (mut s, mut r) = iknp_pair(20 + k as u64, N);
        let (c0, mut c1) = mem::pair();
        let mut c0 = Recorder::new(c0);
        let choices: Vec<bool> = (0..N).map(pat).collect();
        let (q, t) = tokio::join!(s.send_cot(&mut c0, N), r.recv_cot(&mut c1, &choices));
        let (q, t) = (q.unwrap(), t.unwrap());
        for i in 0..N {
            assert_eq!(t[i], q[i] ^ s.delta().select(choices[i]));
        }
        let u = c0.bytes_with("IKNP u matrix");
        assert_eq!(u.len(), 16 * N, "{name}: one u message of 128 columns");
        assert_uniform_bytes(&u, &format!("IKNP u columns, choices {name}"));
    }
}

/// The IKNP receiver's outputs carry no global offset: COT outputs are distinct and no two
/// XOR to `Δ`; random-OT message pairs are hashed, so their XORs are all different (a
/// constant XOR would be `Δ` itself).
#[tokio::test]
async fn iknp_receiver_cannot_derive_the_other_message() {
    const N: usize = 2000;
    let (mut s, mut r) = iknp_pair(30, 512);
    let (mut c0, mut c1) = mem::pair();
    let choices: Vec<bool> = (0..N).map(|i| i % 3 == 0).collect();
    let (q, t) = tokio::join!(s.send_cot(&mut c0, N), r.recv_cot(&mut c1, &choices));
    let (_q, t) = (q.unwrap(), t.unwrap());
    let delta = s.delta();
    let ts: HashSet<Block> = t.iter().copied().collect();
    assert_eq!(ts.len(), N);
    assert!(t.iter().all(|&x| !ts.contains(&(x ^ delta))));
    let (m, got) = tokio::join!(s.send_rot(&mut c0, N), r.recv_rot(&mut c1, N));
    let (m, (bits, got)) = (m.unwrap(), got.unwrap());
    let xors: HashSet<Block> = m.iter().map(|p| p[0] ^ p[1]).collect();
    assert_eq!(xors.len(), N, "random-OT message pairs share an offset");
    assert!(!xors.contains(&delta));
    for i in 0..N {
        assert_eq!(got[i], m[i][bits[i] as usize]);
        assert_ne!(got[i] ^ delta, m[i][1 - bits[i] as usize]);
    }
    let ones = bits.iter().filter(|&&b| b).count();
    assert_balanced(ones, N, "IKNP random-OT choice bits");
    let m1: Vec<Block> = m.iter().map(|p| p[1]).collect();
    assert_uniform_bytes(&block_bytes(&m1), "IKNP random-OT messages m1");
}

/// Dealt OTs: every value either party gets is uniform, batches differ, and the derandomization
/// bits the COT sender sees are uniform even for constant choices.
#[tokio::test]
async fn dealt_ots_are_uniform_and_fresh() {
    const N: usize = 2048;
    let mut dealer = Prg::from_u64(40);
    let delta = Block::random(&mut dealer);
    let (sp1, rp1) = deal_cot(&mut dealer, delta, N);
    let (sp2, rp2) = deal_cot(&mut dealer, delta, N);
    assert_ne!(sp1.seed, sp2.seed);
    assert_ne!(rp1.seed, rp2.seed);
    assert_ne!(sp1.seed, rp1.seed);
    assert_uniform_bytes(&block_bytes(&rp1.t), "dealt COT receiver values t");
    let mut s = DealerCotSender::new(delta);
    let mut r = DealerCotReceiver::new();
    s.add(sp1).unwrap();
    r.add(rp1);
    let (c0, mut c1) = mem::pair();
    let mut c0 = Recorder::new(c0);
    let zeros = vec![false; N];
    let (q, t) = tokio::join!(s.send_cot(&mut c0, N), r.recv_cot(&mut c1, &zeros));
    let (q, t) = (q.unwrap(), t.unwrap());
    assert_eq!(q, t, "choices all 0: t = q");
    assert_uniform_bytes(&block_bytes(&q), "dealt COT sender values q");
    // The sender saw the 9-byte call header and d = c ⊕ b = c: uniform bits.
    let msg = &c0.received[0].1;
    let d = &msg[9..];
    let ones: usize = d.iter().map(|b| b.count_ones() as usize).sum();
    assert_balanced(ones, N, "derandomization bits for constant choices");

    let (rs, rr) = deal_rot(&mut dealer, N);
    let (rs2, _) = deal_rot(&mut dealer, N);
    assert_ne!(rs.seed, rs2.seed);
    assert_uniform_bytes(&block_bytes(&rr.chosen), "dealt ROT chosen messages");
}

/// Splits `e` into its parts, wrapping P1's channel in a recorder.
fn recorded(
    seed: u64,
) -> (
    crate::channel::FramedChannel,
    Recorder<crate::channel::FramedChannel>,
    Ends,
) {
    let mut e = ends(seed);
    let (a, b) = mem::pair();
    let ch0 = std::mem::replace(&mut e.ch0, a);
    let ch1 = std::mem::replace(&mut e.ch1, b);
    (ch0, Recorder::new(ch1), e)
}

/// The payload of count-tagged messages (`one_of_n::send_packed`), tags stripped.
fn packed_payload(msgs: &[Vec<u8>]) -> Vec<u8> {
    msgs.iter().flat_map(|m| m[8..].iter().copied()).collect()
}

/// B2A and the multiplexer: the correction words a party receives are uniform for constant
/// inputs (they are one-time padded by `H(q ⊕ Δ)`).
#[tokio::test]
async fn b2a_and_mux_messages_are_uniform() {
    use super::b2a::{CotRole, b2a_bits, mux};
    use super::ideal::{IdealCotReceiver, IdealCotSender};
    const N: usize = 4096;
    let (mut ch0, mut ch1, mut e) = recorded(50);
    let ones = vec![true; N];
    let (x, y) = tokio::join!(
        b2a_bits::<_, IdealCotSender, IdealCotReceiver>(
            &mut ch0,
            CotRole::Sender(&mut e.cot_s01),
            &ones
        ),
        b2a_bits::<_, IdealCotSender, IdealCotReceiver>(
            &mut ch1,
            CotRole::Receiver(&mut e.cot_r01),
            &ones
        )
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    for i in 0..N {
        assert_eq!(x[i].wrapping_add(y[i]), 0, "1 ⊕ 1 = 0");
    }
    assert_uniform_bytes(
        &packed_payload(&ch1.bounded),
        "B2A corrections for constant bits",
    );

    ch1.clear();
    let xs = vec![7u64; N];
    let zero = vec![0u64; N];
    let falses = vec![false; N];
    let (a, b) = tokio::join!(
        mux(
            Party::P0,
            &mut ch0,
            &mut e.cot_s01,
            &mut e.cot_r10,
            &xs,
            &ones
        ),
        mux(
            Party::P1,
            &mut ch1,
            &mut e.cot_s10,
            &mut e.cot_r01,
            &zero,
            &falses
        )
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for i in 0..N {
        assert_eq!(a[i].wrapping_add(b[i]), 7);
    }
    assert_uniform_bytes(
        &packed_payload(&ch1.bounded),
        "mux corrections for constant inputs",
    );
    assert_uniform_u64s(&b, "P1's mux output shares");
}

/// DReLU: everything P1 receives (the digit OTs' tables, the Beaver AND openings) looks
/// uniform when both parties' shares are constant.
#[tokio::test]
async fn drelu_messages_are_uniform() {
    use super::ideal::{IdealRotReceiver, IdealRotSender};
    use super::millionaire::{DreluParams, RotRole, drelu, ideal_bit_triples};
    const N: usize = 4096;
    let (mut ch0, mut ch1, mut e) = recorded(60);
    let (mut t0, mut t1) = ideal_bit_triples([6; 32]);
    let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
    let x0 = vec![5u64; N];
    let x1 = vec![0u64; N];
    let p = DreluParams::exact(64);
    let (a, b) = tokio::join!(
        drelu(
            &mut ch0,
            RotRole::<IdealRotSender, IdealRotReceiver>::Sender(&mut e.rot_s01),
            &mut t0,
            &mut g0,
            &x0,
            p
        ),
        drelu(
            &mut ch1,
            RotRole::<IdealRotSender, IdealRotReceiver>::Receiver(&mut e.rot_r01),
            &mut t1,
            &mut g1,
            &x1,
            p
        )
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.iter().zip(&b).all(|(x, y)| x ^ y), "DReLU(5) = 1");
    let ones = b.iter().filter(|&&v| v).count();
    assert_balanced(ones, N, "P1's DReLU output shares");
    assert_uniform_bytes(
        &packed_payload(&ch1.bounded),
        "everything P1 receives in DReLU",
    );
}
