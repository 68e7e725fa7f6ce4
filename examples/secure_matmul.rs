//! A first look at the API: two parties multiply secret-shared fixed-point matrices.
//!
//! Both parties run in this one process over the in-memory channel pair, with the in-process
//! (insecure, test-only) dealer standing in for `privlm-dealer`. The steps are the ones every
//! linear layer of the engine takes: encode, share, one Beaver matrix product (one opening
//! each way), one truncation (one more opening), reconstruct, decode.
//!
//! Run: `cargo run --release --example secure_matmul`

use privlm::protocols::beaver::InsecureIdealDealer;
use privlm::protocols::beaver::ops::{BilinearOp, beaver};
use privlm::protocols::channel::{Channel, Phase, mem};
use privlm::protocols::prg::Prg;
use privlm::protocols::ring::{FixedPoint, RingTensor};
use privlm::protocols::share::{reconstruct, split};
use privlm::protocols::trunc::trunc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fp = FixedPoint::default();
    let x = [1.5, -2.0, 0.25, 3.0, 0.5, -1.0];
    let w = [0.5, 1.0, -1.5, 2.0, 0.75, -0.25];
    let xt = RingTensor::encode(&[2, 3], &x, fp)?;
    let wt = RingTensor::encode(&[3, 2], &w, fp)?;

    // Secret-share both operands (in a deployment each owner shares its own input).
    let mut rng = Prg::from_u64(1);
    let (x0, x1) = split(&xt, &mut rng);
    let (w0, w1) = split(&wt, &mut rng);

    let (mut c0, mut c1) = mem::pair();
    c0.set_phase(Phase::Online);
    c1.set_phase(Phase::Online);
    let (mut d0, mut d1) = InsecureIdealDealer::pair(7);
    let f = fp.frac_bits();
    let (y0, y1) = tokio::try_join!(
        async {
            let y = beaver(&mut c0, &mut d0, BilinearOp::MatMul, &x0, &w0).await?;
            trunc(&mut c0, &mut d0, &y, f).await
        },
        async {
            let y = beaver(&mut c1, &mut d1, BilinearOp::MatMul, &x1, &w1).await?;
            trunc(&mut c1, &mut d1, &y, f).await
        }
    )?;

    let secure = reconstruct(&y0, &y1)?.decode(fp);
    let plain = xt.matmul(&wt)?.shr_signed(f).decode(fp);
    println!("secure  X W = {secure:?}");
    println!("plain   X W = {plain:?}");
    let sent = c0.stats().total();
    println!(
        "P0 sent {} bytes in {} messages, {} round(s)",
        sent.bytes_sent, sent.msgs_sent, sent.rounds
    );
    Ok(())
}
