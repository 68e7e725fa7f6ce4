//! Session setup: handshake over agreed parameters, framing limits, timeouts.
//!
//! Not yet implemented: see the Foundation issue.
