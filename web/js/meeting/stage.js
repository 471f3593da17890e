// The stage: which tile is large and how the tiles share the window. Speaker view: one tile
// large (a shared screen first, then a pinned person, the active speaker, the teacher), the
// others in a strip below; gallery view: every tile as large as the window allows for their
// number. A shared screen switches to the speaker view by itself (and back when it ends,
// unless the view was chosen meanwhile).
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { t } from '../i18n.js';
import { icon } from '../icons.js';

/** Gaps between tiles in px (the stylesheet's 0.5rem). */
const GAP = 8;

/** The share of a camera picture's width or height the large tile may crop away to fill
 * its room (a face stays whole; a whiteboard behind loses its edges at most). */
const MAX_CROP = 1 / 3;

/** Below this height in px the speaker view leaves out the strip. */
const COMPACT = 240;

/**
 * The large tile's size in a room of `w`×`h` px, so that it shows no black bars: a shared
 * screen at its own aspect ratio, as large as fits (never cropped: a worksheet must be read
 * whole); a camera filling the room, cropped up to MAX_CROP of its picture, the tile
 * narrowed or lowered where filling would crop more (a 16:9 camera on an upright phone);
 * a tile without a picture (initials) filling the room.
 */
export function featureSize(tile, w, h) {
  const screen = tile?.querySelector('video[data-source="screen"]:not([hidden])');
  const camera = tile?.querySelector('video[data-source="camera"]');
  const cameraShown = camera && !tile.matches('.no-video, .camera-off, .paused') && getComputedStyle(camera).display !== 'none';
  const video = screen ?? (cameraShown ? camera : null);
  if (!video || w <= 0 || h <= 0) return { width: Math.max(w, 0), height: Math.max(h, 0) };
  // Before the first frame the size is unknown: cameras send 16:9 (CAMERA in prejoin.js asks for it).
  const aspect = video.videoWidth > 0 && video.videoHeight > 0 ? video.videoWidth / video.videoHeight : 16 / 9;
  if (video === screen) {
    const width = Math.min(w, h * aspect);
    return { width, height: width / aspect };
  }
  const keep = 1 - MAX_CROP;
  if (w / h > aspect / keep) return { width: (h * aspect) / keep, height: h };
  if (w / h < aspect * keep) return { width: w, height: w / (aspect * keep) };
  return { width: w, height: h };
}

export class Stage {
  /** The view chosen by hand (it stays, also when a share starts or ends). */
  setView(view) {
    this.view = view;
    this.autoView = null;
    this.layout();
  }

  /** The participant shown large in the speaker view (null: oneself). */
  featured() {
    const others = [...this.peers.values()].map((p) => p.participant).filter((p) => this.tiles?.has(p));
    const sharing = others.find((p) => !this.tiles.get(p).screen.hidden);
    if (sharing) return sharing;
    if (this.pinned && others.includes(this.pinned)) return this.pinned;
    if (this.active && others.includes(this.active)) this.lastActive = this.active;
    if (this.lastActive && others.includes(this.lastActive)) return this.lastActive;
    return others.find((p) => this.peers.get(p)?.role === 'moderator') ?? others[0] ?? null;
  }

  /** Puts the tiles where the view wants them; called whenever people, tracks or the
   * window change. */
  layout() {
    if (!this.grid) return;
    const anyShare = [...(this.tiles?.values() || [])].some((tile) => !tile.screen.hidden);
    // A share that starts opens large; when it ends, the gallery it replaced comes back.
    if (anyShare && !this.sharedBefore && this.view === 'gallery') {
      this.view = 'speaker';
      this.autoView = 'gallery';
    } else if (!anyShare && this.sharedBefore && this.autoView) {
      this.view = this.autoView;
      this.autoView = null;
    }
    this.sharedBefore = anyShare;
    const featured = this.featured();
    this.grid.dataset.view = this.view;
    const all = [[null, this.selfTile], ...(this.tiles || [])];
    for (const [p, tile] of all) {
      const large = this.view === 'speaker' && (p === featured || (featured === null && p === null));
      tile.el.classList.toggle('featured', large);
      tile.el.classList.toggle('pinned', p !== null && p === this.pinned);
      if (tile.pin) {
        tile.pin.setAttribute('aria-pressed', String(p === this.pinned));
        tile.pin.hidden = this.view !== 'speaker';
      }
      // The teacher first (pupils look for them), oneself last.
      const role = p && this.peers.get(p)?.role;
      tile.el.style.order = large ? '-2' : role === 'moderator' ? '-1' : p === null ? '1' : '0';
    }
    this.viewButton.replaceChildren(
      icon(this.view === 'speaker' ? 'gallery' : 'speaker'),
      t(this.view === 'speaker' ? 'view_gallery' : 'view_speaker'),
    );
    this.viewButton.title = `${t(this.view === 'speaker' ? 'view_gallery' : 'view_speaker')} (G)`;
    this.sizeTiles();
  }

  /** Gallery: the column count that gives the largest 16:9 tiles in the stage. Speaker view:
   * the strip's height, a fifth of the stage, and the large tile's size (featureSize). */
  sizeTiles() {
    const W = this.grid.clientWidth;
    const H = this.grid.clientHeight;
    if (W < 10 || H < 10) return;
    if (this.view === 'speaker') {
      // A stage this low (a phone with the chat and the keyboard open) shows only the large
      // tile: with a strip beside it the teacher would be a stamp.
      const compact = H < COMPACT;
      this.grid.classList.toggle('compact', compact);
      const others = compact ? 0 : this.grid.querySelectorAll('.tile:not(.featured)').length;
      const strip = others ? Math.max(72, Math.min(160, H / 5)) : 0;
      this.grid.style.setProperty('--strip', `${Math.round(strip)}px`);
      const large = this.grid.querySelector('.tile.featured');
      const { width, height } = featureSize(large, W, others ? H - strip - GAP : H);
      this.grid.style.setProperty('--feature-w', `${Math.floor(width)}px`);
      this.grid.style.setProperty('--feature-h', `${Math.floor(height)}px`);
      return;
    }
    const n = this.grid.querySelectorAll('.tile').length;
    let best = 0;
    for (let cols = 1; cols <= n; cols += 1) {
      const rows = Math.ceil(n / cols);
      const w = Math.min((W - GAP * (cols - 1)) / cols, ((H - GAP * (rows - 1)) / rows) * (16 / 9));
      best = Math.max(best, w);
    }
    this.grid.style.setProperty('--tile-w', `${Math.floor(best)}px`);
  }

  watchStage() {
    this.stageObserver = new ResizeObserver(() => this.sizeTiles());
    this.stageObserver.observe(this.stage);
  }

  /** In the speaker view, one person stays large until unpinned (or someone shares). */
  togglePin(participant) {
    this.pinned = this.pinned === participant ? null : participant;
    this.layout();
  }

  /** The shared screen (or the large tile's picture) fills the monitor. */
  fullscreenShare() {
    const featured = this.featured();
    const tile = featured === null ? null : this.tiles?.get(featured);
    if (!tile) return;
    const el = tile.screen.hidden ? tile.el : tile.screen;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else el.requestFullscreen?.().catch(() => {});
  }
}
