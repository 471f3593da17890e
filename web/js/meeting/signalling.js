// The signalling WebSocket to the room's media node: joining with the grant, reconnecting,
// and one handler per frame the node sends, in the order of its protocol
// (media-node/sfu/src/protocol.rs, `ServerMessage`; described in media-node/README.md).
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { ApiError, post } from '../api.js';
import { t } from '../i18n.js';
import { errorText, h, toast } from '../ui.js';

const PROTOCOL_VERSION = 1;
/** A node that has not welcomed us this long after the grant is treated as unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;
/** A media connection that stays `disconnected` this long is treated as gone: a hung node
 * never closes the WebSocket, and the browser's close handshake takes over a minute. */
const DISCONNECTED_GRACE_MS = 4_000;
/** A `ping` goes to the node this often; the node is given up when one stays unanswered
 * (and nothing else came) for SILENCE_MS while no media arrived either in the last
 * PING_EVERY_MS: a hung node closes nothing, and ICE consent takes longer to notice. (A
 * node on a machine starved of CPU has been seen silent on signalling for 3 s and back
 * after; its media went on, so it is not given up. A page that gives up a node that still
 * lives rejoins the same node: the portal's health check of it answers.) */
const PING_EVERY_MS = 500;
const SILENCE_MS = 2_000;
/** A media connection whose last this many connectivity checks (the browser's STUN
 * requests, about one a second once one goes unanswered) all went unanswered, over at least
 * UNANSWERED_MS, is treated as disconnected. The browser's own verdict comes after 5–6 s on
 * an idle machine and has taken over 10 s on a loaded one; a node that lost our packets
 * answers nothing, while three checks in a row lost on a poor line are rare (at 3 % loss,
 * one in 37,000). The time matters on a fresh connection, whose checks go out every half
 * second or faster: a node busy for a second is not a lost one. */
const UNANSWERED_CHECKS = 3;
const UNANSWERED_MS = 2_500;
/** The portal keeps naming a node we lost while it answers its health check (our own
 * network, or a moment's hiccup, may be what failed): ask again this many times, about
 * every 0.75 s, before trying that node once more. */
const SAME_NODE_ASKS = 4;
/** After joining again, people not (yet) on the new node keep their tiles this long: the
 * class reconnects within seconds, and what one sees should not reset meanwhile. */
const REJOIN_GRACE_MS = 5_000;
/** After a move, the old node's connections stay this long once every tile plays from the
 * new node: ours are what the others still watch and hear until their own new connection
 * delivers, which comes up at about the time their new media reaches us. */
const MOVE_OVERLAP_MS = 3_000;
/** ...but no longer than this after the move (the node ends them itself once its drain
 * time is up). */
const MOVE_KEEP_MAX_MS = 20_000;
/** During a move, how often the tiles look whether the new node's tracks deliver yet. */
const SWITCH_EVERY_MS = 250;

/** Media not up this long after the welcome: say that the direct way did not work and what
 * is tried instead (a TURN relay over TCP), rather than "Verbinde …" for ten seconds. */
const CHECKING_SLOW_MS = 4_000;

/** Waits before the `n`th new attempt when the network blocked media: 10 s, 20 s, 40 s,
 * then every minute. A firewall does not open by itself; hammering it helps nobody. */
export function blockedDelay(n) {
  return Math.min(10_000 * 2 ** Math.min(n - 1, 3), 60_000);
}

/** Waits before the `retry`th attempt: up to 0.25 s, doubling, capped at 15 s, spread over
 * the upper four fifths of that so a class that lost its node does not come back in one
 * instant. The first is short: a lost node is noticed late already (every second of it is a
 * second without sound and picture), and the portal answers a report of it at once (its
 * health check); a quarter of a second still spreads a class's grants. */
export function retryDelay(retry) {
  const ceiling = Math.min(250 * 2 ** Math.min(retry - 1, 6), 15_000);
  return ceiling / 5 + Math.random() * ((ceiling * 4) / 5);
}

/** What the meeting's connection did lately, with the time (`window.__aulaTrace`): for tests
 * and for debugging in the console, where the seconds of a reconnect went. */
const TRACE_KEPT = 300;

/** A wait in words: seconds under a minute, else whole minutes (rounded up). */
function duration(secs) {
  if (secs < 60) return t('seconds', Math.max(5, Math.ceil(secs / 5) * 5));
  const min = Math.ceil(secs / 60);
  return min === 1 ? t('minutes_1') : t('minutes', min);
}

export class Signalling {
  trace(what) {
    const log = (window.__aulaTrace ||= []);
    log.push({ at: Date.now(), what });
    if (log.length > TRACE_KEPT) log.splice(0, log.length - TRACE_KEPT);
  }

  /** Every media node is full: the room has a place in the portal's queue. Ask again when
   * the portal says (spread a little, so a class does not ask in step) and say where we are. */
  waitInQueue(q) {
    this.trace(`queued: place ${q.place ?? '-'}, position ${q.position}`);
    let text;
    if (q.place == null) text = t('queue_teacher');
    else if (q.estimate_secs != null) text = t('queue_place_estimate', q.position, duration(q.estimate_secs));
    else text = t('queue_place', q.position);
    this.setState(this.retry ? 'reconnecting' : 'joining', text);
    const wait = (Number(q.retry_after_secs) || 2) * (0.8 + Math.random() * 0.4);
    this.timer = setTimeout(() => this.connect(), wait * 1000);
  }

  async connect() {
    if (this.closed) return;
    // The node we lost, or the one we leave in a move: the portal passes it over when its
    // health check fails (a draining node's does), even while the registry still lists it.
    const leaving = this.lostNode || this.movingFrom?.url || null;
    this.trace(`grant asked${this.lostNode ? ` (lost ${this.lostNode})` : leaving ? ` (leaving ${leaving})` : ''}`);
    // A planned move says so until the new node's media is up.
    const moving = this.movingFrom ? t('state_moving') : undefined;
    this.setState(this.retry ? 'reconnecting' : 'joining', moving);
    let grant;
    try {
      // Naming the node we lost lets the portal move the room at once if that node's
      // heartbeat has gone quiet too (instead of after its registry entry expires).
      grant = await post(`/api/rooms/${this.room}/join`, leaving ? { unreachable: leaving } : {});
    } catch (e) {
      if (e instanceof ApiError && e.code === 'no_capacity') {
        // Spread over up to half as long again: refused pupils must not all return at once.
        const wait = (Number(e.retryAfter) || 10) * (1 + Math.random() / 2);
        this.setState('reconnecting', t('node_full', Math.ceil(wait)));
        this.timer = setTimeout(() => this.connect(), wait * 1000);
        return;
      }
      if (e instanceof ApiError && e.code === 'denied') return this.bye('denied');
      if (e instanceof ApiError && (e.status === 401 || e.status === 404)) return this.bye('denied');
      this.trace(`grant failed: ${e.message || e}`);
      return this.reconnectLater();
    }
    if (grant && !grant.grant && grant.position !== undefined) return this.waitInQueue(grant);
    this.trace(`grant for ${grant.node_url}`);
    if (grant.node_url === leaving && (this.sameNodeAsks || 0) < SAME_NODE_ASKS) {
      this.sameNodeAsks = (this.sameNodeAsks || 0) + 1;
      this.timer = setTimeout(() => this.connect(), 500 + Math.random() * 500);
      return;
    }
    this.me = grant.participant;
    this.role = grant.role;
    // TURN relays (UDP, TCP, TLS) for networks that block UDP to the node; the credentials
    // expire with the grant, so a connection made later asks for new ones (iceServers()).
    this.ice = { servers: grant.ice_servers || [], expires: grant.expires_at };
    this.endButton.hidden = this.role !== 'moderator';
    let ws;
    try {
      ws = new WebSocket(grant.node_url);
    } catch (e) {
      // A URL the page may not open (its content security policy) or cannot parse.
      toast(errorText(e), 'error');
      return this.reconnectLater();
    }
    this.ws = ws;
    // A new connection gets a queue of its own: a handler of the old one that never settles
    // (seen once in CI after a UDP cut: the page then never read a welcome again and rejoined
    // every 12 s) must not hold up this connection's frames. The old one's frames are ignored.
    this.queue = Promise.resolve();
    this.nodeUrl = grant.node_url;
    this.welcomed = false;
    this.mediaEverUp = false;
    this.expectMedia(ws);
    ws.onopen = () => this.trace('signalling open') || ws.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, room: this.room, grant: grant.grant }));
    ws.onmessage = (e) => {
      this.heardAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      // One frame after the other: an offer must be answered before the next is applied.
      this.queue = (this.queue || Promise.resolve())
        .then(() => (this.ws === ws && !this.closed ? this.onFrame(frame) : null))
        .catch((err) => toast(errorText(err), 'error'));
    };
    ws.onclose = () => {
      this.trace('signalling closed');
      // After the frames that came before the close (a farewell among them).
      this.queue = (this.queue || Promise.resolve()).then(() => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.closePeers();
        if (!this.closed && !this.farewell) {
          this.lostNode = this.nodeUrl;
          this.reconnectLater();
        }
      });
    };
  }

  reconnectLater(delay) {
    if (this.closed) return;
    this.retry += 1;
    if (delay === undefined) {
      this.setState('reconnecting', this.movingFrom ? t('state_moving') : undefined);
      delay = retryDelay(this.retry);
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Gives up `ws`'s node unless, within CONNECT_TIMEOUT_MS, it has welcomed us (or put us
   * in the lobby) and our media connections are up. A node that welcomed us but whose media
   * never arrives is reachable: the network between is what blocks (mediaBlocked). */
  expectMedia(ws) {
    clearTimeout(this.connectTimer);
    clearTimeout(this.slowTimer);
    this.slowTimer = setTimeout(() => {
      if (this.ws === ws && this.welcomed && !this.mediaUp() && this.status.dataset.state === 'joining') {
        this.setState('joining', t(this.ice?.servers.length ? 'state_checking_relay' : 'state_checking'));
      }
    }, CHECKING_SLOW_MS);
    this.connectTimer = setTimeout(() => {
      if (this.ws !== ws || (this.welcomed && this.mediaUp())) return;
      if (this.welcomed && !this.mediaEverUp) this.mediaFailed();
      else this.dropConnection({ why: 'no welcome or media in time' });
    }, CONNECT_TIMEOUT_MS);
  }

  /** The node welcomed us but media never came up. Where media never flowed on this page (or
   * failed three times running) and not one check got an answer, the network is what blocks
   * it (mediaBlocked); otherwise (it flowed a moment ago: the node is the likelier cause; or
   * checks were answered: it is slow) join again at once, naming the node as lost so the
   * room can move. */
  async mediaFailed() {
    const ws = this.ws;
    this.mediaFailures = (this.mediaFailures || 0) + 1;
    const suspect = !this.hadMedia || this.mediaFailures >= 3;
    const blocked = suspect && (await this.noAnswerGotThrough());
    if (this.ws !== ws) return;
    if (blocked) this.mediaBlocked();
    else this.dropConnection({ why: 'media failed' });
  }

  /** Whether not one connectivity check of our media connections was answered: then the
   * network drops what we send to the node (or its answers). A check that was answered means
   * the way is open and something else is slow (a busy computer, the handshake after it). */
  async noAnswerGotThrough() {
    const pcs = [this.publishPc, this.subscribePc].filter(Boolean);
    if (pcs.length === 0) return false;
    for (const pc of pcs) {
      try {
        const stats = await pc.getStats();
        for (const r of stats.values()) if (r.type === 'candidate-pair' && r.responsesReceived > 0) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  /** Media cannot pass this network (signalling can): says so in words, with what was tried,
   * and tries again later, ever less often, saying when. */
  mediaBlocked() {
    if (this.closed || this.farewell) return;
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.connectTimer);
    clearTimeout(this.slowTimer);
    clearTimeout(this.disconnectedTimer);
    this.disconnectedTimer = null;
    ws?.close();
    this.closePeers();
    this.blockedTries = (this.blockedTries || 0) + 1;
    const key = this.ice?.servers.length ? 'state_blocked_relay' : 'state_blocked';
    const until = Date.now() + blockedDelay(this.blockedTries);
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.setState('blocked', t(key, left));
      if (left === 0) return this.connect();
      this.timer = setTimeout(tick, 1000);
    };
    clearTimeout(this.timer);
    tick();
  }

  /** Gives up the node now (its connection failed, it hangs, or it asked us to move) and
   * joins again; `moving`: a planned move, said as such and without waiting. */
  dropConnection({ moving = false, why = 'lost' } = {}) {
    if (this.closed || this.farewell) return;
    this.trace(`node given up: ${moving ? 'moving' : why}`);
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectedTimer);
    this.disconnectedTimer = null;
    if (moving) {
      // The node forwards until this connection closes: the class stays seen and heard
      // through it until the new node's media is up (finishMove).
      this.finishMove();
      const from = { ws, url: this.nodeUrl, pcs: [this.publishPc, this.subscribePc], counts: null, flowing: null };
      this.movingFrom = from;
      from.timer = setTimeout(() => this.finishMove(), MOVE_KEEP_MAX_MS);
      from.poll = setInterval(() => this.switchOver(from), SWITCH_EVERY_MS);
      this.publishPc = null;
      this.subscribePc = null;
      this.setState('reconnecting', t('state_moving'));
      // A short spread: the whole room moves at once.
      this.reconnectLater(Math.random() * 200);
      return;
    }
    ws?.close();
    this.closePeers();
    this.lostNode = this.nodeUrl;
    this.reconnectLater();
  }

  /** The connections among ours whose last UNANSWERED_CHECKS connectivity checks went
   * unanswered over UNANSWERED_MS. Per connection, `this.checks` keeps the responses seen,
   * and when the last one was seen and how many requests had gone out then. */
  async unansweredConnections(subscribeStats) {
    this.checks ||= new WeakMap();
    const unanswered = [];
    const publishing = this.publishPc && this.sources?.size > 0 ? this.publishPc : null;
    for (const pc of [publishing, this.subscribePc]) {
      if (!pc || pc.connectionState !== 'connected') continue;
      const stats = pc === this.subscribePc ? subscribeStats : await pc.getStats().catch(() => null);
      if (!stats) continue;
      let selected = null;
      stats.forEach((r) => {
        if (r.type === 'transport' && r.selectedCandidatePairId) selected = stats.get(r.selectedCandidatePairId);
      });
      if (!selected) stats.forEach((r) => r.type === 'candidate-pair' && r.nominated && (selected ||= r));
      if (!selected) continue;
      const seen = this.checks.get(pc);
      const requests = selected.requestsSent || 0;
      const responses = selected.responsesReceived || 0;
      if (!seen || seen.pair !== selected.id || responses > seen.responses) {
        this.checks.set(pc, { pair: selected.id, responses, requestsThen: requests, at: Date.now() });
      } else if (requests - seen.requestsThen >= UNANSWERED_CHECKS && Date.now() - seen.at >= UNANSWERED_MS) {
        unanswered.push(pc);
      }
    }
    return unanswered;
  }

  /** Media bytes received so far on the subscribe connection (0 without one), in its
   * `stats`. */
  bytesReceived(stats) {
    let bytes = 0;
    stats?.forEach((r) => {
      if (r.type === 'inbound-rtp') bytes += r.bytesReceived || 0;
    });
    return bytes;
  }

  /** What a move kept of the old node, and which of its tracks still deliver: `counts`,
   * frames decoded (video) or packets received (audio) per track at the last look; `flowing`,
   * the tracks whose count grew since (null before a second look: all of them, then). */
  async switchOver(from) {
    if (this.movingFrom !== from) return;
    const delivered = async (pc) => {
      const counts = new Map();
      (await pc?.getStats().catch(() => null))?.forEach((r) => {
        if (r.type !== 'inbound-rtp' || !r.trackIdentifier) return;
        counts.set(r.trackIdentifier, (r.kind === 'video' ? r.framesDecoded : r.packetsReceived) || 0);
      });
      return counts;
    };
    const [old, fresh] = await Promise.all([delivered(from.pcs[1]), delivered(this.subscribePc)]);
    if (this.movingFrom !== from) return;
    if (from.counts) from.flowing = new Set([...old].filter(([id, n]) => n > (from.counts.get(id) ?? n)).map(([id]) => id));
    from.counts = old;
    from.arrived = new Set([...fresh].filter(([, n]) => n > 0).map(([id]) => id));
    this.attachTracks();
    this.moved();
  }

  /** Whether a tile keeps showing `shown` rather than `replacement` (any, if not given): a
   * track of the node we move away from that still delivers, while the replacement from the
   * new node has not delivered yet. */
  keptTrack(shown, replacement) {
    const from = this.movingFrom;
    if (!from || !shown || shown.readyState !== 'live') return false;
    const old = from.pcs[1]?.getReceivers().some((r) => r.track === shown);
    if (!old || (from.flowing && !from.flowing.has(shown.id))) return false;
    return !replacement || !from.arrived?.has(replacement.id);
  }

  /** Closes what a move kept of the old node once our media is up on the new node and every
   * tile plays from there, after MOVE_OVERLAP_MS (the others may still be watching ours). */
  moved() {
    const from = this.movingFrom;
    if (!from || from.ending || !this.ws || !this.welcomed || !this.mediaUp()) return;
    for (const tile of this.tiles?.values() || []) {
      for (const el of [tile.camera, tile.audio, tile.screen]) {
        if (this.keptTrack(el.srcObject?.getTracks()[0])) return;
      }
    }
    this.trace('every tile plays from the new node');
    from.ending = true;
    clearTimeout(from.timer);
    from.timer = setTimeout(() => this.finishMove(), MOVE_OVERLAP_MS);
  }

  /** Closes what a move kept of the old node (its media, then its connection). */
  finishMove() {
    const from = this.movingFrom;
    if (!from) return;
    this.movingFrom = null;
    clearTimeout(from.timer);
    clearInterval(from.poll);
    for (const pc of from.pcs) pc?.close();
    from.ws?.close();
    // A tile still on an old track (its replacement never delivered: paused video, or the
    // move's time ran out) takes the new node's now.
    this.attachTracks();
  }

  /** Pings `ws`'s node and gives it up when a ping stays unanswered for SILENCE_MS while
   * no media arrived either since the last look (a browser starved of CPU reads its frames
   * late, but its media still comes). */
  keepAlive(ws) {
    let pingedAt = null;
    let bytesBefore = null;
    this.heardAt = Date.now();
    this.checksUnanswered = null;
    const timer = setInterval(async () => {
      if (this.ws !== ws) return clearInterval(timer);
      const subscribeStats = await this.subscribePc?.getStats().catch(() => null);
      if (this.ws !== ws) return clearInterval(timer);
      const bytes = this.bytesReceived(subscribeStats);
      const mediaCame = bytesBefore === null || bytes > bytesBefore;
      bytesBefore = bytes;
      const unanswered = await this.unansweredConnections(subscribeStats);
      if (this.ws !== ws) return clearInterval(timer);
      const silent = this.checksUnanswered;
      if (unanswered.length && !silent) {
        this.checksUnanswered = unanswered[0];
        this.trace('connectivity checks unanswered');
        this.mediaState(unanswered[0], 'disconnected');
      } else if (silent && !unanswered.includes(silent)) {
        this.checksUnanswered = null;
        // Answered again (a node busy for a few seconds): as if the browser said so. (One the
        // browser itself now calls disconnected is its own verdict's to follow.)
        if (silent.connectionState === 'connected') {
          this.trace('connectivity checks answered again');
          this.mediaState(silent, 'connected');
        }
      }
      const now = Date.now();
      if (pingedAt !== null && this.heardAt < pingedAt) {
        if (now - pingedAt <= SILENCE_MS) return;
        if (mediaCame) {
          // Media flows: the node lives. Ask again.
          pingedAt = null;
        } else {
          clearInterval(timer);
          this.dropConnection({ why: 'no pong and no media' });
        }
        return;
      }
      if (pingedAt === null || now - pingedAt >= PING_EVERY_MS) {
        pingedAt = now;
        this.send({ type: 'ping' });
      }
    }, PING_EVERY_MS);
  }

  /** What a media connection's state says about the node (both connections report here). */
  mediaState(pc, state) {
    if (pc !== this.publishPc && pc !== this.subscribePc) return;
    this.trace(`${pc === this.publishPc ? 'publish' : 'subscribe'} ${state}`);
    if (state !== 'disconnected') {
      clearTimeout(this.disconnectedTimer);
      this.disconnectedTimer = null;
    }
    if (state === 'failed') return this.mediaEverUp ? this.dropConnection({ why: 'media failed' }) : this.mediaFailed();
    if (state === 'connecting' && this.welcomed && !this.mediaEverUp && this.status.dataset.state === 'joining') {
      return this.setState('joining', t('state_checking'));
    }
    if (state === 'disconnected') {
      // Say so at once; a short blip recovers by itself, a lasting one is a lost node.
      // (The connectivity checks may have said so before the browser did: the grace runs
      // from the first.)
      this.setState('reconnecting');
      this.disconnectedTimer ||= setTimeout(() => {
        this.disconnectedTimer = null;
        this.dropConnection({ why: 'media disconnected' });
      }, DISCONNECTED_GRACE_MS);
      return;
    }
    if (state === 'connected' && this.welcomed && !this.closed && this.mediaUp()) {
      // Up: the node's check is done (a connection added later, e.g. for someone who joins
      // just then, must not be judged by it).
      clearTimeout(this.connectTimer);
      clearTimeout(this.slowTimer);
      this.mediaEverUp = true;
      this.hadMedia = true;
      this.mediaFailures = 0;
      this.blockedTries = 0;
      this.moved();
      this.setState('connected');
    }
  }

  /** Whether every media connection in use has connected (none: nothing to wait for). A
   * publish connection with nothing to send is never negotiated and does not count. */
  mediaUp() {
    const publishing = this.publishPc && this.sources?.size > 0 ? this.publishPc : null;
    return [publishing, this.subscribePc].every((pc) => !pc || pc.connectionState === 'connected');
  }

  /** The ICE servers for a new peer connection, with credentials that are still valid. */
  async iceServers() {
    const ice = this.ice;
    if (!ice?.servers.length || Date.now() < ice.expires - 10_000) return ice?.servers || [];
    try {
      const grant = await post(`/api/rooms/${this.room}/join`, {});
      if (grant?.grant) this.ice = { servers: grant.ice_servers || [], expires: grant.expires_at };
    } catch {
      // The old credentials still let running relays go on; a new one may fail and say so.
    }
    return this.ice.servers;
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** The people the node welcomed us with. On a first join that is everyone; after joining
   * again (a move, a lost node) the others are on their way too, so the people not there
   * yet keep their tiles (and chat partners) for REJOIN_GRACE_MS. */
  rejoined(participants) {
    const first = !this.present;
    this.present = new Set(participants.map((p) => p.participant));
    for (const p of participants) this.peers.set(p.participant, p);
    const forget = () => {
      let onTheirWay = false;
      for (const p of [...this.peers.keys()]) {
        if (this.present.has(p)) continue;
        // In a move, someone the old node still brings is on their way (a slow grant), not
        // gone: their tile and conversation stay; asked again later.
        const tile = this.tiles?.get(p);
        if (tile && [tile.camera, tile.audio, tile.screen].some((el) => this.keptTrack(el.srcObject?.getTracks()[0]))) {
          onTheirWay = true;
          continue;
        }
        this.peers.delete(p);
        tile?.el.remove();
        this.tiles?.delete(p);
      }
      this.renderPeople();
      if (onTheirWay) this.rejoinTimer = setTimeout(forget, REJOIN_GRACE_MS);
    };
    clearTimeout(this.rejoinTimer);
    if (first) forget();
    else this.rejoinTimer = setTimeout(forget, REJOIN_GRACE_MS);
  }

  async onFrame(f) {
    if (f.type !== 'pong' && f.type !== 'speakers' && f.type !== 'chat') {
      this.trace(`node: ${f.type}${f.type === 'error' ? ` (${f.message})` : ''}`);
    }
    switch (f.type) {
      case 'welcome':
        this.retry = 0;
        this.welcomed = true;
        this.lostNode = null;
        this.sameNodeAsks = 0;
        this.keepAlive(this.ws);
        // "Verbunden" only once media flows (mediaState), not when signalling alone works.
        this.setState('joining', this.movingFrom ? t('state_moving') : undefined);
        this.expectMedia(this.ws);
        this.lobbyWait?.remove();
        this.lobbyWait = null;
        this.body.hidden = false;
        this.lastN = f.last_n;
        // A new node (or the same after a reconnect) reports afresh.
        this.qualities = new Map();
        this.rejoined(f.participants);
        this.names.set(this.me, t('you'));
        this.renderPeople();
        this.renderLobby();
        // For tests and debugging in the console: the connections of this meeting.
        // (`moving`: the old node's subscribe connection, still playing during a move.)
        window.__aula = {
          publish: null,
          subscribe: null,
          moving: this.movingFrom?.pcs[1] ?? null,
          me: this.me,
          signalling: this.ws,
        };
        await this.publish();
        if (this.mediaUp()) {
          // nothing to send or receive yet
          this.moved();
          this.setState('connected');
        }
        this.loadHistory();
        break;
      case 'lobby':
        // The node answered: waiting for the teacher is not a connection problem.
        this.welcomed = true;
        clearTimeout(this.connectTimer);
        clearTimeout(this.slowTimer);
        this.setState('joining', t('state_lobby'));
        this.body.hidden = true;
        this.lobbyWait = h('p', { class: 'card', 'data-testid': 'lobby-waiting' }, t('lobby_waiting'));
        this.main.append(this.lobbyWait);
        break;
      case 'knock':
        this.knocking.set(f.participant, f.name);
        this.renderLobby();
        toast(t('knocks', f.name));
        this.chime('knock');
        break;
      case 'knock_ended':
        this.knocking.delete(f.participant);
        this.renderLobby();
        break;
      case 'participant_joined':
      case 'participant_updated':
        // Our own state comes back too; we are not one of the others.
        if (f.peer.participant === this.me) {
          this.selfUpdated(f.peer);
          break;
        }
        this.present?.add(f.peer.participant);
        this.peers.set(f.peer.participant, f.peer);
        this.renderPeople();
        break;
      case 'participant_left':
        this.present?.delete(f.participant);
        this.peers.delete(f.participant);
        this.tiles?.get(f.participant)?.el.remove();
        this.tiles?.delete(f.participant);
        this.renderPeople();
        break;
      case 'publish_answer':
        await this.publishAnswered(f.sdp);
        break;
      case 'subscribe_offer':
        await this.subscribe(f.sdp, f.tracks);
        break;
      case 'muted':
        this.micOn = false;
        if (this.local.audio) this.local.audio.enabled = false;
        this.renderOwnControls();
        toast(t('you_were_muted'));
        break;
      case 'speakers':
        this.active = f.active;
        this.videoForwarded = new Set(f.video);
        this.renderPeople();
        break;
      case 'chat':
        this.addMessage(f.message, true);
        break;
      case 'video_paused':
        this.videoPaused(f);
        break;
      case 'connection_quality':
        this.connectionQuality(f);
        break;
      case 'move':
        // The node shuts down: a new grant places the room on another node, right away.
        this.dropConnection({ moving: true });
        break;
      case 'pong':
        break;
      case 'bye':
        this.bye(f.reason);
        break;
      case 'error':
        toast(f.message, 'error');
        break;
      default:
        break;
    }
  }
}
