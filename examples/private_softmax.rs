//! A private softmax: two parties hold additive shares of attention scores and compute shares
//! of their causal softmax, neither learning the scores or the result.
//!
//! Both parties run in this one process over the in-memory channel pair, each with its own
//! protocol session (role, channel, correlation source, PRG, the nonlinear parameters); the
//! in-process (insecure, test-only) dealer stands in for `privlm-dealer`. The op is the one
//! every attention layer of the engine calls, on `[heads, rows, cols]` with the causal mask:
//! masked entries are never computed and come out 0. See `docs/protocols/nonlinear.md` for its
//! approximation and message flow.
//!
//! Run: `cargo run --release --example private_softmax`

use privlm::protocols::beaver::InsecureIdealDealer;
use privlm::protocols::channel::{Channel, Phase, mem};
use privlm::protocols::nonlinear::{Mask, NlParams, softmax};
use privlm::protocols::prg::Prg;
use privlm::protocols::ring::RingTensor;
use privlm::protocols::session::Session;
use privlm::protocols::share::{Party, reconstruct, split};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params = NlParams::default();
    // One head, 3 query rows over 3 keys (causal: row i sees keys 0..=i).
    let shape = [1usize, 3, 3];
    let scores = [0.5, 9.0, 9.0, 1.0, 2.0, 9.0, -1.0, 0.0, 3.0];
    let enc: Vec<u64> = scores.iter().map(|&x| params.enc(x)).collect();
    let mut rng = Prg::from_u64(1);
    let (x0, x1) = split(&RingTensor::from_vec(&shape, enc)?, &mut rng);

    let (c0, c1) = mem::pair();
    let (d0, d1) = InsecureIdealDealer::pair(7);
    let mut s0 = Session::new(Party::P0, c0, d0, Prg::from_u64(2), params)?;
    let mut s1 = Session::new(Party::P1, c1, d1, Prg::from_u64(3), params)?;
    s0.set_cost_label(Phase::Online, "example");
    s1.set_cost_label(Phase::Online, "example");
    let (y0, y1) = tokio::try_join!(
        softmax(&mut s0, &x0, Mask::Causal, None),
        softmax(&mut s1, &x1, Mask::Causal, None)
    )?;

    let secure: Vec<f64> = reconstruct(&y0, &y1)?
        .data()
        .iter()
        .map(|&v| params.dec(v))
        .collect();
    for (i, row) in secure.chunks(3).enumerate() {
        let keys = &scores[i * 3..i * 3 + i + 1];
        let m = keys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = keys.iter().map(|k| (k - m).exp()).sum();
        let plain: Vec<f64> = (0..3)
            .map(|j| if j <= i { (keys[j] - m).exp() / z } else { 0.0 })
            .collect();
        println!("row {i}: secure {row:.4?}  plain {plain:.4?}");
    }
    let c = s0.channel().stats().total();
    println!(
        "P0 sent {} bytes and received {} in {} round(s)",
        c.bytes_sent, c.bytes_recv, c.rounds
    );
    Ok(())
}
