//! One end of a peer connection in memory: an `rtc` peer connection with made-up addresses,
//! handed datagrams and timeouts on a simulated clock and drained after every call.

use super::HarnessError;
use crate::media::{self, MediaError};
use bytes::BytesMut;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_sender_only;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// The made-up address of the SFU's one UDP port (every SFU-side peer shares it, as in the
/// node).
pub const SFU_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7882);

/// A made-up client address: one per connection, so the SFU can route by source address.
pub fn client_addr(i: usize) -> Result<SocketAddr, HarnessError> {
    let port = u16::try_from(20_000 + i)
        .map_err(|_| HarnessError::Harness("too many connections for made-up ports".into()))?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// A client peer connection (a browser's stand-in): full ICE with one host candidate, the
/// node's codecs, extensions and interceptors, plus transport-wide sequence numbers on what
/// it sends, as browsers put them (so the SFU side produces TWCC feedback as in real life).
pub fn client_pc(now: Instant, addr: SocketAddr) -> Result<RTCPeerConnection, MediaError> {
    let (mut engine, registry) = media::engine_and_interceptors()?;
    let registry = configure_twcc_sender_only(registry, &mut engine)?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    media::add_host_candidate(&mut pc, addr)?;
    Ok(pc)
}

/// A peer connection and the addresses its datagrams travel between.
pub struct Endpoint {
    pub pc: RTCPeerConnection,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    connected: bool,
    deadline: Option<Instant>,
}

impl Endpoint {
    pub fn new(pc: RTCPeerConnection, now: Instant, local: SocketAddr, remote: SocketAddr) -> Self {
        Endpoint {
            pc,
            local,
            remote,
            connected: false,
            deadline: Some(now),
        }
    }

    /// Hands in a datagram from the other end (copied into the connection's own buffer, as
    /// the node does from its socket buffer).
    pub fn receive(&mut self, now: Instant, data: &[u8]) -> Result<(), HarnessError> {
        self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: self.remote,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        })?;
        Ok(())
    }

    pub fn timeout(&mut self, now: Instant) -> Result<(), HarnessError> {
        self.pc.handle_timeout(now)?;
        Ok(())
    }

    /// Moves out the datagrams the connection wants sent, what it received and its events,
    /// and runs its timers up to `now`. A failed connection is an error: nothing in memory
    /// is lost, so a failure is a bug.
    pub fn poll(
        &mut self,
        now: Instant,
        out: &mut Vec<BytesMut>,
        received: &mut Vec<RTCMessage>,
        events: &mut Vec<RTCPeerConnectionEvent>,
    ) -> Result<(), HarnessError> {
        // A few rounds at most: a timer due now may queue more output.
        for _ in 0..16 {
            while let Some(ev) = self.pc.poll_event() {
                match &ev {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                        RTCPeerConnectionState::Connected,
                    ) => self.connected = true,
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                        RTCPeerConnectionState::Failed,
                    )
                    | RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                        RTCIceConnectionState::Failed,
                    ) => {
                        return Err(HarnessError::Harness(format!(
                            "the peer connection at {} failed",
                            self.local
                        )));
                    }
                    _ => {}
                }
                events.push(ev);
            }
            while let Some(msg) = self.pc.poll_read() {
                received.push(msg.message);
            }
            while let Some(w) = self.pc.poll_write() {
                if w.transport.peer_addr != self.remote {
                    return Err(HarnessError::Harness(format!(
                        "{} sent to {}, not its peer {}",
                        self.local, w.transport.peer_addr, self.remote
                    )));
                }
                out.push(w.message);
            }
            self.deadline = self.pc.poll_timeout();
            match self.deadline {
                Some(d) if d <= now => self.pc.handle_timeout(now)?,
                _ => break,
            }
        }
        Ok(())
    }

    /// When the connection wants [`Endpoint::timeout`] next (as of the last poll).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// DTLS is up: media can flow.
    pub fn connected(&self) -> bool {
        self.connected
    }
}
