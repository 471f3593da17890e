// The control bar's side of the meeting: the panels it opens (people, chat) and their badges,
// the keyboard shortcuts and their help, and the teacher's controls (mute all, lower all
// hands, the lobby, the invite link).
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { get, patch } from '../api.js';
import { t } from '../i18n.js';
import { errorText, h, toast } from '../ui.js';

/** Key (as `KeyboardEvent.key`, lower case) → what it does; the help dialog lists them. */
const SHORTCUTS = [
  ['m', 'shortcut_mic', (m) => m.toggleMic()],
  ['v', 'shortcut_camera', (m) => m.toggleCamera()],
  ['s', 'shortcut_screen', (m) => m.toggleScreen()],
  ['h', 'shortcut_hand', (m) => m.toggleHand()],
  ['c', 'shortcut_chat', (m) => m.togglePanel('chat')],
  ['p', 'shortcut_people', (m) => m.togglePanel('people')],
  ['g', 'shortcut_view', (m) => m.setView(m.view === 'speaker' ? 'gallery' : 'speaker')],
  ['f', 'shortcut_fullscreen', (m) => m.fullscreenShare()],
  ['?', 'shortcut_help', (m) => m.showShortcuts()],
];

export class Controls {
  /** Shows or hides a side panel (`chat`, `people`); opening the chat reads what is shown. */
  togglePanel(which, open = !this.panels[which]) {
    this.panels[which] = open;
    // A phone shows one sheet at a time.
    if (open && this.phone?.matches) {
      for (const other of Object.keys(this.panels)) if (other !== which) this.panels[other] = false;
      this.toggleMore(false);
    }
    this.chatPanel.hidden = !this.panels.chat;
    this.peoplePanel.hidden = !this.panels.people;
    this.side.hidden = !this.panels.chat && !this.panels.people;
    this.chatButton.setAttribute('aria-pressed', String(this.panels.chat));
    this.peopleButton.setAttribute('aria-pressed', String(this.panels.people));
    if (which === 'chat' && open) {
      this.viewConversation();
      this.chatInput.focus({ preventScroll: true });
    }
    this.renderBadges();
    this.sizeTiles();
  }

  /** Unread messages on the chat button, raised hands on the people button. */
  renderBadges() {
    let unread = 0;
    for (const n of this.unread.values()) unread += n;
    this.chatBadge.hidden = unread === 0;
    this.chatBadge.textContent = String(unread);
    this.chatButton.setAttribute('aria-label', unread ? `${t('chat')}, ${t('chat_unread', unread)}` : t('chat'));
    const hands = this.handOrder.size;
    this.handCount.hidden = hands === 0;
    this.handCount.textContent = String(hands);
    this.peopleButton.setAttribute('aria-label', hands ? `${t('participants')}, ${t('hands_count', hands)}` : t('participants'));
  }

  listenForShortcuts() {
    this.onKey = (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || !this.welcomed || this.closed) return;
      const el = e.target;
      // Escape leaves the message field, so that the keys are commands again.
      if (e.key === 'Escape' && el === this.chatInput) return this.chatInput.blur();
      // Typing (a chat message, a name) is not a command; nor is a key for an open dialog.
      if (el instanceof HTMLElement && (el.isContentEditable || el.closest('input, textarea, select, dialog'))) return;
      const hit = SHORTCUTS.find(([key]) => key === e.key.toLowerCase());
      if (!hit) return;
      e.preventDefault();
      hit[2](this);
    };
    document.addEventListener('keydown', this.onKey);
  }

  stopShortcuts() {
    if (this.onKey) document.removeEventListener('keydown', this.onKey);
    this.onKey = null;
  }

  showShortcuts() {
    if (document.querySelector('dialog[data-testid=shortcuts]')) return;
    const dialog = h(
      'dialog',
      { 'data-testid': 'shortcuts', 'aria-labelledby': 'shortcuts-title' },
      h('h2', { id: 'shortcuts-title' }, t('shortcuts')),
      h(
        'dl',
        { class: 'shortcuts' },
        ...SHORTCUTS.flatMap(([key, what]) => [h('dt', {}, h('kbd', {}, key.toUpperCase())), h('dd', {}, t(what))]),
      ),
      h('p', { class: 'muted' }, t('shortcuts_hint')),
      h('div', { class: 'row spread' }, h('button', { type: 'button', 'data-answer': 'close', autofocus: true, onclick: () => dialog.close() }, t('close')), h('a', { href: '/privacy', target: '_blank' }, t('privacy'))),
    );
    dialog.addEventListener('close', () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
  }

  // ---- the teacher's controls ------------------------------------------------------

  /** The room's invite link and lobby setting, for the teacher's controls. */
  async loadRoom() {
    if (this.roomInfo || this.role !== 'moderator') return;
    this.roomInfo = {};
    try {
      this.roomInfo = await get(`/api/rooms/${this.room}`);
    } catch {
      // Not this teacher's own room (or the API is away): no link and no lobby switch.
      this.roomInfo = null;
      return;
    }
    this.inviteInput.value = this.roomInfo.invite_url;
    this.invite.hidden = false;
    this.renderLobbyButton();
  }

  renderModeration() {
    const moderator = this.role === 'moderator';
    this.modGroup.hidden = !moderator;
    this.soundButton.hidden = !moderator;
    if (!moderator) return;
    this.loadRoom();
    this.muteAllButton.label.textContent = t('mute_all');
    this.lowerHandsButton.label.textContent = t('lower_hands');
    this.lowerHandsButton.disabled = ![...this.peers.values()].some((p) => p.hand_raised);
    this.endButton.label.textContent = t('end_meeting');
    this.renderLobbyButton();
  }

  renderLobbyButton() {
    const on = !!this.roomInfo?.settings?.lobby;
    this.lobbyButton.disabled = !this.roomInfo?.settings;
    this.lobbyButton.setAttribute('aria-pressed', String(on));
    this.lobbyButton.label.textContent = on ? t('lobby_on') : t('lobby_off');
    this.lobbyButton.title = t(on ? 'lobby_on_hint' : 'lobby_off_hint');
  }

  async toggleLobby() {
    const on = !this.roomInfo?.settings?.lobby;
    try {
      const room = await patch(`/api/rooms/${this.room}`, { settings: { lobby: on } });
      this.roomInfo = room;
      toast(t(on ? 'lobby_on_hint' : 'lobby_off_hint'));
    } catch (e) {
      toast(errorText(e), 'error');
    }
    this.renderLobbyButton();
  }

  muteAll() {
    let n = 0;
    for (const p of this.peers.values()) {
      if (p.role !== 'guest' || p.muted) continue;
      this.send({ type: 'mute', participant: p.participant });
      n += 1;
    }
    toast(n ? t('muted_all', n) : t('muted_all_none'));
  }

  lowerAllHands() {
    for (const p of this.peers.values()) {
      if (p.hand_raised) this.send({ type: 'lower_hand', participant: p.participant });
    }
    if (this.hand) this.toggleHand();
  }

  async copyInvite() {
    try {
      await navigator.clipboard.writeText(this.inviteInput.value);
      toast(t('join_link_copied'));
    } catch {
      // No clipboard permission: select it, so Ctrl+C copies.
      this.inviteInput.select();
    }
  }

  /** Our own state as the node reports it back: a teacher may have lowered our hand. The
   * echoes of what we sent ourselves (`handSent`, oldest first) are not that: only a
   * lowering when none of ours is on its way counts. */
  selfUpdated(peer) {
    const now = Date.now();
    // An echo lost with a connection must not hold up what comes after.
    this.handSent = (this.handSent || []).filter((x) => now - x.at < 3_000);
    if (this.handSent.length > 0) {
      if (this.handSent[0].raised === peer.hand_raised) this.handSent.shift();
      return;
    }
    if (peer.hand_raised || !this.hand) return;
    this.hand = false;
    this.renderOwnControls();
    this.renderPeople();
    toast(t('hand_lowered'));
  }
}
