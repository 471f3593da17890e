//! Aula's SFU core. [`Sfu`] is a state machine: the media node feeds it signalling frames,
//! UDP datagrams and timeouts, each with an explicit `now`, and sends what it outputs.
//! Tests drive it the same way, without sockets or a wall clock.

mod allocator;
mod fanout;
mod forwarder;
pub mod media;
mod participant;
mod peer;
pub mod protocol;
mod quality;
pub mod rewrite;
mod room;
mod sfu;
pub mod speakers;
#[cfg(feature = "test-support")]
pub mod testing;

pub use sfu::{
    ConnId, Entropy, Input, Joining, KindStats, Output, Sfu, SfuConfig, SfuError, Stats,
};

/// A datagram to send.
pub use bytes::BytesMut as Datagram;
