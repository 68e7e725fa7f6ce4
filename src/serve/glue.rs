//! Where the serving layer meets the secure engine ([`crate::secure`]): build each party's
//! protocol session from its peer channel and dealer link, run generation, close cleanly.

use std::sync::Arc;

use privlm_protocols::beaver::Prefetched;
use privlm_protocols::beaver::dealer::DealerClient;
use privlm_protocols::channel::FramedChannel;
use privlm_protocols::nonlinear::NlParams;
use privlm_protocols::prg::Prg;
use privlm_protocols::session::Session;
use privlm_protocols::share::Party;

use super::control::Offer;
use crate::model::Model;
use crate::secure::{CostReport, client_generate, server_generate};

type PartySession = Session<FramedChannel, Prefetched<DealerClient<FramedChannel>>>;

fn session(
    party: Party,
    ch: FramedChannel,
    dealer: DealerClient<FramedChannel>,
    nl: NlParams,
) -> Result<PartySession, String> {
    Session::new(party, ch, Prefetched::new(dealer), Prg::from_os(), nl).map_err(|e| e.to_string())
}

/// Closes the peer channel and the dealer link at message boundaries (the dealer ends the
/// session cleanly when both parties have closed).
async fn finish(s: PartySession) {
    let (ch, dealer) = s.into_parts();
    let dealer = dealer.into_inner().into_channel();
    let _ = tokio::join!(ch.close(), dealer.close());
}

/// The server's side of one session: its cost report.
pub(crate) async fn serve(
    ch: FramedChannel,
    dealer: DealerClient<FramedChannel>,
    model: Arc<Model>,
    nl: NlParams,
    prompt_len: usize,
    max_new: usize,
) -> Result<CostReport, String> {
    let s = session(Party::P1, ch, dealer, nl)?;
    let out = server_generate(s, &model, prompt_len, max_new)
        .await
        .map_err(|e| e.to_string())?;
    finish(out.session).await;
    Ok(out.report)
}

/// The client's side of one session: the generated tokens and the cost report.
pub(crate) async fn generate(
    ch: FramedChannel,
    dealer: DealerClient<FramedChannel>,
    offer: &Offer,
    nl: NlParams,
    prompt: &[u32],
    max_new: usize,
    on_token: &mut (dyn FnMut(u32) + Send),
) -> Result<(Vec<u32>, CostReport), String> {
    let s = session(Party::P0, ch, dealer, nl)?;
    let out = client_generate(s, &offer.manifest, prompt, max_new, on_token)
        .await
        .map_err(|e| e.to_string())?;
    finish(out.session).await;
    Ok((out.tokens, out.report))
}
