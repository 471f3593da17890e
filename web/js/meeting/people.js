// The people in the meeting: their tiles and the participant list, the lobby, moderation
// (admit, deny, mute, remove), raised hands and the active speaker.
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { post } from '../api.js';
import { language, t } from '../i18n.js';
import { icon } from '../icons.js';
import { errorText, h, toast } from '../ui.js';

export class People {
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
    // The node's view of this person's connection (moderators see everyone's, each person
    // their own): shown by renderQuality.
    const quality = h('span', { class: 'quality', 'data-testid': 'quality', hidden: true });
    // A shared screen can fill the monitor (a worksheet, a slide).
    const fullscreen = h(
      'button',
      {
        type: 'button',
        class: 'small secondary fullscreen',
        'data-action': 'fullscreen',
        hidden: true,
        onclick: () => screen.requestFullscreen?.().catch(() => {}),
      },
      icon('expand'),
      t('fullscreen'),
    );
    // In the speaker view, a person can be kept large (a pupil presenting, the teacher).
    const pin = self
      ? null
      : h(
          'button',
          {
            type: 'button',
            class: 'small secondary pin',
            'data-action': 'pin',
            'aria-pressed': 'false',
            title: t('pin'),
            onclick: () => this.togglePin(participant),
          },
          icon('pin', t('pin')),
        );
    const el = h(
      'figure',
      { class: 'tile', 'data-testid': 'tile', 'data-participant': participant || null, 'data-self': self || null },
      avatar,
      camera,
      screen,
      audio,
      h('div', { class: 'tile-actions' }, fullscreen, pin),
      h('figcaption', {}, quality, name, badges),
    );
    // The large tile takes the shape of its picture, which is known with the first frame
    // and changes when a sharer resizes a window or a camera turns.
    for (const video of [camera, screen]) video.addEventListener('resize', () => this.sizeTiles());
    return { el, name, badges, camera, screen, audio, avatar, fullscreen, pin, quality };
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

  /** The node's `connection_quality` frame: about oneself, or (to moderators) anyone. */
  connectionQuality({ participant, quality, video_paused }) {
    (this.qualities ??= new Map()).set(participant, { quality, paused: video_paused });
    if (participant === this.me) this.renderQuality(this.selfTile, participant);
    else if (this.tiles?.has(participant)) this.renderQuality(this.tiles.get(participant), participant);
  }

  /** A tile's connection mark: three bars, as many lit as the connection is good, and a
   * name that says it ("Verbindung: schlecht (Video pausiert)"). Until the node reports
   * otherwise a connection counts as good; pupils see only their own. */
  renderQuality(tile, participant) {
    const shown = participant === this.me || this.role === 'moderator';
    tile.quality.hidden = !shown;
    if (!shown) return;
    const { quality, paused } = this.qualities?.get(participant) ?? { quality: 'good', paused: false };
    const label = t('quality_label', t(`quality_${quality}`)) + (paused ? ` ${t('quality_paused')}` : '');
    const d = tile.quality.dataset;
    if (d.quality === quality && d.paused === String(paused) && d.lang === language()) return;
    Object.assign(d, { quality, paused: String(paused), lang: language() });
    tile.quality.replaceChildren(qualityBars(quality, label));
  }

  renderPeople() {
    const moderator = this.role === 'moderator';
    this.orderHands();
    if (this.selfTile) this.renderQuality(this.selfTile, this.me);
    const items = [];
    for (const p of this.peers.values()) {
      this.names.set(p.participant, p.name);
      const tile = this.peerTile(p.participant);
      tile.name.textContent = p.name;
      tile.name.title = p.name;
      tile.avatar.textContent = initials(p.name);
      tile.badges.replaceChildren(
        ...[p.muted ? icon('mic-off', t('muted')) : null, p.hand_raised ? icon('hand', t('hand_raised')) : null].filter(
          Boolean,
        ),
      );
      this.renderQuality(tile, p.participant);
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
        p.muted ? h('span', { class: 'badge' }, icon('mic-off'), t('muted')) : null,
        p.hand_raised ? h('span', { class: 'badge hand' }, icon('hand'), t('hand_raised_nth', this.handPlace(p.participant))) : null,
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
    this.renderHands();
    this.refreshChatTargets();
    this.renderModeration();
    this.renderBadges();
    this.layout();
  }

  /** Raised hands in the order they went up (as this page saw them; those already up when
   * it joined in the order the node listed them). */
  orderHands() {
    const up = new Set([...this.peers.values()].filter((p) => p.hand_raised).map((p) => p.participant));
    if (this.hand) up.add(this.me);
    for (const p of [...this.handOrder.keys()]) if (!up.has(p)) this.handOrder.delete(p);
    for (const p of up) {
      if (this.handOrder.has(p)) continue;
      this.handOrder.set(p, (this.handSeq = (this.handSeq || 0) + 1));
      // The teacher hears a hand go up; not their own, and not those already up at joining.
      if (this.role === 'moderator' && p !== this.me && this.handsSeen) this.chime('hand');
    }
    if (this.welcomed) this.handsSeen = true;
  }

  handPlace(participant) {
    return [...this.handOrder].sort((a, b) => a[1] - b[1]).findIndex(([p]) => p === participant) + 1;
  }

  /** The queue of raised hands: everyone sees it, the teacher can lower each. */
  renderHands() {
    const queue = [...this.handOrder].sort((a, b) => a[1] - b[1]).map(([p]) => p);
    this.handsPanel.hidden = queue.length === 0;
    const moderator = this.role === 'moderator';
    this.handList.replaceChildren(
      ...queue.map((p) =>
        h(
          'li',
          { 'data-participant': p },
          icon('hand'),
          h('span', { class: 'name' }, p === this.me ? t('you') : this.peers.get(p)?.name ?? ''),
          moderator && p !== this.me
            ? h('span', { class: 'actions' }, h('button', { type: 'button', class: 'small secondary', 'data-action': 'lower-hand', onclick: () => this.send({ type: 'lower_hand', participant: p }) }, t('lower_hand')))
            : null,
        ),
      ),
    );
  }

  /** The node paused (or resumed) a video because this connection does not carry it. */
  videoPaused({ participant, paused }) {
    const tile = this.peerTile(participant);
    tile.paused ??= h('span', { class: 'paused-note', role: 'status' }, t('video_paused'));
    if (!tile.paused.isConnected) tile.el.append(tile.paused);
    tile.paused.hidden = !paused;
    tile.el.classList.toggle('paused', paused);
  }

  renderLobby() {
    this.lobbyPanel.hidden = this.role !== 'moderator';
    this.renderModeration();
    if (this.knocking.size === 0) {
      this.lobbyList.replaceChildren(h('li', { class: 'muted', 'data-testid': 'lobby-empty' }, t('lobby_empty')));
      return;
    }
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

  toggleHand() {
    this.hand = !this.hand;
    (this.handSent ??= []).push({ raised: this.hand, at: Date.now() });
    this.send({ type: 'raise_hand', raised: this.hand });
    this.renderOwnControls();
    this.renderPeople();
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

/** Three signal bars as inline SVG, `lit` of them filled (3 good, 2 fair, 1 poor). */
function qualityBars(quality, label) {
  const NS = 'http://www.w3.org/2000/svg';
  const lit = { good: 3, fair: 2, poor: 1 }[quality] ?? 3;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const title = document.createElementNS(NS, 'title');
  title.textContent = label;
  svg.append(title);
  for (let i = 0; i < 3; i++) {
    const bar = document.createElementNS(NS, 'rect');
    const height = 5 + 4 * i;
    bar.setAttribute('x', String(1 + 5 * i));
    bar.setAttribute('y', String(15 - height));
    bar.setAttribute('width', '4');
    bar.setAttribute('height', String(height));
    bar.setAttribute('rx', '1');
    if (i < lit) bar.setAttribute('class', 'lit');
    svg.append(bar);
  }
  return svg;
}
