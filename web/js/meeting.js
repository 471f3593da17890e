// The meeting: media through the room's media node, the participant list, the lobby and
// moderation, room and private chat. Signalling protocol: media-node/README.md.

import { ApiError, get, idempotencyKey, post } from './api.js';
import { formatTime, t } from './i18n.js';
import { LIMITS } from './limits.js';
import { navigate } from './nav.js';
import { me as account } from './session.js';
import { cachedChat, saveChat } from './storage.js';
import { confirmDialog, errorText, h, toast } from './ui.js';

const PROTOCOL_VERSION = 1;

export async function render(main, roomId) {
  const m = new Meeting(main, roomId);
  m.start();
  return () => m.destroy();
}

class Meeting {
  constructor(main, roomId) {
    this.main = main;
    this.room = roomId;
    this.me = null;
    this.role = null;
    this.peers = new Map(); // participant -> PeerInfo from the node
    this.knocking = new Map(); // participant -> name
    this.tracks = new Map(); // subscribe mid -> {participant, source}
    this.messages = new Map(); // id -> message
    this.unread = new Map(); // conversation -> count
    this.names = new Map(); // participant -> display name (also of people who left)
    this.local = { audio: null, video: null, screen: null };
    this.micOn = true;
    this.camOn = true;
    this.hand = false;
    this.ws = null;
    this.publishPc = null;
    this.subscribePc = null;
    this.closed = false;
    this.farewell = null;
    this.retry = 0;
    this.active = null;
    this.videoForwarded = null;
    this.build();
  }

  // ---- layout ----------------------------------------------------------------------

  build() {
    this.status = h('p', { class: 'status', 'data-testid': 'status', 'data-state': 'joining', role: 'status' }, t('state_joining'));
    this.grid = h('section', { class: 'grid', 'aria-label': t('participants') });
    this.selfTile = this.tile(null, true);
    this.grid.append(this.selfTile.el);
    this.micButton = h('button', { type: 'button', id: 'toggle-mic', 'aria-pressed': 'true', onclick: () => this.toggleMic() }, t('mic_on'));
    this.camButton = h('button', { type: 'button', id: 'toggle-camera', 'aria-pressed': 'true', onclick: () => this.toggleCamera() }, t('cam_on'));
    this.screenButton = h('button', { type: 'button', id: 'toggle-screen', 'aria-pressed': 'false', onclick: () => this.toggleScreen() }, t('screen_off'));
    this.handButton = h('button', { type: 'button', id: 'raise-hand', 'aria-pressed': 'false', onclick: () => this.toggleHand() }, t('hand_down'));
    this.endButton = h('button', { type: 'button', id: 'end-meeting', class: 'danger', hidden: true, onclick: () => this.endMeeting() }, t('end_meeting'));
    this.micSelect = h('select', { id: 'select-mic', 'aria-label': t('microphone'), onchange: () => this.switchDevice('audio') });
    this.camSelect = h('select', { id: 'select-camera', 'aria-label': t('camera'), onchange: () => this.switchDevice('video') });
    const controls = h(
      'div',
      { class: 'controls', role: 'toolbar', 'aria-label': t('devices') },
      this.micButton,
      this.camButton,
      this.screenButton,
      this.handButton,
      h('button', { type: 'button', id: 'leave', class: 'secondary', onclick: () => this.leave() }, t('leave')),
      this.endButton,
      h('details', { class: 'devices' }, h('summary', {}, t('devices')),
        h('label', { class: 'field' }, h('span', {}, t('microphone')), this.micSelect),
        h('label', { class: 'field' }, h('span', {}, t('camera')), this.camSelect)),
    );
    this.lobbyList = h('ul', {});
    this.lobbyPanel = h('section', { class: 'panel', 'data-testid': 'lobby', hidden: true }, h('h2', {}, t('lobby')), this.lobbyList);
    this.peopleList = h('ul', {});
    const people = h('section', { class: 'panel', 'data-testid': 'participants' }, h('h2', {}, t('participants')), this.peopleList);
    this.chatList = h('ol', { class: 'chat-log', 'aria-live': 'polite' });
    this.chatTo = h('select', { id: 'chat-to', 'aria-label': t('chat_to'), onchange: () => this.viewConversation() });
    this.chatInput = h('input', { id: 'chat-input', 'aria-label': t('chat_input'), maxlength: LIMITS.chat_message, autocomplete: 'off' });
    const chatForm = h('form', { class: 'row chat-form' }, this.chatTo, this.chatInput, h('button', { id: 'chat-send', type: 'submit' }, t('chat_send')));
    chatForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.sendChat();
    });
    const chat = h('section', { class: 'panel chat', 'aria-label': t('chat') }, h('h2', {}, t('chat')), this.chatList, chatForm);
    this.stage = h('div', { class: 'stage' }, this.grid, controls);
    this.side = h('aside', { class: 'side' }, this.lobbyPanel, people, chat);
    this.body = h('div', { class: 'meeting' }, this.stage, this.side);
    this.main.append(this.status, this.body);
    this.refreshChatTargets();
  }

  setState(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text || t(`state_${state}`);
  }

  /** A tile for a participant (or oneself): camera video, screen video, audio. */
  tile(participant, self = false) {
    const name = h('span', { class: 'name' });
    const badges = h('span', { class: 'badges' });
    const camera = h('video', { autoplay: true, playsinline: true, muted: true, 'data-source': 'camera' });
    camera.muted = true;
    const screen = h('video', { autoplay: true, playsinline: true, muted: true, 'data-source': 'screen', hidden: true });
    screen.muted = true;
    const audio = self ? null : h('audio', { autoplay: true });
    const avatar = h('span', { class: 'avatar', 'aria-hidden': 'true' });
    const el = h(
      'figure',
      { class: 'tile', 'data-testid': 'tile', 'data-participant': participant || null, 'data-self': self || null },
      avatar,
      camera,
      screen,
      audio,
      h('figcaption', {}, name, badges),
    );
    return { el, name, badges, camera, screen, audio, avatar };
  }

  peerTile(participant) {
    let tile = this.tiles?.get(participant);
    if (!tile) {
      this.tiles ??= new Map();
      tile = this.tile(participant);
      this.tiles.set(participant, tile);
      this.grid.append(tile.el);
    }
    return tile;
  }

  // ---- joining -----------------------------------------------------------------------

  async start() {
    const who = await account();
    if (!who) {
      try {
        await get('/api/guest');
      } catch (e) {
        if (e.status === 401) return navigate('/login', true);
      }
    }
    await this.openDevices();
    await this.connect();
  }

  async openDevices() {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      this.local.audio = stream.getAudioTracks()[0] || null;
      this.local.video = stream.getVideoTracks()[0] || null;
    } catch {
      toast(t('no_devices'), 'error');
      this.micOn = false;
      this.camOn = false;
    }
    this.selfTile.camera.srcObject = this.local.video ? new MediaStream([this.local.video]) : null;
    this.selfTile.name.textContent = t('you');
    await this.listDevices();
    this.renderOwnControls();
  }

  async listDevices() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      const fill = (select, kind, track) => {
        const current = track?.getSettings().deviceId;
        select.replaceChildren(
          ...devices
            .filter((d) => d.kind === kind)
            .map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${kind} ${i + 1}`)),
        );
      };
      fill(this.micSelect, 'audioinput', this.local.audio);
      fill(this.camSelect, 'videoinput', this.local.video);
    } catch {
      /* no device list: the defaults are used */
    }
  }

  async switchDevice(kind) {
    const select = kind === 'audio' ? this.micSelect : this.camSelect;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: select.value } } });
      const track = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
      const old = this.local[kind];
      track.enabled = kind === 'audio' ? this.micOn : this.camOn;
      this.local[kind] = track;
      const sender = this.publishPc?.getSenders().find((s) => s.track === old);
      if (sender) await sender.replaceTrack(track);
      old?.stop();
      if (kind === 'video') this.selfTile.camera.srcObject = new MediaStream([track]);
    } catch (e) {
      toast(errorText(e), 'error');
    }
  }

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
        this.lobbyPanel.hidden = this.role !== 'moderator';
        // For tests and debugging in the console: the connections of this meeting.
        window.__aula = { publish: null, subscribe: null, me: this.me, signalling: this.ws };
        await this.publish();
        this.loadHistory();
        break;
      case 'lobby':
        this.setState('joining', t('lobby_waiting'));
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
        await this.publishPc?.setRemoteDescription({ type: 'answer', sdp: withOpusDtx(f.sdp) });
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

  // ---- media -------------------------------------------------------------------------

  /**
   * Publishes what is on (microphone, camera, screen) on a new connection; a second call
   * replaces the first (`restart`) instead of renegotiating it: the camera is sent as
   * simulcast, and after a renegotiation the node's WebRTC stack no longer knows which stream
   * is which layer (the browser has stopped naming them in its packets).
   */
  async publish() {
    const old = this.publishPc;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.publishPc = pc;
    window.__aula.publish = pc;
    this.sources = new Map(); // transceiver -> source
    if (this.local.audio) this.sources.set(pc.addTransceiver(this.local.audio, { direction: 'sendonly' }), 'microphone');
    // Simulcast: the node forwards the small layer to the grid and the large one for the
    // active speaker, so a class of 30 does not download 20 full-size cameras each.
    if (this.local.video) {
      this.sources.set(pc.addTransceiver(this.local.video, { direction: 'sendonly', sendEncodings: CAMERA_LAYERS }), 'camera');
    }
    if (this.local.screen) this.sources.set(pc.addTransceiver(this.local.screen, { direction: 'sendonly' }), 'screen');
    if (this.local.audio && !this.micOn) this.send({ type: 'set_muted', muted: true });
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && this.publishPc === pc) this.ws?.close();
    };
    await this.offer(Boolean(old));
    old?.close();
  }

  async offer(restart = false) {
    const pc = this.publishPc;
    if (!pc || this.sources.size === 0) return;
    await pc.setLocalDescription(await pc.createOffer());
    const tracks = [];
    for (const [tr, source] of this.sources) {
      if (tr.mid !== null && tr.currentDirection !== 'stopped') tracks.push({ mid: tr.mid, source });
    }
    this.send({ type: 'publish_offer', sdp: pc.localDescription.sdp, tracks, ...(restart && { restart: true }) });
  }

  async subscribe(sdp, tracks) {
    if (!this.subscribePc) {
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      this.subscribePc = pc;
      window.__aula.subscribe = pc;
      pc.ontrack = () => this.attachTracks();
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed' && this.subscribePc === pc) this.ws?.close();
      };
    }
    const pc = this.subscribePc;
    this.tracks = new Map(tracks.map((tr) => [tr.mid, tr]));
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    this.send({ type: 'subscribe_answer', sdp: pc.localDescription.sdp });
    this.attachTracks();
  }

  /** Puts every received track into its participant's tile (mids may be reused). */
  attachTracks() {
    const pc = this.subscribePc;
    if (!pc) return;
    const screens = new Set();
    for (const tr of pc.getTransceivers()) {
      const info = this.tracks.get(tr.mid);
      if (!info || !tr.receiver.track) continue;
      const tile = this.peerTile(info.participant);
      const el = info.source === 'microphone' ? tile.audio : info.source === 'screen' ? tile.screen : tile.camera;
      if (el.srcObject?.getTracks()[0] !== tr.receiver.track) el.srcObject = new MediaStream([tr.receiver.track]);
      if (info.source === 'screen') screens.add(info.participant);
      el.play?.().catch(() => {});
    }
    for (const [p, tile] of this.tiles || []) {
      tile.screen.hidden = !screens.has(p);
      if (tile.screen.hidden) tile.screen.srcObject = null;
    }
    this.renderPeople();
  }

  closePeers() {
    this.publishPc?.close();
    this.subscribePc?.close();
    this.publishPc = null;
    this.subscribePc = null;
  }

  // ---- own controls ------------------------------------------------------------------

  renderOwnControls() {
    this.micButton.textContent = this.micOn ? t('mic_on') : t('mic_off');
    this.micButton.setAttribute('aria-pressed', String(this.micOn));
    this.micButton.disabled = !this.local.audio;
    this.camButton.textContent = this.camOn ? t('cam_on') : t('cam_off');
    this.camButton.setAttribute('aria-pressed', String(this.camOn));
    this.camButton.disabled = !this.local.video;
    this.screenButton.textContent = this.local.screen ? t('screen_on') : t('screen_off');
    this.screenButton.setAttribute('aria-pressed', String(!!this.local.screen));
    this.handButton.textContent = this.hand ? t('hand_up') : t('hand_down');
    this.handButton.setAttribute('aria-pressed', String(this.hand));
    this.selfTile.el.classList.toggle('muted', !this.micOn);
    this.selfTile.camera.hidden = !this.camOn || !this.local.video;
  }

  toggleMic() {
    this.micOn = !this.micOn;
    if (this.local.audio) this.local.audio.enabled = this.micOn;
    this.send({ type: 'set_muted', muted: !this.micOn });
    this.renderOwnControls();
  }

  toggleCamera() {
    this.camOn = !this.camOn;
    if (this.local.video) this.local.video.enabled = this.camOn;
    this.renderOwnControls();
  }

  async toggleScreen() {
    if (this.local.screen) return this.stopScreen();
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch {
      return;
    }
    const track = stream.getVideoTracks()[0];
    this.local.screen = track;
    track.addEventListener('ended', () => this.stopScreen());
    if (this.publishPc) await this.publish();
    this.renderOwnControls();
  }

  async stopScreen() {
    const track = this.local.screen;
    if (!track) return;
    this.local.screen = null;
    track.stop();
    if (this.publishPc) await this.publish();
    this.renderOwnControls();
  }

  toggleHand() {
    this.hand = !this.hand;
    this.send({ type: 'raise_hand', raised: this.hand });
    this.renderOwnControls();
  }

  leave() {
    this.send({ type: 'leave' });
    this.bye('left');
  }

  async endMeeting() {
    if (await confirmDialog(t('end_confirm'), t('end_meeting'))) this.send({ type: 'end_meeting' });
  }

  bye(reason) {
    this.farewell = reason;
    this.closed = true;
    this.setState('ended');
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.closePeers();
    this.stopLocal();
    this.body.hidden = true;
    this.lobbyWait?.remove();
    const back = this.role === 'moderator' ? h('a', { href: '/rooms', class: 'button' }, t('back_to_rooms')) : null;
    this.main.append(h('section', { class: 'card', 'data-testid': 'farewell', 'data-reason': reason }, h('p', {}, t(`farewell_${reason}`)), back));
    window.__aula = undefined;
  }

  stopLocal() {
    for (const k of ['audio', 'video', 'screen']) {
      this.local[k]?.stop();
      this.local[k] = null;
    }
  }

  destroy() {
    if (!this.closed) this.send({ type: 'leave' });
    this.closed = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.closePeers();
    this.stopLocal();
    window.__aula = undefined;
  }

  // ---- people, lobby, moderation -----------------------------------------------------

  renderPeople() {
    const moderator = this.role === 'moderator';
    const items = [];
    for (const p of this.peers.values()) {
      this.names.set(p.participant, p.name);
      const tile = this.peerTile(p.participant);
      tile.name.textContent = p.name;
      tile.avatar.textContent = initials(p.name);
      tile.badges.replaceChildren(
        ...[
          p.muted ? h('span', { class: 'badge' }, t('muted')) : null,
          p.hand_raised ? h('span', { class: 'badge hand' }, '✋') : null,
        ].filter(Boolean),
      );
      tile.el.classList.toggle('active', this.active === p.participant);
      tile.el.classList.toggle('muted', p.muted);
      // Only when the node forwards video of the last N speakers and this one is not among them.
      const limited = this.videoForwarded && this.videoForwarded.size >= this.lastN;
      tile.el.classList.toggle('no-video', !!limited && !this.videoForwarded.has(p.participant));
      const li = h(
        'li',
        { 'data-participant': p.participant, 'data-muted': String(p.muted), 'data-hand': String(p.hand_raised) },
        h('span', {}, p.name),
        p.role === 'moderator' ? h('span', { class: 'badge' }, t('moderator')) : null,
        p.muted ? h('span', { class: 'badge' }, t('muted')) : null,
        p.hand_raised ? h('span', { class: 'badge hand' }, t('hand_raised')) : null,
        moderator && p.role === 'guest'
          ? h(
              'span',
              { class: 'actions' },
              h('button', { type: 'button', class: 'small', 'data-action': 'mute', disabled: p.muted, onclick: () => this.send({ type: 'mute', participant: p.participant }) }, t('mute')),
              h('button', { type: 'button', class: 'small danger', 'data-action': 'remove', onclick: () => this.remove(p.participant) }, t('remove')),
            )
          : null,
      );
      items.push(li);
    }
    this.peopleList.replaceChildren(h('li', { 'data-self': '' }, h('span', {}, t('you'))), ...items);
    this.refreshChatTargets();
  }

  renderLobby() {
    this.lobbyPanel.hidden = this.role !== 'moderator';
    this.lobbyList.replaceChildren(
      ...[...this.knocking].map(([p, name]) =>
        h(
          'li',
          { 'data-participant': p },
          h('span', {}, name),
          h('button', { type: 'button', class: 'small', 'data-action': 'admit', onclick: () => this.admit(p) }, t('admit')),
          h('button', { type: 'button', class: 'small danger', 'data-action': 'deny', onclick: () => this.deny(p) }, t('deny')),
        ),
      ),
    );
  }

  guestPath(participant, action) {
    return `/api/rooms/${this.room}/guests/${participant.slice(2)}/${action}`;
  }

  /** The functions remember the decision (no new grant after a denial; an admitted guest
   * may chat); the node acts on it now (in, out, grant refused). */
  async moderate(participant, remembered, frame) {
    try {
      await post(this.guestPath(participant, remembered));
    } catch (e) {
      toast(errorText(e), 'error');
    }
    this.send({ type: frame, participant });
  }

  admit(participant) {
    return this.moderate(participant, 'admit', 'admit');
  }

  deny(participant) {
    return this.moderate(participant, 'deny', 'deny');
  }

  remove(participant) {
    return this.moderate(participant, 'deny', 'remove');
  }

  // ---- chat --------------------------------------------------------------------------

  conversationWith(other) {
    if (!other || other === 'room') return 'room';
    // The functions' order: moderators before guests, then by id.
    const rank = (p) => (p.startsWith('m:') ? '0' : '1') + p;
    const [a, b] = [this.me, other].sort((x, y) => (rank(x) < rank(y) ? -1 : 1));
    return `p/${a}/${b}`;
  }

  refreshChatTargets() {
    const current = this.chatTo.value || 'room';
    const label = (conv, name) => {
      const n = this.unread.get(conv) || 0;
      return n ? `${name} (${t('chat_unread', n)})` : name;
    };
    const options = [h('option', { value: 'room' }, label('room', t('chat_everyone')))];
    for (const p of this.peers.values()) {
      options.push(h('option', { value: p.participant }, label(this.conversationWith(p.participant), p.name)));
    }
    this.chatTo.replaceChildren(...options);
    this.chatTo.value = [...this.chatTo.options].some((o) => o.value === current) ? current : 'room';
  }

  viewConversation() {
    const conv = this.conversationWith(this.chatTo.value);
    this.unread.delete(conv);
    for (const li of this.chatList.querySelectorAll(`li.unread[data-conversation="${conv}"]`)) li.classList.remove('unread');
    this.refreshChatTargets();
  }

  async loadHistory() {
    // The browser's copy shows at once; the server's answer then decides what stays.
    const cached = cachedChat(this.me, this.room);
    for (const m of cached) this.addMessage(m, false);
    const pages = [get(`/api/rooms/${this.room}/chat?limit=100`)];
    for (const p of this.peers.keys()) pages.push(get(`/api/rooms/${this.room}/chat?limit=100&with=${encodeURIComponent(p)}`));
    const results = await Promise.allSettled(pages);
    const confirmed = new Set();
    for (const r of results) {
      if (r.status === 'fulfilled') {
        for (const m of r.value.messages) {
          confirmed.add(m.id);
          this.addMessage(m, false);
        }
      }
    }
    // A cached message the server no longer has (deleted, expired, erased) goes too, once
    // every conversation has answered: the cache never outlives the server's copy.
    if (results.every((r) => r.status === 'fulfilled')) {
      for (const m of cached) if (!confirmed.has(m.id)) this.removeMessage(m.id);
    }
    this.saveCache();
  }

  saveCache() {
    saveChat(this.me, this.room, [...this.messages.values()]);
  }

  removeMessage(id) {
    this.messages.delete(id);
    this.chatList.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
  }

  addMessage(m, live) {
    if (this.messages.has(m.id)) return;
    this.messages.set(m.id, m);
    const mine = m.author === this.me;
    const author = mine ? t('you') : this.names.get(m.author) || this.peers.get(m.author)?.name || m.author.slice(0, 10);
    const viewing = this.conversationWith(this.chatTo.value) === m.conversation;
    const unread = live && !mine && !viewing;
    const li = h(
      'li',
      {
        'data-testid': 'chat-message',
        'data-conversation': m.conversation,
        'data-author': m.author,
        'data-id': m.id,
        class: [m.conversation !== 'room' ? 'private' : '', unread ? 'unread' : ''].join(' ').trim() || null,
      },
      h('span', { class: 'meta' }, `${author} · ${formatTime(m.posted_at)}`, m.conversation !== 'room' ? ` · ${t('chat_private')}` : ''),
      h('span', { class: 'body' }, m.body),
    );
    // Keep the log in posting order (ids sort by posting time).
    const after = [...this.chatList.children].find((x) => x.dataset.id > m.id);
    this.chatList.insertBefore(li, after || null);
    if (unread) {
      this.unread.set(m.conversation, (this.unread.get(m.conversation) || 0) + 1);
      this.refreshChatTargets();
    }
    if (live) {
      li.scrollIntoView({ block: 'nearest' });
      this.saveCache();
    }
  }

  async sendChat() {
    const body = this.chatInput.value.trim();
    if (!body) return;
    const to = this.chatTo.value === 'room' ? null : this.chatTo.value;
    const key = idempotencyKey();
    let posted;
    for (let attempt = 0; attempt < 3 && !posted; attempt++) {
      try {
        posted = await post(`/api/rooms/${this.room}/chat`, { body, to, idempotency_key: key });
      } catch (e) {
        if (e.code !== 'network' || attempt === 2) return toast(errorText(e), 'error');
      }
    }
    this.chatInput.value = '';
    this.addMessage(posted, true);
    this.send({ type: 'chat', relay: posted.relay });
  }
}

function initials(name) {
  return (name || '?')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join('');
}

/**
 * The camera's simulcast layers (640×360 captured): a thumbnail for the grid, a middle one,
 * and the full picture for the active speaker. The browser drops layers its bandwidth
 * estimate cannot carry, smallest last.
 */
const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 400_000 },
  { rid: 'f', maxBitrate: 1_200_000 },
];

/**
 * Asks our Opus encoder for discontinuous transmission: a silent or switched-off microphone
 * then sends a packet every 400 ms or so instead of 50 a second, each of which the node
 * would forward to everyone in the room. The browser reads `usedtx` from the answer it is
 * given; the node answers with our own Opus parameters, so it is added here.
 */
export function withOpusDtx(sdp) {
  const opus = new Set();
  for (const m of sdp.matchAll(/^a=rtpmap:(\d+) opus\/48000/gim)) opus.add(m[1]);
  return sdp.replace(/^a=fmtp:(\d+) (.*?)(\r?)$/gm, (line, pt, params, cr) =>
    opus.has(pt) && !/(^|;)\s*usedtx=/.test(params) ? `a=fmtp:${pt} ${params};usedtx=1${cr}` : line,
  );
}
