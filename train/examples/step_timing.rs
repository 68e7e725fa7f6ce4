//! Times the parts of one training step (forward, loss, backward, optimizer) at the shipped
//! models' shape: `cargo run --release -p privlm-train --example step_timing -- [ARCH] [BATCH]`.

use std::time::Instant;

use candle_core::Tensor;
use privlm::entropy::RegularizerConfig;
use privlm::model::ModelConfig;
use privlm_train::model::{FfnNorm, InitSpec, TrainModel, cross_entropy};
use privlm_train::optim::{AdamW, AdamWConfig};
use privlm_train::regularizer::entropy_regularizer;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arch = args.get(1).map_or("EReg(SM(t)+ScFuFFN)", String::as_str);
    let batch: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let mut cfg = ModelConfig::gpt2_small(arch.parse()?, 128);
    (
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        cfg.d_ff,
        cfg.vocab_size,
    ) = (4, 4, 128, 512, 256);
    let model = TrainModel::new(&cfg, FfnNorm::None, InitSpec::default(), 1)?;
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 1,
            total: 100,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: 1.0,
        },
        &model.params,
    )?;
    let toks: Vec<u32> = (0..batch * 128).map(|i| (i * 7 % 256) as u32).collect();
    let x = Tensor::from_vec(toks.clone(), (batch, 128), model.device())?;
    let y = Tensor::from_vec(toks, batch * 128, model.device())?;
    let theta = model.param("reg.theta").unwrap().as_tensor().clone();
    for step in 0..12 {
        let t0 = Instant::now();
        let out = model.forward(&x)?;
        let t1 = Instant::now();
        let mut loss = cross_entropy(&out.logits, &y)?;
        if cfg.architecture.entropy_regularized {
            let r = entropy_regularizer(&RegularizerConfig::default(), &out.attn, &theta)?;
            loss = (loss + r.loss)?;
        }
        let _ = loss.to_scalar::<f32>()?;
        let t2 = Instant::now();
        let grads = loss.backward()?;
        let t3 = Instant::now();
        opt.step(&model.params, &grads, step)?;
        let t4 = Instant::now();
        println!(
            "{arch} batch {batch}: forward {:.0} ms, loss {:.0} ms, backward {:.0} ms, optimizer {:.0} ms; {:.0} tokens/s",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            (t4 - t3).as_secs_f64() * 1e3,
            (batch * 128) as f64 / (t4 - t0).as_secs_f64()
        );
    }
    Ok(())
}
