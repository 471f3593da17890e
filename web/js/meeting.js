// The meeting: media through the room's media node, the participant list, the lobby and
// moderation, room and private chat. Signalling protocol: media-node/README.md.
//
// One object, `Meeting`, whose methods come from its parts, each owning one concern:
// signalling (the WebSocket to the node), media (devices and the peer connections), people
// (tiles, lobby, moderation) and chat. The parts share the meeting's state through `this`;
// this file holds that state, the page layout and the meeting's life (join, leave, end).

import { get } from './api.js';
import { has, t } from './i18n.js';
import { LIMITS } from './limits.js';
import { Chat } from './meeting/chat.js';
import { Media } from './meeting/media.js';
import { People } from './meeting/people.js';
import { Signalling } from './meeting/signalling.js';
import { navigate } from './nav.js';
import { me as account } from './session.js';
import { confirmDialog, h } from './ui.js';

export { withOpusDtx } from './meeting/media.js';

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
    this.main.append(h('section', { class: 'card', 'data-testid': 'farewell', 'data-reason': reason }, h('p', {}, t(farewellKey(reason, this.role))), back));
    window.__aula = undefined;
  }

  destroy() {
    if (!this.closed) this.send({ type: 'leave' });
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectedTimer);
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.closePeers();
    this.stopLocal();
    window.__aula = undefined;
  }
}

/** Teachers are addressed with "Sie", pupils with "du". */
function farewellKey(reason, role) {
  const key = `farewell_${reason}`;
  return role === 'moderator' && has(`${key}_formal`) ? `${key}_formal` : key;
}

// The parts' methods become the meeting's; a name given twice would silently shadow one.
for (const part of [Signalling, Media, People, Chat]) {
  for (const name of Object.getOwnPropertyNames(part.prototype)) {
    if (name === 'constructor') continue;
    if (Object.hasOwn(Meeting.prototype, name)) throw new Error(`meeting: ${name} is defined twice`);
    Object.defineProperty(Meeting.prototype, name, Object.getOwnPropertyDescriptor(part.prototype, name));
  }
}
