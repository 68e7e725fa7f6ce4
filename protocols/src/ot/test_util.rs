//! Generic two-party test harnesses, one per OT functionality, run against every
//! implementation (IKNP, dealer-supplied, ideal). Each runs both parties over an in-memory
//! channel pair, one call per size in sequence (so leftover state carries across calls), and
//! checks the correlation against a plaintext reference.

use rand_core::Rng;

use crate::block::Block;
use crate::channel::{Channel, mem};
use crate::prg::Prg;

use super::chosen::{RotBufferReceiver, RotBufferSender};
use super::{CotReceiver, CotSender, RotReceiver, RotSender};

fn random_bits(prg: &mut Prg, n: usize) -> Vec<bool> {
    (0..n).map(|_| prg.next_u64() & 1 == 1).collect()
}

/// Outputs look random: for n >= 64, not all the same.
fn assert_varied(blocks: &[Block], what: &str) {
    if blocks.len() >= 64 {
        assert!(
            blocks.iter().any(|b| *b != blocks[0]),
            "{what}: all outputs equal"
        );
    }
}

/// COT: `t_i = q_i ^ b_i·Δ`, `Δ` has lsb 1.
pub(crate) async fn check_cot<S: CotSender, R: CotReceiver>(s: &mut S, r: &mut R, sizes: &[usize]) {
    let (mut a, mut b) = mem::pair();
    let mut prg = Prg::from_u64(0xc07);
    let delta = s.delta();
    assert!(delta.lsb(), "delta must have lsb 1");
    for &n in sizes {
        let choices = random_bits(&mut prg, n);
        let (q, t) = tokio::join!(s.send_cot(&mut a, n), r.recv_cot(&mut b, &choices));
        let (q, t) = (q.expect("sender"), t.expect("receiver"));
        assert_eq!(q.len(), n);
        assert_eq!(t.len(), n);
        for i in 0..n {
            assert_eq!(t[i], q[i] ^ delta.select(choices[i]), "COT {i} of {n}");
        }
        assert_varied(&q, "COT q");
    }
    // Traffic: the COT sender sends nothing but (for OT extension) the base-OT receiver's
    // reply at setup, so nothing derived from its q_i or Δ reaches the receiver; the receiver
    // sends at most the documented IKNP cost (call header, derandomization bits, 128 bits per
    // fresh OT rounded up to whole chunks of 128, the base-OT sender's first message, frame
    // headers). Both directions match exactly what the peer received.
    let (sa, sb) = (a.stats().total(), b.stats().total());
    assert_eq!(sa.bytes_sent, sb.bytes_recv, "sender -> receiver bytes");
    assert_eq!(sb.bytes_sent, sa.bytes_recv, "receiver -> sender bytes");
    let frame = crate::channel::FRAME_HEADER_LEN as u64;
    let base_reply = (super::base::BASE_OT_COUNT * super::base::POINT_LEN) as u64 + frame;
    assert!(
        sa.bytes_sent <= base_reply,
        "the COT sender sent {} bytes; at most the base-OT reply ({base_reply}) is allowed",
        sa.bytes_sent
    );
    let per_call: u64 = sizes
        .iter()
        .map(|&n| {
            let n = n as u64;
            // Header, derandomization bits, u columns; at worst one frame per 128 OTs.
            9 + n.div_ceil(8) + 16 * 128 * n.div_ceil(128) + (3 + n.div_ceil(128)) * frame
        })
        .sum();
    let limit = per_call + super::base::POINT_LEN as u64 + frame;
    assert!(
        sb.bytes_sent <= limit,
        "the COT receiver sent {} bytes, more than the documented cost allows ({limit})",
        sb.bytes_sent
    );
}

/// ROT: the receiver's message equals the chosen one and differs from the other.
pub(crate) async fn check_rot<S: RotSender, R: RotReceiver>(s: &mut S, r: &mut R, sizes: &[usize]) {
    let (mut a, mut b) = mem::pair();
    for &n in sizes {
        let (m, got) = tokio::join!(s.send_rot(&mut a, n), r.recv_rot(&mut b, n));
        let (m, (bits, got)) = (m.expect("sender"), got.expect("receiver"));
        assert_eq!(m.len(), n);
        assert_eq!(bits.len(), n);
        assert_eq!(got.len(), n);
        for i in 0..n {
            let c = bits[i] as usize;
            assert_eq!(got[i], m[i][c], "ROT {i} of {n}");
            assert_ne!(got[i], m[i][1 - c], "ROT {i} of {n}: both messages equal");
        }
        if n >= 64 {
            assert!(
                bits.iter().any(|&x| x) && bits.iter().any(|&x| !x),
                "choice bits not random"
            );
        }
        let m0: Vec<Block> = m.iter().map(|p| p[0]).collect();
        assert_varied(&m0, "ROT m0");
    }
}

/// Chosen-message OT (128-bit, l-bit, correlated l-bit) over ROTs buffered in preprocessing.
pub(crate) async fn check_chosen<S: RotSender, R: RotReceiver>(s: S, r: R, sizes: &[usize]) {
    let (mut a, mut b) = mem::pair();
    let mut prg = Prg::from_u64(0xc405e);
    let mut s = RotBufferSender::new(s);
    let mut r = RotBufferReceiver::new(r);
    // Preprocess part of the need, so both the buffered path and the top-up path run.
    let pre = sizes.iter().sum::<usize>() / 2;
    let (x, y) = tokio::join!(s.preprocess(&mut a, pre), r.preprocess(&mut b, pre));
    x.unwrap();
    y.unwrap();
    assert_eq!(s.available(), pre);
    assert_eq!(r.available(), pre);
    for &n in sizes {
        let msgs: Vec<[Block; 2]> = (0..n)
            .map(|_| [Block::random(&mut prg), Block::random(&mut prg)])
            .collect();
        let choices = random_bits(&mut prg, n);
        let (x, got) = tokio::join!(
            s.send_chosen(&mut a, &msgs),
            r.recv_chosen(&mut b, &choices)
        );
        x.expect("sender");
        let got = got.expect("receiver");
        assert_eq!(got.len(), n);
        for i in 0..n {
            assert_eq!(got[i], msgs[i][choices[i] as usize], "chosen OT {i} of {n}");
        }
    }
    for bits in [1u32, 17, 64] {
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        };
        for &n in sizes.iter().take(4) {
            let msgs: Vec<[u64; 2]> = (0..n)
                .map(|_| [prg.next_u64() & mask, prg.next_u64() & mask])
                .collect();
            let choices = random_bits(&mut prg, n);
            let (x, got) = tokio::join!(
                s.send_chosen_u64(&mut a, &msgs, bits),
                r.recv_chosen_u64(&mut b, &choices, bits)
            );
            x.expect("sender");
            let got = got.expect("receiver");
            for i in 0..n {
                assert_eq!(
                    got[i], msgs[i][choices[i] as usize],
                    "l-bit OT {i}, l = {bits}"
                );
            }
            let deltas: Vec<u64> = (0..n).map(|_| prg.next_u64()).collect();
            let choices = random_bits(&mut prg, n);
            let (x0, got) = tokio::join!(
                s.send_correlated_u64(&mut a, &deltas, bits),
                r.recv_correlated_u64(&mut b, &choices, bits)
            );
            let (x0, got) = (x0.expect("sender"), got.expect("receiver"));
            for i in 0..n {
                let want = if choices[i] {
                    x0[i].wrapping_add(deltas[i]) & mask
                } else {
                    x0[i]
                };
                assert_eq!(got[i], want, "correlated OT {i}, l = {bits}");
                assert_eq!(x0[i] & !mask, 0);
            }
        }
    }
}

#[cfg(test)]
mod ideal_tests {
    use super::*;
    use crate::ot::ideal::{ideal_cot, ideal_rot};

    const SIZES: &[usize] = &[0, 1, 127, 128, 129, 1000];

    #[tokio::test]
    async fn ideal_cot_harness() {
        let (mut s, mut r) = ideal_cot([1; 32], Block(0xdead));
        check_cot(&mut s, &mut r, SIZES).await;
    }

    #[tokio::test]
    async fn ideal_rot_harness() {
        let (mut s, mut r) = ideal_rot([2; 32]);
        check_rot(&mut s, &mut r, SIZES).await;
    }

    #[tokio::test]
    async fn ideal_chosen_harness() {
        let (s, r) = ideal_rot([3; 32]);
        check_chosen(s, r, SIZES).await;
    }
}
