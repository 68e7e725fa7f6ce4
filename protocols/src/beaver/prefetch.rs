//! A provider that serves correlations fetched ahead of time, so the online phase does no
//! preprocessing work (and benches can time the online phase alone).
//!
//! Requests are served first-in first-out: each online request must equal the oldest prefetched
//! one, otherwise [`super::BeaverError::InvalidRequest`] names both. With nothing prefetched, a
//! request goes to the inner provider.

use std::collections::VecDeque;

use super::{BeaverError, Material, Request, TripleProvider};
use crate::share::Party;

/// Wraps a provider with a FIFO of prefetched material (see the module docs).
#[derive(Debug)]
pub struct Prefetched<P> {
    inner: P,
    queue: VecDeque<(Request, Material)>,
}

impl<P: TripleProvider> Prefetched<P> {
    /// Wraps `inner` with an empty queue.
    pub fn new(inner: P) -> Self {
        Prefetched {
            inner,
            queue: VecDeque::new(),
        }
    }

    /// Fetches `req` from the inner provider now and queues it for a later identical request.
    pub async fn prefetch(&mut self, req: Request) -> Result<(), BeaverError> {
        let m = self.inner.fetch(&req).await?;
        self.queue.push_back((req, m));
        Ok(())
    }

    /// Number of queued correlations.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The inner provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The inner provider, given back (queued material is dropped).
    pub fn into_inner(self) -> P {
        self.inner
    }

    /// The inner provider, mutable.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
}

impl<P: TripleProvider> TripleProvider for Prefetched<P> {
    fn party(&self) -> Party {
        self.inner.party()
    }

    fn set_cost_label(&mut self, phase: crate::channel::Phase, label: &str) {
        self.inner.set_cost_label(phase, label);
    }

    async fn fetch(&mut self, req: &Request) -> Result<Material, BeaverError> {
        match self.queue.pop_front() {
            Some((queued, m)) if &queued == req => Ok(m),
            Some((queued, _)) => Err(BeaverError::InvalidRequest(format!(
                "the online phase asked for {req:?} but the next prefetched correlation is \
                 {queued:?}"
            ))),
            None => self.inner.fetch(req).await,
        }
    }
}
