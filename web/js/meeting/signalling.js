// The signalling WebSocket to the room's media node: joining with the grant, reconnecting,
// and one handler per frame the node sends, in the order of its protocol
// (media-node/sfu/src/protocol.rs, `ServerMessage`; described in media-node/README.md).
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { ApiError, post } from '../api.js';
import { t } from '../i18n.js';
import { errorText, h, toast } from '../ui.js';

const PROTOCOL_VERSION = 1;

export class Signalling {
  async connect() {
    if (this.closed) return;
    this.setState(this.retry ? 'reconnecting' : 'joining');
    let grant;
    try {
      grant = await post(`/api/rooms/${this.room}/join`);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'no_capacity') {
        const wait = Number(e.retryAfter) || 10;
        this.setState('reconnecting', t('node_full', wait));
        this.timer = setTimeout(() => this.connect(), wait * 1000);
        return;
      }
      if (e instanceof ApiError && e.code === 'denied') return this.bye('denied');
      if (e instanceof ApiError && (e.status === 401 || e.status === 404)) return this.bye('denied');
      return this.reconnectLater();
    }
    this.me = grant.participant;
    this.role = grant.role;
    this.endButton.hidden = this.role !== 'moderator';
    const ws = new WebSocket(grant.node_url);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, room: this.room, grant: grant.grant }));
    ws.onmessage = (e) => {
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
      // After the frames that came before the close (a farewell among them).
      this.queue = (this.queue || Promise.resolve()).then(() => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.closePeers();
        if (!this.closed && !this.farewell) this.reconnectLater();
      });
    };
  }

  reconnectLater() {
    if (this.closed) return;
    this.retry += 1;
    this.setState('reconnecting');
    const delay = Math.min(1000 * 2 ** Math.min(this.retry - 1, 4), 15000);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  async onFrame(f) {
    switch (f.type) {
      case 'welcome':
        this.retry = 0;
        this.setState('connected');
        this.lobbyWait?.remove();
        this.lobbyWait = null;
        this.body.hidden = false;
        this.lastN = f.last_n;
        this.peers.clear();
        for (const p of f.participants) this.peers.set(p.participant, p);
        for (const [p, tile] of this.tiles || []) {
          if (!this.peers.has(p)) {
            tile.el.remove();
            this.tiles.delete(p);
          }
        }
        this.names.set(this.me, t('you'));
        this.renderPeople();
        this.renderLobby();
        // For tests and debugging in the console: the connections of this meeting.
        window.__aula = { publish: null, subscribe: null, me: this.me, signalling: this.ws };
        await this.publish();
        this.loadHistory();
        break;
      case 'lobby':
        this.setState('joining', t('state_lobby'));
        this.body.hidden = true;
        this.lobbyWait = h('p', { class: 'card', 'data-testid': 'lobby-waiting' }, t('lobby_waiting'));
        this.main.append(this.lobbyWait);
        break;
      case 'knock':
        this.knocking.set(f.participant, f.name);
        this.renderLobby();
        toast(t('knocks', f.name));
        break;
      case 'knock_ended':
        this.knocking.delete(f.participant);
        this.renderLobby();
        break;
      case 'participant_joined':
      case 'participant_updated':
        // Our own state comes back too; we are not one of the others.
        if (f.peer.participant === this.me) break;
        this.peers.set(f.peer.participant, f.peer);
        this.renderPeople();
        break;
      case 'participant_left':
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
      case 'move':
        // The node shuts down: a new grant places the room on another node.
        this.ws?.close();
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
