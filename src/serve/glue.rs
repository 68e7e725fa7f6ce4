//! Where the serving layer meets the secure engine (`crate::secure`, issue 11): build each
//! party's protocol session from its peer channel and dealer link, and run generation.
//!
//! Until the secure engine is merged into this branch, both functions refuse with a clear
//! error after the control exchange, the handshake and the dealer pairing have run.

use std::sync::Arc;

use privlm_protocols::beaver::dealer::DealerClient;
use privlm_protocols::channel::FramedChannel;
use privlm_protocols::nonlinear::NlParams;

use super::control::Offer;
use crate::model::Model;

/// What a finished generation cost (filled by the secure engine).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CostReport {}

const UNAVAILABLE: &str =
    "secure generation is not part of this build yet (the secure engine, issue 11)";

/// The server's side of one session.
pub(crate) async fn serve(
    mut ch: FramedChannel,
    dealer: DealerClient<FramedChannel>,
    _model: Arc<Model>,
    _offer: &Offer,
    _nl: NlParams,
    _max_new: usize,
) -> Result<(), String> {
    use privlm_protocols::channel::Channel;
    drop(dealer);
    ch.abort(UNAVAILABLE).await;
    Err(UNAVAILABLE.into())
}

/// The client's side of one session: the generated tokens and the cost report.
pub(crate) async fn generate(
    ch: FramedChannel,
    dealer: DealerClient<FramedChannel>,
    _offer: &Offer,
    _nl: NlParams,
    _prompt: &[u32],
    _max_new: usize,
    _on_token: &mut (dyn FnMut(u32) + Send),
) -> Result<(Vec<u32>, CostReport), String> {
    drop((ch, dealer));
    Err(UNAVAILABLE.into())
}
