//! Every call the harness makes into [`Sfu`], and nothing else: when the SFU's API changes
//! (one `handle_input` in place of these methods), this file is the one to adapt.

use crate::protocol::ClientMessage;
use crate::{ConnId, Joining, Output, Sfu, Stats};
use std::net::SocketAddr;
use std::time::Instant;

pub(super) fn join(sfu: &mut Sfu, now: Instant, conn: ConnId, joining: Joining) {
    sfu.join(now, conn, joining);
}

pub(super) fn message(sfu: &mut Sfu, now: Instant, conn: ConnId, message: ClientMessage) {
    sfu.handle_message(now, conn, message);
}

/// The signalling connection closed (the node calls this when a WebSocket ends).
pub(super) fn leave(sfu: &mut Sfu, now: Instant, conn: ConnId) {
    sfu.leave(now, conn);
}

pub(super) fn datagram(sfu: &mut Sfu, now: Instant, from: SocketAddr, data: &[u8]) {
    sfu.handle_datagram(now, from, data);
}

pub(super) fn timeout(sfu: &mut Sfu, now: Instant) {
    sfu.handle_timeout(now);
}

pub(super) fn next_timeout(sfu: &mut Sfu) -> Option<Instant> {
    sfu.poll_timeout()
}

pub(super) fn output(sfu: &mut Sfu) -> Option<Output> {
    sfu.poll_output()
}

pub(super) fn stats(sfu: &Sfu) -> Stats {
    sfu.stats()
}
