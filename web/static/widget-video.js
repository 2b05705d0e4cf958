// Video in the customer widget: the camera (front or back), screen sharing,
// the agent's camera, snapshots and photos sent into the chat. The chat
// stays usable beside the video.
//
// The widget hands over itself (host); WidgetVideo uses its socket, its
// session, its chat log and its notice line, and draws into its shadow root.
// When the widget already has a call's peer connection (host.voice.pc), the
// video tracks join that connection; otherwise WidgetVideo opens one. The
// camera brings the microphone along, so that the agent's console hears
// the customer; a screen share alone asks for the screen only and sends no
// audio (the microphone joins if the camera is turned on later).

import { h, apiError, newId } from './chat.js';
import {
  Negotiator, RemoteTiles, StillPreview, captureStill, cameraConstraints, hasSeveralCameras,
  keepResolution, mediaErrorText, restartIceWhenLost, stillName,
} from './video.js';

const ORIGIN = new URL(import.meta.url).origin;
const API = `${ORIGIN}/api/v1`;

export class WidgetVideo {
  constructor(host) {
    this.host = host;
    this.features = { ice_servers: [] };
    this.enabled = false;
    this.available = false; // the conversation's video flag: the customer may start video
    this.pc = null;
    this.own = false; // whether we opened this.pc (else it is the call's)
    this.neg = null;
    this.mic = null; // MediaStream, for a connection we opened
    this.cam = null; // {track, sender}
    this.screen = null; // {track, sender, stream}
    this.photo = null; // MediaStream of the camera opened only for a photo
    this.facing = 'user';
    this.pendingEvents = []; // media events that wait for our first answer
    this.build();
  }

  build() {
    const button = (testid, text, label) => {
      const b = h('button', { type: 'button', class: `video-button ${testid}`, 'data-testid': testid, 'aria-label': label, 'aria-pressed': 'false', text });
      return b;
    };
    this.cameraButton = button('video-start', 'Camera', 'Turn the camera on');
    this.switchButton = button('camera-switch', 'Flip', 'Switch between the front and back camera');
    this.switchButton.hidden = true;
    this.screenButton = button('screen-start', 'Share screen', 'Share your screen');
    this.snapshotButton = button('snapshot', 'Snapshot', 'Take a snapshot of the video');
    this.photoButton = button('photo', 'Photo', 'Send a photo from the camera');
    this.statusEl = h('span', { class: 'video-status', 'data-testid': 'video-status', role: 'status' });
    this.cameraButton.addEventListener('click', () => (this.cam ? this.stopCamera() : this.startCamera()));
    this.switchButton.addEventListener('click', () => this.switchCamera());
    this.screenButton.addEventListener('click', () => (this.screen ? this.stopScreen() : this.startScreen()));
    this.snapshotButton.addEventListener('click', () => this.snapshot());
    this.photoButton.addEventListener('click', () => (this.photo ? this.stopPhoto() : this.startPhoto()));
    this.bar = h('div', { class: 'videobar', 'data-testid': 'video-bar', role: 'toolbar', 'aria-label': 'Video', hidden: true },
      this.cameraButton, this.switchButton, this.screenButton, this.photoButton, this.snapshotButton, this.statusEl);

    const video = (testid, label) => h('video', { class: 'tile-video', 'data-testid': testid, 'aria-label': label, autoplay: true, playsinline: true, muted: true });
    this.remoteVideo = video('remote-video', 'The agent\'s camera');
    this.remoteScreen = video('remote-screen', 'The agent\'s shared screen');
    this.localVideo = video('local-video', 'Your camera');
    for (const v of [this.remoteVideo, this.remoteScreen, this.localVideo]) v.muted = true;
    this.tiles = new RemoteTiles(this.remoteVideo, this.remoteScreen, () => this.render());
    const tile = (cls, v, label) => h('div', { class: `tile ${cls}`, hidden: true }, v, h('span', { class: 'tile-label', text: label }));
    this.localTile = tile('self', this.localVideo, 'You');
    this.preview = new StillPreview({ onSend: (blob) => this.upload(blob), onClose: () => { if (this.photo) this.stopPhoto(); } });
    this.audio = h('audio', { class: 'video-audio', 'data-testid': 'video-audio', autoplay: true });
    this.stage = h('div', { class: 'stage', 'data-testid': 'video-area', hidden: true },
      tile('remote', this.remoteVideo, 'Agent'), tile('screen', this.remoteScreen, 'Agent\'s screen'), this.localTile);
    this.el = h('div', { class: 'video' }, this.bar, this.stage, this.preview.el, this.audio);

    const css = h('link', { rel: 'stylesheet', href: `${ORIGIN}/widget-video.css` });
    this.host.shadowRoot.append(css);
    // Right under the call bar, above the chat log.
    (this.host.callBar ?? this.host.panel.firstChild).after(this.el);
  }

  send(frame) {
    return this.host.socket.send(frame);
  }

  /**
   * setAvailable takes the conversation's video flag: whether the gateway
   * lets the customer start the camera or a screen share now (the queue
   * may open video only once an agent has joined, or never). Photos and
   * snapshots do not need it.
   */
  setAvailable(on) {
    this.available = on;
    this.render();
  }

  /** setEnabled allows video (an open, connected conversation) or not. */
  setEnabled(on) {
    if (this.enabled === on) return;
    this.enabled = on;
    if (!on) this.teardown();
    this.render();
  }

  /** onFrame takes the frames that belong to video; it returns true for those. */
  onFrame(f) {
    if (f.type === 'welcome') {
      this.features = { ice_servers: f.features?.ice_servers ?? [] };
      for (const m of f.messages ?? []) if (m.event?.data?.by === 'agent') this.tiles.event(m);
      return false;
    }
    if (f.type === 'message' && f.message?.event?.data?.by === 'agent') this.tiles.event(f.message);
    // The gateway offers the agent's video on the call's connection: from
    // then on video answers for that connection.
    if (f.type === 'rtc.offer' && !this.neg && this.callPeer()) this.attach(this.callPeer(), false);
    return this.neg?.onFrame(f) ?? false;
  }

  say(text) {
    this.statusEl.textContent = text;
  }

  /**
   * resume squares video with the gateway once the socket is back (the
   * welcome frame says which media this page still holds). A connection
   * the gateway gave up on (the page was away too long) ends here too; one
   * it holds goes on, and an offer whose answer was lost goes out again.
   */
  resume(f) {
    const held = f.media ?? null;
    if (!this.pc) {
      // The camera went off while the socket was down, and video.stop with it.
      if (held?.video) this.send({ type: 'video.stop' });
      return;
    }
    if (this.own && !held) {
      this.teardown();
      this.say('The video connection was lost');
      return;
    }
    this.neg?.resume();
  }

  /**
   * adopt takes over the call's connection when the call ends while video
   * still sends on it: the connection, and the microphone on it, become
   * video's own, so the console keeps hearing the customer. With no
   * camera on (a screen share alone) the microphone stops instead.
   */
  adopt(pc, stream) {
    if (this.pc !== pc || !(this.cam || this.screen) || pc.connectionState === 'closed') return false;
    this.own = true;
    this.mic = stream;
    if (!this.cam) {
      // A screen share alone sends no audio once the call is over.
      for (const s of pc.getSenders()) if (s.track?.kind === 'audio') s.replaceTrack(null).catch(() => {});
      for (const t of stream?.getTracks() ?? []) t.stop();
      this.mic = null;
    }
    this.stopIce = restartIceWhenLost(pc); // the call bar no longer watches it
    // The call bar played the gateway's audio; from now on it is ours.
    const heard = pc.getReceivers().map((r) => r.track).filter((t) => t && t.kind === 'audio');
    if (heard.length) {
      this.audio.srcObject = new MediaStream(heard);
      this.audio.play().catch(() => { /* autoplay refused: the next click allows it */ });
    }
    return true;
  }

  /** negotiates says whether video runs the offers and answers of pc. */
  negotiates(pc) {
    return Boolean(this.neg && this.pc === pc);
  }

  /** callPeer is the voice call's open peer connection, if there is one. */
  callPeer() {
    const pc = this.host.voice?.pc;
    return pc && pc.connectionState !== 'closed' ? pc : null;
  }

  /**
   * ensurePeer returns the connection video uses, opening one if needed.
   * withMic says whether the microphone goes along on a connection of our
   * own (the camera), or not (a screen share alone, which needs only the
   * screen permission). A call's connection already carries the call's
   * microphone.
   */
  async ensurePeer(withMic) {
    if (this.pc && this.pc.connectionState !== 'closed') {
      if (withMic && this.own && !this.mic) await this.addMic(this.pc);
      return this.pc;
    }
    this.detach(); // a call's connection that has closed
    const call = this.callPeer();
    if (call) return this.attach(call, false);
    // Video straight from the chat: the camera takes the microphone along,
    // so that the agent's console hears the customer.
    const mic = withMic ? await navigator.mediaDevices.getUserMedia({ audio: true }) : null;
    const iceServers = (await this.host.iceServers?.()) ?? this.features.ice_servers;
    const pc = this.attach(new RTCPeerConnection({ iceServers }), true);
    if (mic) this.useMic(pc, mic);
    return pc;
  }

  /** addMic opens the microphone and sends it on our own connection. */
  async addMic(pc) {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    if (this.pc !== pc || this.mic) {
      for (const t of mic.getTracks()) t.stop();
      return;
    }
    this.useMic(pc, mic);
  }

  /**
   * useMic sends mic on pc: on an audio transceiver that sends nothing (a
   * call's that adopt emptied, or one the gateway offered for the console's
   * voice), else on a new one.
   */
  useMic(pc, mic) {
    this.mic = mic;
    const track = mic.getAudioTracks()[0];
    if (!track) return;
    const idle = pc.getTransceivers().find((t) => !t.stopped && t.receiver.track?.kind === 'audio' && !t.sender.track);
    if (!idle) {
      pc.addTrack(track, mic);
      return;
    }
    idle.direction = 'sendrecv';
    idle.sender.setStreams?.(mic);
    idle.sender.replaceTrack(track).catch(() => {});
  }

  /**
   * attach makes video answer for a connection: its own (own, opened for
   * video) or the call's. The first offer that carries our camera or screen
   * is a video.start, so that the gateway counts the connection as video.
   */
  attach(pc, own) {
    this.pc = pc;
    this.own = own;
    this.started = false;
    this.onTrack = (e) => {
      if (e.track.kind === 'audio') {
        if (!this.own) return; // the call's audio plays in the call bar
        this.audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
        this.audio.play().catch(() => {});
        return;
      }
      this.tiles.add(e);
    };
    pc.addEventListener('track', this.onTrack);
    // Tracks the gateway already sends on a borrowed connection.
    for (const t of pc.getTransceivers()) {
      const track = t.receiver.track;
      if (track?.kind === 'video' && t.currentDirection && t.currentDirection.includes('recv')) this.tiles.add({ track, streams: [] });
    }
    this.onState = () => this.render();
    pc.addEventListener('connectionstatechange', this.onState);
    // A call's connection restarts ICE in the call bar; ours does it here.
    this.stopIce = own ? restartIceWhenLost(pc) : null;
    this.neg = new Negotiator(pc, {
      send: (f) => this.send(f),
      offerType: () => (!this.started && (this.own || this.cam || this.screen) ? 'video.start' : 'rtc.offer'),
      onAnswer: () => {
        if (this.own || this.cam || this.screen) this.started = true;
        this.flushEvents();
      },
      ownIce: own,
      onError: (text, code) => this.failed(text, code),
      onReady: () => this.render(),
    });
    this.render();
    return pc;
  }

  /** detach stops answering for the connection (it is closed or no longer ours). */
  detach() {
    const pc = this.pc;
    if (!pc) return;
    this.neg?.close();
    this.neg = null;
    this.pc = null;
    this.pendingEvents = [];
    pc.removeEventListener('track', this.onTrack);
    pc.removeEventListener('connectionstatechange', this.onState);
    this.stopIce?.();
    this.stopIce = null;
    this.tiles.clear();
  }

  async startCamera() {
    if (this.cam || !this.enabled || !this.available) return;
    this.busy = true;
    this.render();
    this.say('Starting the camera…');
    try {
      if (this.photo) this.stopPhoto();
      const stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(this.facing) });
      const track = stream.getVideoTracks()[0];
      if (!this.enabled) {
        track.stop();
        return;
      }
      const pc = await this.ensurePeer(true);
      this.cam = { track, sender: null };
      const sender = pc.addTrack(track, stream);
      this.cam.sender = sender;
      keepResolution(sender);
      track.addEventListener('ended', () => { if (this.cam?.track === track) this.stopCamera(); });
      this.localVideo.srcObject = new MediaStream([track]);
      this.localVideo.play().catch(() => {});
      this.say('');
      this.switchButton.hidden = !(await hasSeveralCameras());
    } catch (err) {
      this.say(mediaErrorText(err));
      if (!this.cam && !this.screen) this.endVideo();
    } finally {
      this.busy = false;
      this.render();
    }
  }

  /** switchCamera flips between the front and the back camera of a phone. */
  async switchCamera() {
    if (!this.cam) return;
    const facing = this.facing === 'user' ? 'environment' : 'user';
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(facing) });
      const track = stream.getVideoTracks()[0];
      await this.cam.sender.replaceTrack(track);
      this.cam.track.stop();
      this.cam.track = track;
      this.facing = facing;
      this.localVideo.srcObject = new MediaStream([track]);
      this.localVideo.play().catch(() => {});
    } catch (err) {
      this.say(mediaErrorText(err));
    }
    this.render();
  }

  async stopCamera() {
    const cam = this.cam;
    if (!cam) return;
    this.cam = null;
    cam.track.stop();
    this.localVideo.srcObject = null;
    if (this.pc && this.pc.connectionState !== 'closed') {
      try { this.pc.removeTrack(cam.sender); } catch { /* closed meanwhile */ }
    }
    if (!this.screen) this.endVideo();
    this.render();
  }

  async startScreen() {
    if (this.screen || !this.enabled || !this.available) return;
    if (!navigator.mediaDevices?.getDisplayMedia) {
      this.say('Screen sharing is not available in this browser');
      return;
    }
    this.busy = true;
    this.render();
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      const track = stream.getVideoTracks()[0];
      if (!this.enabled) {
        track.stop();
        return;
      }
      track.contentHint = 'detail';
      const pc = await this.ensurePeer(false);
      this.screen = { track, sender: null, stream };
      const sender = pc.addTrack(track, stream);
      this.screen.sender = sender;
      keepResolution(sender);
      track.addEventListener('ended', () => { if (this.screen?.track === track) this.stopScreen(); });
      this.mediaEvent({ type: 'media.event', state: 'screen.started', stream: stream.id });
      this.say('');
    } catch (err) {
      this.say(mediaErrorText(err, 'screen sharing'));
      if (!this.cam && !this.screen) this.endVideo();
    } finally {
      this.busy = false;
      this.render();
    }
  }

  /**
   * mediaEvent declares a media event to the gateway. The gateway names
   * the stream by the id it forwards it under, which it knows once it has
   * our offer: on a connection that waits for its first answer the event
   * goes out after that answer (a screen share straight from the chat).
   */
  mediaEvent(frame) {
    if (this.started || !this.own) {
      this.send(frame);
      return;
    }
    if (frame.state === 'screen.ended' && this.pendingEvents.some((f) => f.state === 'screen.started')) {
      this.pendingEvents = this.pendingEvents.filter((f) => f.state !== 'screen.started');
      return;
    }
    this.pendingEvents.push(frame);
  }

  flushEvents() {
    const pending = this.pendingEvents;
    this.pendingEvents = [];
    for (const f of pending) this.send(f);
  }

  stopScreen() {
    const sc = this.screen;
    if (!sc) return;
    this.screen = null;
    sc.track.stop();
    if (this.pc && this.pc.connectionState !== 'closed') {
      try { this.pc.removeTrack(sc.sender); } catch { /* closed meanwhile */ }
    }
    this.mediaEvent({ type: 'media.event', state: 'screen.ended' });
    if (!this.cam) this.endVideo();
    this.render();
  }

  /**
   * endVideo tells the gateway that this browser sends no more video. A
   * connection we opened for video closes; a call's connection stays, its
   * video tracks already removed (the removal renegotiates by itself).
   */
  endVideo() {
    const pc = this.pc;
    if (!pc) return;
    if (this.started) this.send({ type: 'video.stop' });
    this.started = false;
    if (!this.own) {
      // The call goes on, and so does answering the gateway's offers on
      // its connection (the agent's video may still come).
      if (pc.connectionState === 'closed') this.detach();
      this.render();
      return;
    }
    this.detach();
    pc.close();
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.mic = null;
    this.audio.srcObject = null;
    this.own = false;
  }

  /** failed ends what video started after the gateway refused it. */
  failed(text) {
    if (this.cam) this.stopCamera();
    if (this.screen) this.stopScreen();
    this.endVideo();
    this.say(text);
    this.render();
  }

  /** startPhoto opens the camera for a still only (nothing is sent live). */
  async startPhoto() {
    if (this.cam) {
      this.snapshot();
      return;
    }
    try {
      this.photo = await navigator.mediaDevices.getUserMedia({ video: { ...cameraConstraints('environment'), width: { ideal: 1280 }, height: { ideal: 720 } } });
      this.localVideo.srcObject = this.photo;
      this.localVideo.play().catch(() => {});
      this.say('Point the camera, then press Snapshot');
    } catch (err) {
      this.say(mediaErrorText(err));
    }
    this.render();
  }

  stopPhoto() {
    for (const t of this.photo?.getTracks() ?? []) t.stop();
    this.photo = null;
    if (!this.cam) this.localVideo.srcObject = null;
    this.say('');
    this.render();
  }

  /** source is the video a snapshot takes: our camera, else the agent's. */
  source() {
    if ((this.cam || this.photo) && this.localVideo.videoWidth) return { video: this.localVideo, what: 'Your camera' };
    if (!this.remoteVideo.hidden && this.remoteVideo.videoWidth) return { video: this.remoteVideo, what: 'The agent\'s video' };
    if (!this.remoteScreen.hidden && this.remoteScreen.videoWidth) return { video: this.remoteScreen, what: 'The agent\'s screen' };
    return null;
  }

  async snapshot() {
    const src = this.source();
    if (!src) {
      this.say('No video to take a snapshot of yet');
      return;
    }
    try {
      this.preview.show(await captureStill(src.video), src.what);
    } catch (err) {
      this.say(`No snapshot: ${err.message}`);
    }
  }

  /** upload posts a still as a snapshot file of the conversation. */
  async upload(blob) {
    const host = this.host;
    const session = await host.ensureConversation();
    const id = newId();
    const name = stillName(blob);
    host.log.upsert({ id, kind: 'file', from: { role: 'customer' }, file: { name, size: blob.size, uploading: true } });
    const form = new FormData();
    form.append('id', id);
    form.append('kind', 'snapshot');
    form.append('file', blob, name);
    try {
      const res = await fetch(`${API}/conversations/${encodeURIComponent(session.id)}/files`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${session.token}` },
        body: form,
      });
      if (!res.ok) throw await apiError(res);
      const { message } = await res.json();
      if (message.id !== id) host.log.remove(id);
      host.log.upsert(message);
    } catch (err) {
      host.log.fail(id, 'Upload failed');
      throw err;
    }
  }

  /** teardown ends video and the photo camera, e.g. when the chat ends. */
  teardown() {
    this.preview.close();
    if (this.photo) this.stopPhoto();
    if (this.cam) { this.cam.track.stop(); this.cam = null; this.localVideo.srcObject = null; }
    if (this.screen) { this.screen.track.stop(); this.screen = null; }
    this.endVideo();
    this.detach();
    this.render();
  }

  render() {
    const live = Boolean(this.pc);
    this.bar.hidden = !this.enabled && !live;
    // Camera and screen show while the conversation says video (or while
    // on, so that they can be turned off).
    this.cameraButton.hidden = !this.available && !this.cam;
    this.cameraButton.disabled = this.busy || (!this.enabled && !this.cam);
    this.cameraButton.setAttribute('aria-pressed', String(Boolean(this.cam)));
    this.cameraButton.textContent = this.cam ? 'Camera off' : 'Camera';
    this.cameraButton.setAttribute('aria-label', this.cam ? 'Turn the camera off' : 'Turn the camera on');
    if (!this.cam) this.switchButton.hidden = true;
    this.screenButton.hidden = !navigator.mediaDevices?.getDisplayMedia || (!this.available && !this.screen);
    this.screenButton.disabled = this.busy || (!this.enabled && !this.screen);
    this.screenButton.setAttribute('aria-pressed', String(Boolean(this.screen)));
    this.screenButton.textContent = this.screen ? 'Stop sharing' : 'Share screen';
    this.photoButton.hidden = Boolean(this.cam);
    this.photoButton.setAttribute('aria-pressed', String(Boolean(this.photo)));
    this.photoButton.textContent = this.photo ? 'Close camera' : 'Photo';
    const remote = this.tiles.streams.length > 0;
    const local = Boolean(this.cam || this.photo);
    this.snapshotButton.disabled = !local && !remote;
    this.localTile.hidden = !local;
    this.stage.hidden = !local && !remote;
    this.stage.dataset.remote = String(remote);
    const state = this.pc?.connectionState ?? 'off';
    this.el.dataset.state = live ? state : (this.photo ? 'photo' : 'off');
    const status = this.host.status;
    if (status) {
      if (live) status.dataset.video = state;
      else delete status.dataset.video;
    }
    if (live && state === 'failed') this.say('The video connection was lost');
  }
}
