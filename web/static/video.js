// Video shared by the widget and the console: signalling of one
// RTCPeerConnection with the gateway as the polite side of "perfect
// negotiation", camera and screen capture, stills from a <video>, and
// receive statistics. See docs/api.md, "Video (Step 3)".
//
// The gateway makes one offer at a time and refuses a browser offer that
// crosses its own (error glare). The browser rolls back, answers the
// gateway's offer and offers again.

import { h } from './chat.js';

/** Error codes of video frames, in the user's words. */
export const VIDEO_ERROR_TEXT = {
  video_unavailable: 'Video is not available right now',
  video_not_available: 'Video is not available in this chat right now',
  busy: 'Too many video calls right now; please try again shortly',
  bad_offer: 'The browser could not start the video',
  no_video: 'There is no video in this conversation',
  in_use: 'The video runs in another tab',
  ended: 'The conversation has ended',
};

let frameSeq = 0;

/** frameId returns an id for a signalling frame, so that errors name it. */
export function frameId() {
  frameSeq++;
  return `vid:${frameSeq}`;
}

/**
 * Negotiator keeps one RTCPeerConnection in step with the gateway.
 *
 *   pc          an RTCPeerConnection, new or borrowed (a voice call's)
 *   send(frame) sends a frame on the chat socket, reports whether it could
 *   extra       fields added to every frame (the console's conversation_id)
 *   firstOffer  the frame type of the first offer: "video.start" (widget) or
 *               "media.join" (console); later offers are "rtc.offer"
 *   offerType() overrides firstOffer: the frame type of the next offer
 *   ownIce      whether to trickle this connection's candidates (false when
 *               another module already does, for a borrowed connection)
 *   onError(text, code)  a refusal that retrying does not fix
 *   onReady()   the gateway knows the connection (first answer either way)
 *   onAnswer()  the gateway answered one of our offers
 */
export class Negotiator {
  constructor(pc, {
    send, extra = {}, firstOffer = 'rtc.offer', offerType = null, ownIce = true,
    onError = () => {}, onReady = () => {}, onAnswer = () => {},
  }) {
    this.pc = pc;
    this.send = send;
    this.extra = extra;
    this.offerType = offerType ?? (() => (this.ready ? 'rtc.offer' : firstOffer));
    this.onAnswer = onAnswer;
    this.ready = false; // the gateway answered our first offer
    this.makingOffer = false;
    this.lastOfferId = '';
    this.glareRetries = 0;
    this.pendingLocal = []; // our candidates, until the gateway knows the connection
    this.pendingRemote = []; // the gateway's, until we have its description
    this.onError = onError;
    this.onReady = onReady;
    this.closed = false;
    this.chain = Promise.resolve(); // signalling steps run one at a time
    this.onNeeded = () => this.queue(() => this.offer());
    pc.addEventListener('negotiationneeded', this.onNeeded);
    if (ownIce) {
      this.onCandidate = (e) => {
        if (!e.candidate || this.closed) return;
        const c = e.candidate.toJSON();
        if (this.ready) this.send({ type: 'rtc.candidate', ...this.extra, candidate: c });
        else this.pendingLocal.push(c);
      };
      pc.addEventListener('icecandidate', this.onCandidate);
    }
  }

  /** queue runs one signalling step after the previous ones. */
  queue(step) {
    this.chain = this.chain.then(step).catch((err) => {
      if (!this.closed) console.warn('segue video: signalling', err);
    });
    return this.chain;
  }

  /** start sends the first offer now (for a connection with tracks already added). */
  start() {
    return this.queue(() => this.offer());
  }

  async offer() {
    const pc = this.pc;
    if (this.closed || pc.signalingState !== 'stable' || this.makingOffer) return;
    this.makingOffer = true;
    try {
      await pc.setLocalDescription();
      if (pc.signalingState !== 'have-local-offer') return;
      const id = frameId();
      this.lastOfferId = id;
      const type = this.offerType();
      if (!this.send({ type, id, ...this.extra, sdp: pc.localDescription.sdp })) {
        // Not connected: undo, and try again in a moment.
        await pc.setLocalDescription({ type: 'rollback' });
        setTimeout(() => this.queue(() => this.offer()), 1000);
      }
    } finally {
      this.makingOffer = false;
    }
  }

  /**
   * resume is called when the socket is back and the gateway still holds
   * the connection: an offer of ours still waiting for its answer may
   * have been lost with the old socket, so it is rolled back and made
   * again (the gateway answers it, or refuses it as glare when an offer
   * of its own, sent again too, crossed it).
   */
  resume() {
    this.queue(async () => {
      const pc = this.pc;
      if (this.closed || pc.signalingState !== 'have-local-offer') return;
      await pc.setLocalDescription({ type: 'rollback' });
      await this.offer();
    });
  }

  /**
   * onFrame applies a signalling frame from the gateway. It returns true
   * when the frame was one of ours.
   */
  onFrame(f) {
    if (this.closed) return false;
    switch (f.type) {
      case 'rtc.answer':
        this.queue(() => this.answer(f.sdp));
        return true;
      case 'rtc.offer':
        this.queue(() => this.remoteOffer(f.sdp));
        return true;
      case 'rtc.candidate':
        this.remoteCandidate(f.candidate);
        return true;
      case 'error':
        if (typeof f.ref === 'string' && f.ref.startsWith('vid:')) {
          this.refused(f);
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  async answer(sdp) {
    const pc = this.pc;
    if (pc.signalingState !== 'have-local-offer') return; // a stale answer to a rolled-back offer
    await pc.setRemoteDescription({ type: 'answer', sdp });
    this.glareRetries = 0;
    this.onAnswer();
    this.connected();
  }

  /** remoteOffer answers the gateway's offer, rolling ours back if they crossed. */
  async remoteOffer(sdp) {
    const pc = this.pc;
    if (pc.signalingState === 'have-local-offer') {
      await pc.setLocalDescription({ type: 'rollback' });
    }
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription();
    this.send({ type: 'rtc.answer', ...this.extra, sdp: pc.localDescription.sdp });
    this.connected();
    // A rolled-back offer of ours is still needed: the browser fires
    // negotiationneeded again now that the state is stable.
  }

  connected() {
    this.flushRemote();
    if (this.ready) return;
    this.ready = true;
    for (const c of this.pendingLocal) this.send({ type: 'rtc.candidate', ...this.extra, candidate: c });
    this.pendingLocal = [];
    this.onReady();
  }

  remoteCandidate(c) {
    if (!c) return;
    if (!this.pc.remoteDescription) {
      this.pendingRemote.push(c);
      return;
    }
    this.pc.addIceCandidate(c).catch(() => { /* of an earlier ICE generation */ });
  }

  flushRemote() {
    const list = this.pendingRemote;
    this.pendingRemote = [];
    for (const c of list) this.pc.addIceCandidate(c).catch(() => {});
  }

  /**
   * refused handles an error about one of our offers. Glare (or a
   * bad_offer while the gateway has an offer of its own on the way): the
   * gateway's offer arrives next and rolls ours back. Otherwise roll back
   * and retry a few times, then give up.
   */
  refused(f) {
    if ((f.code !== 'bad_offer' && f.code !== 'glare') || f.ref !== this.lastOfferId) {
      this.onError(VIDEO_ERROR_TEXT[f.code] || f.message || f.code, f.code);
      return;
    }
    const id = f.ref;
    setTimeout(() => this.queue(async () => {
      const pc = this.pc;
      if (this.closed || this.lastOfferId !== id || pc.signalingState !== 'have-local-offer') return;
      await pc.setLocalDescription({ type: 'rollback' });
      if (++this.glareRetries > 3) {
        this.onError(VIDEO_ERROR_TEXT.bad_offer, f.code);
        return;
      }
      await this.offer();
    }), 300 + Math.random() * 400);
  }

  close() {
    this.closed = true;
    this.pc.removeEventListener('negotiationneeded', this.onNeeded);
    if (this.onCandidate) this.pc.removeEventListener('icecandidate', this.onCandidate);
  }
}

/**
 * keepResolution asks the encoder to lower the frame rate rather than the
 * resolution when the CPU or the network is short, so that stills taken on
 * the far side keep the camera's full size.
 */
/**
 * restartIceWhenLost restarts ICE on pc when the connection fails, stays
 * disconnected for a few seconds, or the browser comes back online (a new
 * network): restartIce() fires negotiationneeded, so the Negotiator sends
 * the new offer. It returns a function that stops watching.
 */
export function restartIceWhenLost(pc, graceMs = 3000) {
  let timer = 0;
  const restart = () => { if (pc.connectionState !== 'closed') pc.restartIce(); };
  const check = () => {
    clearTimeout(timer);
    if (pc.connectionState === 'failed') restart();
    else if (pc.connectionState === 'disconnected') timer = setTimeout(() => { if (pc.connectionState === 'disconnected') restart(); }, graceMs);
  };
  pc.addEventListener('connectionstatechange', check);
  addEventListener('online', restart);
  return () => {
    clearTimeout(timer);
    pc.removeEventListener('connectionstatechange', check);
    removeEventListener('online', restart);
  };
}

export async function keepResolution(sender) {
  try {
    const p = sender.getParameters();
    p.degradationPreference = 'maintain-resolution';
    await sender.setParameters(p);
  } catch { /* older browsers: the default balance */ }
}

/** cameraConstraints asks for a 640x480 camera facing the given way. */
export function cameraConstraints(facingMode) {
  return { facingMode: { ideal: facingMode }, width: { ideal: 640 }, height: { ideal: 480 } };
}

/** hasSeveralCameras reports whether a front/back switch makes sense. */
export async function hasSeveralCameras() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((d) => d.kind === 'videoinput').length > 1;
  } catch {
    return false;
  }
}

/** mediaErrorText turns a getUserMedia/getDisplayMedia failure into words. */
export function mediaErrorText(err, what = 'camera') {
  if (err?.name === 'NotAllowedError') return `Access to the ${what} was denied`;
  if (err?.name === 'NotFoundError') return `No ${what} was found`;
  if (err?.name === 'NotReadableError') return `The ${what} is in use by another application`;
  return `The ${what} could not start (${err?.message || err})`;
}

/**
 * captureStill draws the current frame of a <video> at the stream's own
 * resolution (videoWidth x videoHeight, not the size on screen) and
 * resolves to {blob, width, height}.
 */
export async function captureStill(video, type = 'image/jpeg') {
  const width = video.videoWidth;
  const height = video.videoHeight;
  if (!width || !height) throw new Error('no video frame yet');
  const canvas = h('canvas', { width: String(width), height: String(height) });
  canvas.getContext('2d').drawImage(video, 0, 0, width, height);
  let blob = await new Promise((resolve) => canvas.toBlob(resolve, type, 0.92));
  if (!blob) blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  if (!blob) throw new Error('the image could not be encoded');
  return { blob, width, height };
}

/** stillName names a snapshot file, e.g. "snapshot-2024-05-01-140502.jpg". */
export function stillName(blob) {
  const d = new Date();
  const p = (n) => String(n).padStart(2, '0');
  const ext = blob.type === 'image/png' ? 'png' : 'jpg';
  return `snapshot-${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}.${ext}`;
}

/**
 * StillPreview shows a captured still with Send and Cancel. onSend(blob)
 * must resolve once the still is uploaded.
 */
export class StillPreview {
  constructor({ onSend, onClose = () => {} }) {
    this.onSend = onSend;
    this.onClose = onClose;
    this.img = h('img', { class: 'still-img', 'data-testid': 'snapshot-preview', alt: 'Snapshot preview' });
    this.info = h('p', { class: 'still-info', 'data-testid': 'snapshot-info' });
    this.sendButton = h('button', { type: 'button', class: 'still-send', 'data-testid': 'snapshot-send', text: 'Send' });
    this.cancelButton = h('button', { type: 'button', class: 'still-cancel secondary', 'data-testid': 'snapshot-cancel', text: 'Cancel' });
    this.el = h('div', { class: 'still', 'data-testid': 'snapshot-dialog', role: 'dialog', 'aria-label': 'Snapshot', hidden: true },
      this.img, this.info, h('div', { class: 'still-actions' }, this.cancelButton, this.sendButton));
    this.sendButton.addEventListener('click', () => this.send());
    this.cancelButton.addEventListener('click', () => this.close());
    this.el.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); this.close(); } });
    this.blob = null;
    this.url = '';
  }

  show(still, what) {
    this.clear();
    this.blob = still.blob;
    this.url = URL.createObjectURL(still.blob);
    this.img.src = this.url;
    this.info.textContent = `${what}: ${still.width}×${still.height}`;
    this.el.dataset.width = String(still.width);
    this.el.dataset.height = String(still.height);
    this.sendButton.disabled = false;
    this.el.hidden = false;
    this.sendButton.focus({ preventScroll: true });
  }

  async send() {
    if (!this.blob) return;
    this.sendButton.disabled = true;
    this.info.textContent = 'Sending…';
    try {
      await this.onSend(this.blob);
      this.close();
    } catch (err) {
      this.info.textContent = `Not sent: ${err.message}`;
      this.sendButton.disabled = false;
    }
  }

  clear() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = '';
    this.blob = null;
    this.img.removeAttribute('src');
  }

  close() {
    this.clear();
    this.el.hidden = true;
    this.onClose();
  }
}

/**
 * RemoteTiles shows the video tracks received on a connection: the first
 * in the main tile, a second (a screen share) in the second tile. The
 * gateway forwards each track under the sender's stream id, so tracks
 * are told apart by stream.
 */
export class RemoteTiles {
  constructor(main, second, onChange = () => {}) {
    this.tiles = [main, second];
    this.onChange = onChange;
    this.streams = []; // [{stream, tile}]
    this.screens = new Set(); // stream ids the sender declared as screens
  }

  /**
   * event takes a transcript message: a screen.started event names the
   * stream of the sender's screen, which then goes to the second tile
   * whatever the order of arrival.
   */
  event(m) {
    const stream = m?.event?.data?.stream;
    if (m?.event?.name !== 'screen.started' || !stream) return;
    this.screens.add(stream);
    this.layout();
  }

  /** add takes a 'track' event of the connection. */
  add(e) {
    if (e.track.kind !== 'video') return;
    const stream = e.streams[0] ?? new MediaStream([e.track]);
    let entry = this.streams.find((s) => s.stream.id === stream.id);
    if (!entry) {
      entry = { stream, tile: null };
      this.streams.push(entry);
      stream.addEventListener('removetrack', () => this.layout());
    }
    e.track.addEventListener('ended', () => this.layout());
    e.track.addEventListener('mute', () => this.layout());
    e.track.addEventListener('unmute', () => this.layout());
    this.layout();
  }

  live(stream) {
    return stream.getVideoTracks().some((t) => t.readyState === 'live');
  }

  /**
   * layout puts live streams into the tiles: cameras first, in order of
   * arrival, then the streams declared as screens.
   */
  layout() {
    this.streams = this.streams.filter((s) => this.live(s.stream));
    const isScreen = (s) => this.screens.has(s.stream.id);
    const ordered = [...this.streams.filter((s) => !isScreen(s)), ...this.streams.filter(isScreen)];
    const main = ordered.find((s) => !isScreen(s)) ?? null;
    const rest = ordered.filter((s) => s !== main);
    const picks = [main, rest[0] ?? null];
    this.tiles.forEach((tile, i) => {
      const s = picks[i]?.stream ?? null;
      if (tile.srcObject !== s) {
        tile.srcObject = s;
        if (s) tile.play().catch(() => { /* autoplay: muted video plays */ });
      }
      tile.hidden = !s;
      tile.parentElement?.toggleAttribute('hidden', !s);
    });
    this.onChange(this.streams.length);
  }

  clear() {
    this.streams = [];
    for (const t of this.tiles) {
      t.srcObject = null;
      t.hidden = true;
      t.parentElement?.toggleAttribute('hidden', true);
    }
    this.onChange(0);
  }
}

/**
 * VideoStats reads a connection's getStats once a second and reports, per
 * received video track, resolution, frame rate and bitrate.
 */
export class VideoStats {
  constructor(pc, onStats) {
    this.pc = pc;
    this.onStats = onStats;
    this.prev = new Map(); // id -> {bytes, ts}
    this.timer = setInterval(() => this.read(), 1000);
  }

  async read() {
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return;
    }
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') return;
      if (s.kind !== 'video') return;
      const bytes = s.type === 'inbound-rtp' ? s.bytesReceived : s.bytesSent;
      const prev = this.prev.get(s.id);
      this.prev.set(s.id, { bytes, ts: s.timestamp });
      const kbps = prev && s.timestamp > prev.ts ? Math.round(((bytes - prev.bytes) * 8) / (s.timestamp - prev.ts)) : 0;
      if (!s.frameWidth) return;
      out.push({
        dir: s.type === 'inbound-rtp' ? 'in' : 'out',
        width: s.frameWidth,
        height: s.frameHeight,
        fps: Math.round(s.framesPerSecond ?? 0),
        kbps,
      });
    });
    this.onStats(out);
  }

  stop() {
    clearInterval(this.timer);
  }
}

/** statsText renders VideoStats rows for a status line. */
export function statsText(rows) {
  return rows.map((r) => `${r.dir === 'in' ? 'Receiving' : 'Sending'} ${r.width}×${r.height} · ${r.fps} fps · ${r.kbps} kbps`).join(' | ');
}
