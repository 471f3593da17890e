//! Every call the harness makes into [`Sfu`], and nothing else: everything goes in through
//! the one [`Sfu::handle_input`], as from the node.

use crate::protocol::ClientMessage;
use crate::{ConnId, Input, Joining, Output, Sfu, Stats};
use std::net::SocketAddr;
use std::time::Instant;

pub(super) fn join(sfu: &mut Sfu, now: Instant, conn: ConnId, joining: Joining) {
    sfu.handle_input(now, Input::Join { conn, joining });
}

pub(super) fn message(sfu: &mut Sfu, now: Instant, conn: ConnId, message: ClientMessage) {
    sfu.handle_input(now, Input::Message { conn, message });
}

/// The signalling connection closed (the node calls this when a WebSocket ends).
pub(super) fn leave(sfu: &mut Sfu, now: Instant, conn: ConnId) {
    sfu.handle_input(now, Input::Leave { conn });
}

pub(super) fn datagram(sfu: &mut Sfu, now: Instant, from: SocketAddr, data: &[u8]) {
    sfu.handle_input(now, Input::Datagram { from, data });
}

pub(super) fn timeout(sfu: &mut Sfu, now: Instant) {
    sfu.handle_input(now, Input::Timeout);
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
