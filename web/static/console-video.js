// Video in the agent console: joining a conversation's video with the
// console's own peer connection (media.join), the customer's camera and
// shared screen, the agent's camera and screen, snapshots, where the call's
// audio goes (voice.route), and live receive statistics.
//
// One conversation's video at a time: joining another one leaves the first.

import { h, apiError, newId } from './chat.js';
import {
  Negotiator, RemoteTiles, StillPreview, VideoStats, captureStill, cameraConstraints, keepResolution,
  mediaErrorText, restartIceWhenLost, statsText, stillName,
} from './video.js';

const API = '/api/v1';

/**
 * ConsoleVideo options:
 *   send(frame) -> bool   sends a frame on the console's socket
 *   note(text)            shows a notice
 *   log(convId)           the ChatLog of a conversation, to show a sent snapshot
 */
export class ConsoleVideo {
  constructor({ send, note, log }) {
    this.send = send;
    this.note = note;
    this.logOf = log;
    this.conv = null; // the selected conversation's data
    this.s = null; // the joined session: {convId, pc, neg, mic, cam, screen, stats}
    this.hasVideo = new Map(); // conversation id -> the customer's video is on
    this.route = new Map(); // conversation id -> "phone" | "console"
    this.iceServers = [];
    this.build();
  }

  build() {
    const button = (testid, text) => h('button', { type: 'button', class: `vbutton ${testid}`, 'data-testid': testid, 'aria-pressed': 'false', text });
    this.joinButton = button('video-join', 'Video');
    this.cameraButton = button('video-camera', 'Camera');
    this.screenButton = button('video-screen', 'Share screen');
    this.snapshotButton = button('snapshot', 'Snapshot');
    this.routeButton = button('audio-route', 'Move audio to console');
    this.statsEl = h('span', { class: 'vstats', 'data-testid': 'video-stats', role: 'status', 'aria-live': 'off' });
    this.joinButton.addEventListener('click', () => (this.joined() ? this.leave() : this.join()));
    this.cameraButton.addEventListener('click', () => (this.s?.cam ? this.stopCamera() : this.startCamera()));
    this.screenButton.addEventListener('click', () => (this.s?.screen ? this.stopScreen() : this.startScreen()));
    this.snapshotButton.addEventListener('click', () => this.snapshot());
    this.routeButton.addEventListener('click', () => this.toggleRoute());

    const video = (testid, label) => {
      const v = h('video', { class: 'vtile-video', 'data-testid': testid, 'aria-label': label, autoplay: true, playsinline: true, muted: true });
      v.muted = true;
      return v;
    };
    this.remoteVideo = video('remote-video', 'The customer\'s camera');
    this.remoteScreen = video('remote-screen', 'The customer\'s shared screen');
    this.localVideo = video('local-video', 'Your camera');
    const tile = (cls, v, label) => h('div', { class: `vtile ${cls}`, hidden: true }, v, h('span', { class: 'vtile-label', text: label }));
    this.localTile = tile('self', this.localVideo, 'You');
    this.tiles = new RemoteTiles(this.remoteVideo, this.remoteScreen, () => this.render());
    this.stage = h('div', { class: 'vstage', 'data-testid': 'video-stage', hidden: true },
      tile('remote', this.remoteVideo, 'Customer'), tile('screen', this.remoteScreen, 'Customer\'s screen'), this.localTile);
    this.preview = new StillPreview({ onSend: (blob) => this.upload(blob) });
    this.audio = h('audio', { class: 'vaudio', 'data-testid': 'video-audio', autoplay: true });
    this.el = h('section', { class: 'video-panel', 'data-testid': 'video-panel', 'aria-label': 'Video', hidden: true },
      h('div', { class: 'vtools', role: 'toolbar' },
        this.joinButton, this.cameraButton, this.screenButton, this.snapshotButton, this.routeButton, this.statsEl),
      this.stage, this.preview.el, this.audio);
    const css = h('link', { rel: 'stylesheet', href: '/console-video.css' });
    document.head.append(css);
    const anchor = document.getElementById('callbar') ?? document.getElementById('log-slot');
    anchor.after(this.el);
  }

  joined() {
    return Boolean(this.s && this.s.convId === this.conv?.id);
  }

  /** show follows the selected conversation (null when none). */
  show(data) {
    this.conv = data ?? null;
    if (this.conv?.state === 'ended' && this.s?.convId === this.conv.id) this.leave();
    this.render();
  }

  /** seen notes video events of a transcript message; live says it just happened. */
  seen(m, live) {
    const name = m?.event?.name;
    const id = m?.conversation_id;
    if (!name || !id) return;
    if (m.event?.data?.by === 'customer') this.tiles.event(m); // stream ids are unique: one set serves every conversation
    if (name === 'video.started') {
      this.hasVideo.set(id, true);
      // The customer turned the camera on in the conversation on screen: join.
      if (live && this.conv?.id === id && this.conv.state !== 'ended' && !this.s) this.join();
    } else if (name === 'video.ended') {
      this.hasVideo.set(id, false);
      // The customer's video is over: leave too, unless we are showing ours.
      if (live && this.s?.convId === id && !this.s.cam && !this.s.screen) this.leave();
    } else if (name === 'voice.routed') {
      this.route.set(id, m.event.data?.to === 'console' ? 'console' : 'phone');
    } else if (name === 'conversation.ended' && this.s?.convId === id) {
      this.leave();
    }
    if (this.conv?.id === id) this.render();
  }

  /**
   * freshIceServers renews TURN credentials made from a secret when those
   * of the welcome have less than ten minutes left (a console stays open
   * for a whole shift).
   */
  async freshIceServers() {
    if (!this.iceExpires || this.iceExpires * 1000 - Date.now() > 10 * 60_000) return;
    try {
      const res = await fetch('/api/v1/ice-servers', { credentials: 'same-origin' });
      if (!res.ok) return;
      const f = await res.json();
      this.iceServers = f.ice_servers ?? this.iceServers;
      this.iceExpires = f.ice_expires_at ?? 0;
    } catch { /* unreachable: join with what we have */ }
  }

  /** onFrame takes video frames; it returns true for those it handled. */
  onFrame(f) {
    switch (f.type) {
      case 'welcome':
        this.iceServers = f.features?.ice_servers ?? this.iceServers;
        this.iceExpires = f.features?.ice_expires_at ?? 0;
        for (const m of f.messages ?? []) this.seen(m, false);
        return false;
      case 'history':
        for (const m of f.messages ?? []) this.seen({ ...m, conversation_id: m.conversation_id ?? f.conversation_id }, false);
        return false;
      case 'message':
        this.seen(f.message, true);
        return false;
      case 'rtc.offer':
      case 'rtc.answer':
      case 'rtc.candidate':
        if (this.s?.neg && f.conversation_id === this.s.convId) return this.s.neg.onFrame(f);
        return false;
      case 'error':
        return this.s?.neg?.onFrame(f) ?? false;
      default:
        return false;
    }
  }

  /**
   * resume squares video with the gateway once the socket is back and the
   * console has chosen the conversation on screen. The welcome's media
   * says, per conversation, whether the customer's video is on and whether
   * this page holds the console's session. A session the gateway still
   * holds goes on (an offer whose answer was lost goes out again); one it
   * closed (the page was away too long) is dropped here too; one it holds
   * that this page dropped meanwhile is left. After a reload, or a dropped
   * session, the console joins the customer's video of the conversation on
   * screen again, with its own camera off, unless another console tab
   * holds it.
   */
  resume(f) {
    const media = f.media ?? {};
    for (const id of this.hasVideo.keys()) this.hasVideo.set(id, Boolean(media[id]?.customer_video));
    for (const [id, m] of Object.entries(media)) this.hasVideo.set(id, Boolean(m.customer_video));
    const s = this.s;
    if (s && (media[s.convId]?.joined || !s.neg?.ready)) {
      s.neg?.resume(); // an unanswered media.join goes out again too
    } else if (s) {
      this.leave(false);
    }
    for (const [id, m] of Object.entries(media)) {
      if (m.joined && this.s?.convId !== id) this.send({ type: 'media.leave', conversation_id: id });
    }
    const c = this.conv;
    const m = c && media[c.id];
    if (c?.state !== 'ended' && !this.s && m?.customer_video && !m.elsewhere) this.join();
    this.render();
  }

  /** join opens the console's peer connection for the selected conversation. */
  async join() {
    const conv = this.conv;
    if (!conv || conv.state === 'ended') return;
    if (this.s) this.leave();
    const s = { convId: conv.id, pc: null, neg: null, mic: null, cam: null, screen: null, stats: null };
    this.s = s;
    this.render();
    try {
      s.mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      this.note(`${mediaErrorText(err, 'microphone')}: joining without it`);
    }
    await this.freshIceServers();
    if (this.s !== s) {
      for (const t of s.mic?.getTracks() ?? []) t.stop();
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    s.pc = pc;
    s.neg = new Negotiator(pc, {
      send: this.send,
      extra: { conversation_id: conv.id },
      firstOffer: 'media.join',
      onError: (text) => { this.note(text); if (!s.neg.ready && this.s === s) this.leave(); },
      onReady: () => this.render(),
    });
    pc.addEventListener('track', (e) => {
      if (this.s !== s) return;
      if (e.track.kind === 'audio') {
        this.audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
        this.audio.play().catch(() => {});
        return;
      }
      this.tiles.add(e);
    });
    pc.addEventListener('connectionstatechange', () => { if (this.s === s) this.render(); });
    s.stopIce = restartIceWhenLost(pc);
    if (s.mic) {
      for (const t of s.mic.getAudioTracks()) pc.addTrack(t, s.mic);
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
    }
    s.stats = new VideoStats(pc, (rows) => this.showStats(rows));
    this.render();
  }

  /** handedOver drops the video of a conversation transferred to someone else (the gateway closed it). */
  handedOver(id) {
    this.hasVideo.delete(id);
    if (this.s?.convId === id) this.leave(false);
  }

  /** leave closes the console's session; tell is false when the gateway has closed it already. */
  leave(tell = true) {
    const s = this.s;
    if (!s) return;
    this.s = null;
    s.stats?.stop();
    s.stopIce?.();
    s.neg?.close();
    if (tell && s.neg?.ready) this.send({ type: 'media.leave', conversation_id: s.convId });
    s.pc?.close();
    for (const t of [...(s.mic?.getTracks() ?? []), s.cam?.track, s.screen?.track]) t?.stop();
    this.tiles.clear();
    this.localVideo.srcObject = null;
    this.audio.srcObject = null;
    this.statsEl.textContent = '';
    this.preview.close();
    this.render();
  }

  async startCamera() {
    const s = this.s;
    if (!s?.pc || s.cam) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints('user') });
      const track = stream.getVideoTracks()[0];
      if (this.s !== s) { track.stop(); return; }
      const sender = s.pc.addTrack(track, stream);
      keepResolution(sender);
      s.cam = { track, sender };
      this.localVideo.srcObject = new MediaStream([track]);
      this.localVideo.play().catch(() => {});
    } catch (err) {
      this.note(mediaErrorText(err));
    }
    this.render();
  }

  stopCamera() {
    const s = this.s;
    if (!s?.cam) return;
    s.cam.track.stop();
    try { s.pc.removeTrack(s.cam.sender); } catch { /* closed */ }
    s.cam = null;
    this.localVideo.srcObject = s.screen ? new MediaStream([s.screen.track]) : null;
    this.render();
  }

  async startScreen() {
    const s = this.s;
    if (!s?.pc || s.screen) return;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      const track = stream.getVideoTracks()[0];
      if (this.s !== s) { track.stop(); return; }
      track.contentHint = 'detail';
      const sender = s.pc.addTrack(track, stream);
      keepResolution(sender);
      s.screen = { track, sender };
      track.addEventListener('ended', () => { if (this.s === s && s.screen?.track === track) this.stopScreen(); });
      this.send({ type: 'media.event', conversation_id: s.convId, state: 'screen.started', stream: stream.id });
      if (!s.cam) {
        this.localVideo.srcObject = new MediaStream([track]);
        this.localVideo.play().catch(() => {});
      }
    } catch (err) {
      this.note(mediaErrorText(err, 'screen sharing'));
    }
    this.render();
  }

  stopScreen() {
    const s = this.s;
    if (!s?.screen) return;
    s.screen.track.stop();
    try { s.pc.removeTrack(s.screen.sender); } catch { /* closed */ }
    s.screen = null;
    this.send({ type: 'media.event', conversation_id: s.convId, state: 'screen.ended' });
    if (!s.cam) this.localVideo.srcObject = null;
    this.render();
  }

  toggleRoute() {
    const id = this.s?.convId;
    if (!id) return;
    const to = this.route.get(id) === 'console' ? 'phone' : 'console';
    if (this.send({ type: 'voice.route', conversation_id: id, state: to })) {
      this.route.set(id, to);
      this.render();
    }
  }

  /** source is what a snapshot takes: the customer's camera, else the screen, else ours. */
  source() {
    if (!this.remoteVideo.hidden && this.remoteVideo.videoWidth) return { video: this.remoteVideo, what: 'The customer\'s video' };
    if (!this.remoteScreen.hidden && this.remoteScreen.videoWidth) return { video: this.remoteScreen, what: 'The customer\'s screen' };
    if (this.localVideo.srcObject && this.localVideo.videoWidth) return { video: this.localVideo, what: 'Your camera' };
    return null;
  }

  async snapshot() {
    const src = this.source();
    if (!src) {
      this.note('No video to take a snapshot of yet.');
      return;
    }
    try {
      this.preview.show(await captureStill(src.video), src.what);
    } catch (err) {
      this.note(`No snapshot: ${err.message}`);
    }
  }

  /** upload posts a still as a snapshot file of the joined conversation. */
  async upload(blob) {
    const convId = this.s?.convId ?? this.conv?.id;
    if (!convId) throw new Error('no conversation');
    const log = this.logOf(convId);
    const id = newId();
    const name = stillName(blob);
    log?.upsert({ id, kind: 'file', from: { role: 'agent' }, file: { name, size: blob.size, uploading: true } });
    const form = new FormData();
    form.append('id', id);
    form.append('kind', 'snapshot');
    form.append('file', blob, name);
    try {
      const res = await fetch(`${API}/conversations/${encodeURIComponent(convId)}/files`, { method: 'POST', body: form, credentials: 'same-origin' });
      if (!res.ok) throw await apiError(res);
      const { message } = await res.json();
      if (message.id !== id) log?.remove(id);
      log?.upsert(message);
    } catch (err) {
      log?.fail(id, 'Upload failed');
      throw err;
    }
  }

  showStats(rows) {
    const el = this.statsEl;
    const s = this.s;
    const state = s?.pc?.connectionState ?? '';
    el.textContent = rows.length ? statsText(rows) : (state === 'connected' ? 'Connected, no video yet' : 'Connecting…');
    const main = rows.find((r) => r.dir === 'in');
    for (const k of ['width', 'height', 'fps', 'kbps']) {
      if (main) el.dataset[k] = String(main[k]);
      else delete el.dataset[k];
    }
  }

  render() {
    const conv = this.conv;
    const here = this.joined();
    const open = Boolean(conv) && conv.state !== 'ended';
    this.el.hidden = !open && !here;
    this.el.dataset.joined = String(here);
    const waiting = Boolean(conv && this.hasVideo.get(conv.id));
    this.el.dataset.customerVideo = String(waiting);
    this.joinButton.setAttribute('aria-pressed', String(here));
    this.joinButton.textContent = here ? 'Leave video' : (waiting ? 'Join the customer\'s video' : 'Video');
    this.joinButton.classList.toggle('attention', waiting && !here);
    this.cameraButton.hidden = !here;
    this.cameraButton.setAttribute('aria-pressed', String(Boolean(this.s?.cam)));
    this.cameraButton.textContent = this.s?.cam ? 'Camera off' : 'Camera';
    this.screenButton.hidden = !here || !navigator.mediaDevices?.getDisplayMedia;
    this.screenButton.setAttribute('aria-pressed', String(Boolean(this.s?.screen)));
    this.screenButton.textContent = this.s?.screen ? 'Stop sharing' : 'Share screen';
    this.snapshotButton.hidden = !here;
    this.snapshotButton.disabled = !(this.tiles.streams.length || this.s?.cam || this.s?.screen);
    const route = (here && this.route.get(this.s.convId)) || 'phone';
    this.routeButton.hidden = !here;
    this.routeButton.dataset.route = route;
    this.routeButton.textContent = route === 'console' ? 'Move audio to the desk phone' : 'Move audio to the console';
    this.statsEl.hidden = !here;
    const local = Boolean(this.s?.cam || this.s?.screen);
    this.localTile.hidden = !here || !local;
    this.stage.hidden = !here || (!this.tiles.streams.length && !local);
    this.stage.dataset.remote = String(this.tiles.streams.length);
    // A joined conversation that is not on screen keeps its media; its
    // panel shows when it is selected again.
    this.stage.classList.toggle('elsewhere', Boolean(this.s) && !here);
  }
}
