// The meeting: media through the room's media node, the participant list, the lobby and
// moderation, room and private chat. Signalling protocol: media-node/README.md.
//
// One object, `Meeting`, whose methods come from its parts, each owning one concern:
// signalling (the WebSocket to the node), media (devices and the peer connections), people
// (tiles, lobby, moderation) and chat. The parts share the meeting's state through `this`;
// this file holds that state, the page layout and the meeting's life (join, leave, end).

import { get } from './api.js';
import { t } from './i18n.js';
import { LIMITS } from './limits.js';
import { icon } from './icons.js';
import { Chat } from './meeting/chat.js';
import { Controls } from './meeting/controls.js';
import { Media } from './meeting/media.js';
import { People } from './meeting/people.js';
import { Prejoin, takeHandOff } from './meeting/prejoin.js';
import { Signalling } from './meeting/signalling.js';
import { Sounds } from './meeting/sounds.js';
import { Stage } from './meeting/stage.js';
import { navigate } from './nav.js';
import { me as account } from './session.js';
import { confirmDialog, h } from './ui.js';

export { withOpusDtx } from './meeting/media.js';

export async function render(main, roomId) {
  // The meeting fills the window (no page footer, no page width).
  document.body.classList.add('in-meeting');
  const m = new Meeting(main, roomId);
  m.start();
  return () => {
    document.body.classList.remove('in-meeting');
    m.destroy();
  };
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
    this.view = 'speaker';
    this.pinned = null;
    this.handOrder = new Map(); // participant -> when their hand went up (as this page saw it)
    this.panels = { chat: true, people: true };
    this.build();
  }

  // ---- layout ----------------------------------------------------------------------
  // As in Jitsi Meet and BigBlueButton: the stage fills the window (one person or a shared
  // screen large, the others in a strip; or everyone in a gallery), the panels (people,
  // chat) beside it, one bar of controls below, and the teacher's controls grouped in it.

  build() {
    this.heading = h('h1', { class: 'sr-only' }, t('meeting_title'));
    this.status = h('p', { class: 'status', 'data-testid': 'status', 'data-state': 'joining', role: 'status' }, t('state_joining'));
    this.grid = h('section', { class: 'grid', 'data-testid': 'stage', 'data-view': this.view, 'aria-label': t('stage') });
    this.selfTile = this.tile(null, true);
    this.grid.append(this.selfTile.el);

    const ctl = (id, iconName, onclick, extra = {}) => {
      const label = h('span', { class: 'label' });
      const b = h('button', { type: 'button', id, class: 'ctl', onclick, ...extra }, icon(iconName), label);
      b.label = label;
      return b;
    };
    this.micButton = ctl('toggle-mic', 'mic', () => this.toggleMic(), { 'aria-pressed': 'true', 'aria-keyshortcuts': 'M' });
    this.camButton = ctl('toggle-camera', 'camera', () => this.toggleCamera(), { 'aria-pressed': 'true', 'aria-keyshortcuts': 'V' });
    this.screenButton = ctl('toggle-screen', 'screen', () => this.toggleScreen(), { 'aria-pressed': 'false', 'aria-keyshortcuts': 'S' });
    this.handButton = ctl('raise-hand', 'hand', () => this.toggleHand(), { 'aria-pressed': 'false', 'aria-keyshortcuts': 'H' });
    this.chatButton = ctl('toggle-chat', 'chat', () => this.togglePanel('chat'), { 'aria-pressed': 'true', 'aria-keyshortcuts': 'C', 'aria-controls': 'panel-chat' });
    this.chatBadge = h('span', { class: 'count', 'data-testid': 'chat-badge', hidden: true });
    this.chatButton.append(this.chatBadge);
    this.peopleButton = ctl('toggle-people', 'people', () => this.togglePanel('people'), { 'aria-pressed': 'true', 'aria-keyshortcuts': 'P', 'aria-controls': 'panel-people' });
    this.handCount = h('span', { class: 'count hand', 'data-testid': 'hand-badge', hidden: true });
    this.peopleButton.append(this.handCount);
    this.leaveButton = ctl('leave', 'leave', () => this.leave(), { class: 'ctl leave' });
    // The teacher's controls, apart from everyone's.
    this.muteAllButton = ctl('mute-all', 'mic-off', () => this.muteAll());
    this.lowerHandsButton = ctl('lower-hands', 'hand-down', () => this.lowerAllHands());
    this.lobbyButton = ctl('toggle-lobby', 'door', () => this.toggleLobby(), { 'aria-pressed': 'false' });
    this.endButton = ctl('end-meeting', 'stop', () => this.endMeeting(), { class: 'ctl danger', hidden: true });
    this.modGroup = h(
      'div',
      { class: 'group moderation', role: 'group', 'aria-label': t('moderation'), 'data-testid': 'moderation', hidden: true },
      this.muteAllButton,
      this.lowerHandsButton,
      this.lobbyButton,
      this.endButton,
    );
    // On a phone the bar holds icons only; the rest (the teacher's group, the view, the
    // devices, the invite link) opens above it from "Mehr".
    this.moreButton = ctl('more-controls', 'more', () => this.toggleMore(), { 'aria-expanded': 'false', 'aria-controls': 'more-sheet', hidden: true });
    this.moreButton.label.textContent = t('more_controls');
    this.controls = h(
      'div',
      { class: 'controls', role: 'toolbar', 'aria-label': t('controls') },
      h('div', { class: 'group' }, this.micButton, this.camButton, this.screenButton, this.handButton),
      h('div', { class: 'group' }, this.chatButton, this.peopleButton, this.moreButton, this.leaveButton),
      this.modGroup,
    );

    this.micSelect = h('select', { id: 'select-mic', 'aria-label': t('microphone'), onchange: () => this.switchDevice('audio') });
    this.camSelect = h('select', { id: 'select-camera', 'aria-label': t('camera'), onchange: () => this.switchDevice('video') });
    this.viewButton = h('button', { type: 'button', id: 'toggle-view', class: 'secondary small', 'aria-keyshortcuts': 'G', onclick: () => this.setView(this.view === 'speaker' ? 'gallery' : 'speaker') });
    this.inviteInput = h('input', { id: 'meeting-invite', 'data-testid': 'meeting-invite', readonly: true, 'aria-label': t('invite_link') });
    this.invite = h(
      'div',
      { class: 'invite', hidden: true },
      h('span', { class: 'muted' }, t('invite_link')),
      this.inviteInput,
      h('button', { type: 'button', class: 'small', 'data-testid': 'meeting-copy-invite', onclick: () => this.copyInvite() }, icon('copy'), t('copy')),
    );
    // Only teachers hear tones (hands, knocks), so only they get the switch.
    this.soundButton = h('button', { type: 'button', id: 'toggle-sounds', class: 'secondary small', 'aria-pressed': 'true', hidden: true, onclick: () => this.toggleSounds() });
    this.tools = h(
      'div',
      { class: 'tools' },
      this.invite,
      h('span', { class: 'spacer' }),
      this.viewButton,
      this.soundButton,
      h('button', { type: 'button', id: 'shortcuts-help', class: 'secondary small', 'aria-keyshortcuts': 'Shift+?', onclick: () => this.showShortcuts() }, icon('keyboard'), t('shortcuts')),
      h('details', { class: 'devices' }, h('summary', {}, t('devices')),
        h('div', { class: 'popover' },
          h('label', { class: 'field' }, h('span', {}, t('microphone')), this.micSelect),
          h('label', { class: 'field' }, h('span', {}, t('camera')), this.camSelect))),
    );

    this.lobbyList = h('ul', {});
    this.lobbyPanel = h('section', { class: 'panel', 'data-testid': 'lobby', hidden: true }, h('h2', {}, t('lobby')), this.lobbyList);
    this.handList = h('ol', { class: 'hands' });
    this.handsPanel = h('section', { class: 'panel', 'data-testid': 'hands', hidden: true, 'aria-live': 'polite' }, h('h2', {}, t('hands')), this.handList);
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
    // On a phone each panel is a sheet over the whole meeting, closed with its own button.
    const close = (which) =>
      h('button', { type: 'button', class: 'secondary close-panel', 'data-action': 'close-panel', 'aria-label': t('close'), onclick: () => this.togglePanel(which, false) }, icon('close'));
    this.peoplePanel = h('div', { class: 'panels', id: 'panel-people' }, close('people'), this.lobbyPanel, this.handsPanel, people);
    this.chatPanel = h('section', { class: 'panel chat', id: 'panel-chat', 'aria-label': t('chat') }, close('chat'), h('h2', {}, t('chat')), this.chatList, chatForm);
    this.stage = h('div', { class: 'stage' }, this.grid);
    this.side = h('aside', { class: 'side' }, this.peoplePanel, this.chatPanel);
    this.moreSheet = h('div', { class: 'more-sheet', id: 'more-sheet', 'data-testid': 'more-sheet', hidden: true });
    this.body = h('div', { class: 'meeting' }, this.tools, this.stage, this.side, this.controls, this.moreSheet);
    this.main.append(this.heading, this.status, this.body);
    this.refreshChatTargets();
    this.renderSoundButton();
    this.watchStage();
    this.phone = matchMedia(PHONE);
    this.onPhoneChange = () => this.fitDevice();
    this.phone.addEventListener('change', this.onPhoneChange);
    this.fitDevice(true);
  }

  /** Phone or not (the window can turn): the teacher's group and the tools move between the
   * bar and the "Mehr" sheet; on a phone one panel at a time, none at the start. */
  fitDevice(first = false) {
    const phone = this.phone.matches;
    this.body.classList.toggle('phone', phone);
    this.moreButton.hidden = !phone;
    this.followKeyboard(phone);
    if (phone) {
      this.moreSheet.append(this.tools, this.modGroup);
      if (first) this.togglePanel('people', false);
      if (this.panels.chat && this.panels.people) this.togglePanel('people', false);
      if (first) this.togglePanel('chat', false);
    } else {
      this.body.prepend(this.tools);
      this.controls.append(this.modGroup);
      this.toggleMore(false);
    }
  }

  /** On a phone the meeting is as high as what the on-screen keyboard leaves of the window
   * (browsers that only overlay the keyboard shrink just the visual viewport), so the chat's
   * message field stays above the keyboard and the teacher above the chat. */
  followKeyboard(on) {
    const viewport = window.visualViewport;
    if (!viewport) return;
    this.onViewport ??= () => document.body.style.setProperty('--viewport-h', `${Math.round(viewport.height)}px`);
    viewport.removeEventListener('resize', this.onViewport);
    if (on) {
      viewport.addEventListener('resize', this.onViewport);
      this.onViewport();
    } else {
      document.body.style.removeProperty('--viewport-h');
    }
  }

  toggleMore(open = this.moreSheet.hidden) {
    this.moreSheet.hidden = !open;
    this.moreButton.setAttribute('aria-expanded', String(open));
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
    const choice = await this.prejoin(who);
    if (!choice || this.closed) return;
    await this.openDevices(choice);
    this.listenForShortcuts();
    await this.connect();
  }

  /** The pre-join screen's choices: handed over by the invite page (guests), kept by this
   * tab from before a reload, or asked for here (teachers). */
  async prejoin(who) {
    const handed = takeHandOff();
    if (handed) {
      this.remember(handed);
      return handed;
    }
    const kept = history.state?.aulaJoined;
    if (kept && kept.room === this.room) return { ...kept, stream: null };
    this.body.hidden = true;
    this.status.hidden = true;
    this.heading.hidden = true;
    const prejoin = new Prejoin({ who: who ? `${who.first_name ?? ''} ${who.last_name ?? ''}`.trim() || who.email : null });
    this.prejoinScreen = prejoin;
    const join = h('button', { type: 'button', id: 'prejoin-join', 'data-testid': 'prejoin-join' }, t('join_submit'));
    const title = h('h1', { 'data-testid': 'prejoin-title' }, t('prejoin_title'));
    // A teacher with several rooms sees which one they are about to open.
    if (who) {
      get(`/api/rooms/${this.room}`)
        .then((room) => {
          if (room?.name) title.textContent = t('prejoin_title_room', room.name);
        })
        .catch(() => {
          // Not their own room (or the API is away): the title without the name.
        });
    }
    const card = h(
      'section',
      { class: 'card prejoin-card' },
      title,
      h('div', { class: 'prejoin-layout' }, prejoin.el, h('div', { class: 'prejoin-form' }, h('p', {}, t('prejoin_intro')), join)),
    );
    this.main.append(card);
    prejoin.open();
    join.focus();
    await new Promise((resolve) => join.addEventListener('click', resolve, { once: true }));
    const choice = prejoin.result();
    prejoin.close();
    this.prejoinScreen = null;
    card.remove();
    this.body.hidden = false;
    this.status.hidden = false;
    this.heading.hidden = false;
    this.remember(choice);
    return choice;
  }

  /** Keeps the choices in this tab's history entry: a reload rejoins without asking again. */
  remember(choice) {
    const { camOn, micOn, mic, camera } = choice;
    history.replaceState({ ...history.state, aulaJoined: { room: this.room, camOn, micOn, mic, camera } }, '');
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

  destroy() {
    if (!this.closed) this.send({ type: 'leave' });
    this.closed = true;
    this.prejoinScreen?.close();
    this.stopShortcuts();
    this.stageObserver?.disconnect();
    this.phone?.removeEventListener('change', this.onPhoneChange);
    this.followKeyboard(false);
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectedTimer);
    this.disconnectedTimer = null;
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.closePeers();
    this.stopLocal();
    window.__aula = undefined;
  }
}

/** A phone held upright or sideways (the stylesheet's phone layout has the same query). */
const PHONE = '(max-width: 600px), (max-height: 500px)';

// The parts' methods become the meeting's; a name given twice would silently shadow one.
for (const part of [Signalling, Media, People, Chat, Stage, Controls, Sounds]) {
  for (const name of Object.getOwnPropertyNames(part.prototype)) {
    if (name === 'constructor') continue;
    if (Object.hasOwn(Meeting.prototype, name)) throw new Error(`meeting: ${name} is defined twice`);
    Object.defineProperty(Meeting.prototype, name, Object.getOwnPropertyDescriptor(part.prototype, name));
  }
}
