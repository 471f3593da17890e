// Our media: the devices (microphone, camera, their lists), the own controls, screen
// sharing, and the two connections to the node: publish (simulcast camera, Opus with DTX) and
// subscribe (the others' tracks into their tiles).
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { errorText, h, toast } from '../ui.js';
import { CAMERA } from './prejoin.js';

export class Media {
  /** Our devices as chosen on the pre-join screen: its open stream, or opened here (after a
   * reload) with the same choices. */
  async openDevices(choice) {
    this.micOn = choice.micOn !== false;
    this.camOn = choice.camOn !== false;
    let stream = choice.stream;
    if (!stream) {
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          audio: choice.mic ? { deviceId: { ideal: choice.mic } } : true,
          video: this.camOn ? { ...CAMERA, ...(choice.camera && { deviceId: { ideal: choice.camera } }) } : false,
        });
      } catch {
        stream = null;
      }
    }
    this.local.audio = stream?.getAudioTracks()[0] || null;
    this.local.video = this.camOn ? stream?.getVideoTracks()[0] || null : null;
    if (!stream) toast(t('no_devices'), 'error');
    if (this.local.audio) this.local.audio.enabled = this.micOn;
    // Without a camera there is nothing to switch on.
    if (this.camOn && !this.local.video) this.camOn = false;
    this.selfTile.camera.srcObject = this.local.video ? new MediaStream([this.local.video]) : null;
    this.selfTile.name.textContent = t('you');
    this.selfTile.avatar.textContent = t('you');
    await this.listDevices();
    this.hasCamera = [...this.camSelect.options].length > 0 || !!this.local.video;
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
    // A camera that is off stays off; the choice counts when it is switched on.
    if (kind === 'video' && !this.camOn) return;
    try {
      const constraints = { deviceId: { exact: select.value } };
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: kind === 'video' ? { ...CAMERA, ...constraints } : constraints });
      const track = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
      const old = this.local[kind];
      if (kind === 'audio') track.enabled = this.micOn;
      this.local[kind] = track;
      const sender = this.publishPc?.getSenders().find((s) => s.track === old);
      if (sender) await sender.replaceTrack(track);
      old?.stop();
      if (kind === 'video') this.selfTile.camera.srcObject = new MediaStream([track]);
    } catch (e) {
      toast(errorText(e), 'error');
    }
  }

  /**
   * Publishes what is on (microphone, camera, screen) on a new connection; a second call
   * replaces the first (`restart`) instead of renegotiating it: the camera is sent as
   * simulcast, and after a renegotiation the node's WebRTC stack no longer knows which stream
   * is which layer (the browser has stopped naming them in its packets).
   */
  async publish() {
    const old = this.publishPc;
    const iceServers = await this.iceServers();
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers });
    this.publishPc = pc;
    window.__aula.publish = pc;
    this.sources = new Map(); // transceiver -> source
    if (this.local.audio) this.sources.set(pc.addTransceiver(this.local.audio, { direction: 'sendonly' }), 'microphone');
    // Simulcast: the node forwards the small layer to the grid and the large one for the
    // active speaker, so a class of 30 does not download 20 full-size cameras each.
    if (this.local.video) {
      const layers = cameraLayers(this.local.video.getSettings?.().height ?? 360);
      this.sources.set(pc.addTransceiver(this.local.video, { direction: 'sendonly', sendEncodings: layers }), 'camera');
    }
    if (this.local.screen) this.sources.set(pc.addTransceiver(this.local.screen, { direction: 'sendonly' }), 'screen');
    if (this.local.audio && !this.micOn) this.send({ type: 'set_muted', muted: true });
    pc.onconnectionstatechange = () => this.mediaState(pc, pc.connectionState);
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

  async publishAnswered(sdp) {
    await this.publishPc?.setRemoteDescription({ type: 'answer', sdp: withOpusDtx(sdp) });
  }

  async subscribe(sdp, tracks) {
    if (!this.subscribePc) {
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: await this.iceServers() });
      this.subscribePc = pc;
      window.__aula.subscribe = pc;
      pc.ontrack = () => this.attachTracks();
      pc.onconnectionstatechange = () => this.mediaState(pc, pc.connectionState);
    }
    const pc = this.subscribePc;
    this.tracks = new Map(tracks.map((tr) => [tr.mid, tr]));
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    this.send({ type: 'subscribe_answer', sdp: pc.localDescription.sdp });
    this.attachTracks();
  }

  /** Puts every received track into its participant's tile (mids may be reused). During a
   * move a tile goes on playing the old node's track while that still delivers, until the
   * new node's has (keptTrack): the new one is silent and black until its first packets. */
  attachTracks() {
    const pc = this.subscribePc;
    if (!pc) return;
    const screens = new Set();
    const cameras = new Set();
    for (const tr of pc.getTransceivers()) {
      const info = this.tracks.get(tr.mid);
      if (!info || !tr.receiver.track) continue;
      const tile = this.peerTile(info.participant);
      const el = info.source === 'microphone' ? tile.audio : info.source === 'screen' ? tile.screen : tile.camera;
      const shown = el.srcObject?.getTracks()[0];
      if (shown !== tr.receiver.track && !this.keptTrack(shown, tr.receiver.track)) {
        el.srcObject = new MediaStream([tr.receiver.track]);
      }
      if (info.source === 'screen') screens.add(info.participant);
      if (info.source === 'camera') cameras.add(info.participant);
      el.play?.().catch(() => {});
    }
    for (const [p, tile] of this.tiles || []) {
      // Someone not (yet) on the new node keeps what the old node still brings of them.
      if (this.keptTrack(tile.screen.srcObject?.getTracks()[0])) screens.add(p);
      if (this.keptTrack(tile.camera.srcObject?.getTracks()[0])) cameras.add(p);
      tile.screen.hidden = !screens.has(p);
      if (tile.screen.hidden) tile.screen.srcObject = null;
      tile.el.classList.toggle('sharing', !tile.screen.hidden);
      tile.fullscreen.hidden = tile.screen.hidden;
      // A camera that is off (or never was on) shows the initials, not a frozen last picture.
      if (!cameras.has(p)) tile.camera.srcObject = null;
      tile.el.classList.toggle('camera-off', !cameras.has(p));
    }
    this.renderPeople();
  }

  closePeers() {
    this.finishMove();
    this.publishPc?.close();
    this.subscribePc?.close();
    this.publishPc = null;
    this.subscribePc = null;
  }

  renderOwnControls() {
    const set = (button, iconName, label, pressed, key) => {
      button.querySelector('svg')?.replaceWith(icon(iconName));
      button.label.textContent = label;
      button.title = `${label} (${key})`;
      button.setAttribute('aria-pressed', String(pressed));
    };
    set(this.micButton, this.micOn ? 'mic' : 'mic-off', this.micOn ? t('mic_on') : t('mic_off'), this.micOn, 'M');
    this.micButton.disabled = !this.local.audio;
    set(this.camButton, this.camOn ? 'camera' : 'camera-off', this.camOn ? t('cam_on') : t('cam_off'), this.camOn, 'V');
    this.camButton.disabled = !this.hasCamera;
    set(this.screenButton, this.local.screen ? 'screen-stop' : 'screen', this.local.screen ? t('screen_on') : t('screen_off'), !!this.local.screen, 'S');
    // Phones' browsers cannot share a screen: no button that can only fail.
    this.screenButton.hidden = typeof navigator.mediaDevices?.getDisplayMedia !== 'function';
    set(this.handButton, 'hand', this.hand ? t('hand_up') : t('hand_down'), this.hand, 'H');
    set(this.chatButton, 'chat', t('chat'), this.panels.chat, 'C');
    set(this.peopleButton, 'people', t('participants'), this.panels.people, 'P');
    this.leaveButton.label.textContent = t('leave');
    this.selfTile.el.classList.toggle('muted', !this.micOn);
    this.selfTile.el.dataset.muted = String(!this.micOn);
    this.selfTile.camera.hidden = !this.camOn || !this.local.video;
    this.selfTile.el.classList.toggle('camera-off', !this.camOn || !this.local.video);
    // The sharer sees a small preview of what everyone else sees large.
    const screen = this.local.screen;
    if (screen && this.selfTile.screen.srcObject?.getTracks()[0] !== screen) this.selfTile.screen.srcObject = new MediaStream([screen]);
    if (!screen) this.selfTile.screen.srcObject = null;
    this.selfTile.screen.hidden = !screen;
    this.selfTile.el.classList.toggle('sharing', !!screen);
    this.selfTile.badges.replaceChildren(
      ...[!this.micOn ? icon('mic-off', t('muted')) : null, this.hand ? icon('hand', t('hand_raised')) : null, screen ? h('span', { class: 'sharing-note' }, t('you_share')) : null].filter(Boolean),
    );
  }

  toggleMic() {
    this.micOn = !this.micOn;
    if (this.local.audio) this.local.audio.enabled = this.micOn;
    this.send({ type: 'set_muted', muted: !this.micOn });
    this.renderOwnControls();
  }

  /** Off is off: the camera is released (its light goes out) and the others see the
   * initials; on opens it again. Either way the publish connection is replaced (see
   * publish()), as for a screen share. */
  async toggleCamera() {
    if (this.camBusy) return;
    this.camBusy = true;
    try {
      if (this.camOn) {
        this.camOn = false;
        this.local.video?.stop();
        this.local.video = null;
        this.selfTile.camera.srcObject = null;
      } else {
        const id = this.camSelect.value;
        const stream = await navigator.mediaDevices.getUserMedia({ video: { ...CAMERA, ...(id && { deviceId: { ideal: id } }) } });
        this.local.video = stream.getVideoTracks()[0];
        this.camOn = true;
        this.selfTile.camera.srcObject = new MediaStream([this.local.video]);
      }
      this.renderOwnControls();
      if (this.publishPc) await this.publish();
    } catch (e) {
      toast(errorText(e), 'error');
    } finally {
      this.camBusy = false;
      this.renderOwnControls();
    }
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

  stopLocal() {
    for (const k of ['audio', 'video', 'screen']) {
      this.local[k]?.stop();
      this.local[k] = null;
    }
  }
}

/**
 * The camera's simulcast layers for the height it really captures, as Chrome will produce
 * them: it sends three layers from 960×540 up and two from 480×270 up (libwebrtc's simulcast
 * table), and asking a 640×360 camera for three left the top one, the active speaker's,
 * never sent (everyone saw 320×180). A thumbnail for the grid, a middle layer, and the full
 * picture; the browser drops layers its bandwidth estimate cannot carry, largest first.
 */
export function cameraLayers(height) {
  if (height >= 540) {
    return [
      { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: 'f', maxBitrate: 1_500_000 },
    ];
  }
  if (height >= 270) {
    return [
      { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 200_000 },
      { rid: 'f', maxBitrate: 700_000 },
    ];
  }
  return undefined;
}

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
