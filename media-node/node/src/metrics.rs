//! The node's Prometheus endpoint: rooms, participants, forwarded packets and bytes, loss,
//! and the load figure placement and auto-scaling use.

use aula_sfu::Stats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Handles to the node's metrics; cheap to clone, updated from the media loop.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    rooms: Gauge,
    participants: Gauge,
    waiting: Gauge,
    load: Gauge,
    draining: Gauge,
    forwarded_packets: Family<KindLabel, Counter>,
    forwarded_bytes: Family<KindLabel, Counter>,
    received_packets: Family<KindLabel, Counter>,
    lost_packets: Family<KindLabel, Counter>,
    keyframe_requests: Counter,
    slow_clients_dropped: Counter,
    loss_ratio: Gauge<f64, AtomicU64>,
    last: Arc<std::sync::Mutex<Stats>>,
}

impl Metrics {
    pub fn new(capacity: u32) -> Self {
        let mut r = Registry::with_prefix("aula_media");
        let rooms = register(
            &mut r,
            "rooms",
            "Rooms with a meeting on this node",
            Gauge::default(),
        );
        let participants = register(
            &mut r,
            "participants",
            "Participants in meetings on this node (not counting the lobby)",
            Gauge::default(),
        );
        let waiting = register(
            &mut r,
            "lobby",
            "Guests knocking in a lobby on this node",
            Gauge::default(),
        );
        let load = register(
            &mut r,
            "load",
            "The load figure placement and auto-scaling use: participants, lobby included",
            Gauge::default(),
        );
        let capacity_gauge: Gauge = register(
            &mut r,
            "capacity",
            "Participants this node takes at most",
            Gauge::default(),
        );
        capacity_gauge.set(i64::from(capacity));
        let draining = register(
            &mut r,
            "draining",
            "1 while the node drains before shutting down",
            Gauge::default(),
        );
        let forwarded_packets = register(
            &mut r,
            "forwarded_packets",
            "RTP packets forwarded to subscribers",
            Family::default(),
        );
        let forwarded_bytes = register(
            &mut r,
            "forwarded_bytes",
            "RTP payload bytes forwarded to subscribers",
            Family::default(),
        );
        let received_packets = register(
            &mut r,
            "received_packets",
            "RTP packets received from publishers",
            Family::default(),
        );
        let lost_packets = register(
            &mut r,
            "lost_packets",
            "RTP packets publishers sent that never arrived (sequence gaps)",
            Family::default(),
        );
        let keyframe_requests = register(
            &mut r,
            "keyframe_requests",
            "Keyframe requests (PLI) sent to publishers",
            Counter::default(),
        );
        let slow_clients_dropped = register(
            &mut r,
            "slow_clients_dropped",
            "Clients dropped because they stopped reading their signalling frames",
            Counter::default(),
        );
        let loss_ratio = register(
            &mut r,
            "loss_ratio",
            "Share of publishers' packets lost on the way in, since start",
            Gauge::default(),
        );
        Metrics {
            registry: Arc::new(r),
            rooms,
            participants,
            waiting,
            load,
            draining,
            forwarded_packets,
            forwarded_bytes,
            received_packets,
            lost_packets,
            keyframe_requests,
            slow_clients_dropped,
            loss_ratio,
            last: Arc::default(),
        }
    }

    /// Takes a snapshot of the SFU's counters; counters only ever grow.
    pub fn observe(&self, now: &Stats, draining: bool) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        self.rooms.set(now.rooms as i64);
        self.participants.set(now.participants as i64);
        self.waiting.set(now.waiting as i64);
        self.load.set(now.load() as i64);
        self.draining.set(i64::from(draining));
        for (kind, n, l) in [
            ("audio", &now.audio, &last.audio),
            ("video", &now.video, &last.video),
        ] {
            let label = KindLabel { kind };
            self.forwarded_packets
                .get_or_create(&label)
                .inc_by(n.forwarded_packets.saturating_sub(l.forwarded_packets));
            self.forwarded_bytes
                .get_or_create(&label)
                .inc_by(n.forwarded_bytes.saturating_sub(l.forwarded_bytes));
            self.received_packets
                .get_or_create(&label)
                .inc_by(n.received_packets.saturating_sub(l.received_packets));
            self.lost_packets
                .get_or_create(&label)
                .inc_by(n.lost_packets.saturating_sub(l.lost_packets));
        }
        self.keyframe_requests
            .inc_by(now.keyframe_requests.saturating_sub(last.keyframe_requests));
        let received = now.audio.received_packets + now.video.received_packets;
        let lost = now.audio.lost_packets + now.video.lost_packets;
        if received + lost > 0 {
            self.loss_ratio.set(lost as f64 / (received + lost) as f64);
        }
        *last = now.clone();
    }

    pub fn slow_client_dropped(&self) {
        self.slow_clients_dropped.inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Registers a metric and hands back the handle the media loop updates.
fn register<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}
