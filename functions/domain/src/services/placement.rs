//! Which media node a room's meetings run on. A room stays on its node while that node
//! lives; a new room goes to the less loaded of two live nodes picked at random ("power of
//! two random choices"), counting rooms placed there since the node's last heartbeat, so an
//! exam-morning burst spreads out instead of herding onto the node that looked emptiest.
//! A client that could not reach its node says so; if that node's heartbeat has also gone
//! quiet for [`retention::NODE_SUSPECT_AFTER`], the room moves at once instead of waiting
//! until the node's registry entry expires.

use super::{Aula, ServiceError, ServiceResult};
use crate::retention;
use crate::{MediaNode, Placement, RoomId};

/// How placement estimates and refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementPolicy {
    /// Participants a newly placed room is expected to bring (until the node's heartbeat
    /// reports them).
    pub room_weight: u32,
    /// What `Retry-After` says when every node is full.
    pub retry_after_secs: u64,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        PlacementPolicy {
            room_weight: 1,
            retry_after_secs: 15,
        }
    }
}

/// How many random pairs to try before calling the cluster full.
const ATTEMPTS: usize = 4;

impl Aula {
    /// The node the room's meetings run on, placing the room if it has no live node.
    /// `unreachable`: the address of a node the caller could not reach (or that stopped
    /// answering); it is passed over when its heartbeat is quiet too.
    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn place(
        &self,
        room: RoomId,
        policy: PlacementPolicy,
        unreachable: Option<&str>,
    ) -> ServiceResult<MediaNode> {
        let now = self.now();
        let mut nodes = self.store.live_nodes(now).await?;
        if let Some(address) = unreachable {
            nodes.retain(|n| {
                let suspect = n.address == address
                    && now.minus(retention::NODE_SUSPECT_AFTER) > n.last_heartbeat;
                if suspect {
                    tracing::warn!(node = %n.id, "a client reports the node unreachable and its heartbeat is quiet: passed over");
                }
                !suspect
            });
        }
        let current = self.store.placement(room, now).await?;
        if let Some(p) = &current
            && let Some(node) = nodes.iter().find(|n| n.id == p.node_id)
        {
            // Still there: renew, so a long exam day keeps its node.
            let renewed = Placement {
                placed_at: p.placed_at,
                expires_at: retention::placement_expiry(now),
                ..p.clone()
            };
            self.store
                .put_placement(&renewed, Some(p.node_id), now)
                .await?;
            return Ok(node.clone());
        }

        let open: Vec<&MediaNode> = nodes
            .iter()
            .filter(|n| n.load.saturating_add(policy.room_weight) <= n.capacity)
            .collect();
        let mut chosen = None;
        for attempt in 0..ATTEMPTS {
            let Some((a, b)) = self.two_of(open.len()) else {
                break;
            };
            let mut best: Option<(&MediaNode, u64)> = None;
            for node in [open[a], open[b]] {
                let pending = self
                    .store
                    .placed_on_since(node.id, node.last_heartbeat, now)
                    .await?;
                let estimate =
                    u64::from(node.load) + u64::from(pending) * u64::from(policy.room_weight);
                let fits = estimate + u64::from(policy.room_weight) <= u64::from(node.capacity);
                if fits && best.is_none_or(|(_, e)| estimate < e) {
                    best = Some((node, estimate));
                }
            }
            if let Some((node, _)) = best {
                chosen = Some(node.clone());
                break;
            }
            tracing::debug!(attempt, "both sampled nodes are full");
        }
        let Some(node) = chosen else {
            tracing::warn!(nodes = nodes.len(), "no media node can take a new room");
            return Err(ServiceError::NoCapacity {
                retry_after_secs: policy.retry_after_secs,
            });
        };

        let placement = Placement {
            room_id: room,
            node_id: node.id,
            placed_at: now,
            expires_at: retention::placement_expiry(now),
        };
        let replacing = current.map(|p| p.node_id);
        if self.store.put_placement(&placement, replacing, now).await? {
            tracing::info!(node = %node.id, "room placed");
            return Ok(node);
        }
        // Someone placed the room at the same moment: theirs counts.
        let winner = self
            .store
            .placement(room, now)
            .await?
            .and_then(|p| nodes.into_iter().find(|n| n.id == p.node_id));
        winner.ok_or(ServiceError::Internal("a concurrent placement vanished"))
    }

    /// Two different indices below `n` (the same one twice when `n` is 1), or `None`.
    fn two_of(&self, n: usize) -> Option<(usize, usize)> {
        if n == 0 {
            return None;
        }
        let r = self.ids.random_16();
        let x = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
        let y = u64::from_le_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
        let n64 = n as u64;
        let a = (x % n64) as usize;
        if n == 1 {
            return Some((0, 0));
        }
        // The second pick skips the first, so the two are always different.
        let b = ((a as u64 + 1 + y % (n64 - 1)) % n64) as usize;
        Some((a, b))
    }
}
