//! Two-party tests of the Beaver layer, truncation and the dealer.
