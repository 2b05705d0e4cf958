// Voice calls in the customer widget: the mic button, the call bar (status,
// mute, keypad, hang-up), incoming calls, and the WebRTC peer connection to
// the gateway, signalled over the chat WebSocket (docs/api.md, "Voice").
//
// The widget owns the socket and the status line; Voice only needs a way to
// send frames and the elements to draw into. Every text is set with
// textContent.

import { h } from './chat.js';

/** Error codes of voice frames, in the customer's words. */
const ERROR_TEXT = {
  voice_unavailable: 'Calls are not available right now',
  no_destination: 'Nobody can take a call yet',
  in_call: 'A call is already in progress',
  busy: 'All lines are busy, please try again in a minute.',
  bad_offer: 'Your browser could not start the call',
  no_call: 'There is no call in progress',
  not_connected: 'The call is not connected yet',
  voice_not_available: 'Calls are not available in this chat right now',
  shutting_down: 'The service is restarting; please try again in a few seconds',
};

/** End causes of a call (the `cause` of `call` frames), in the customer's words. */
const CAUSE_TEXT = {
  customer_hangup: 'You hung up',
  browser_lost: 'The connection was lost',
  not_answered: 'You did not answer',
  bad_offer: 'Your browser could not join the call',
  shutdown: 'The service is restarting',
  gateway_restart: 'The service restarted',
  internal_error: 'The call was cut off by a fault in the service',
};

const KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#'];

/** Call states of a call that is still on. */
const LIVE = new Set(['dialing', 'ringing', 'connected', 'held']);

/** DTMF frequency pairs, for the local key beep. */
const DTMF = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477],
  4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477],
  '*': [941, 1209], 0: [941, 1336], '#': [941, 1477],
};

/** How long the last call's outcome stays in the status line. */
const OUTCOME_MS = 10_000;

/**
 * retryText words a refused call start (error rate_limited) with how long
 * to wait: retry_after, in seconds.
 */
export function retryText(seconds) {
  const s = Number(seconds);
  if (!(s > 0)) return 'Too many calls from here — please try again later';
  const min = Math.ceil(s / 60);
  return `Too many calls from here — please try again in ${min} ${min === 1 ? 'minute' : 'minutes'}`;
}

/** formatDuration renders seconds as "01:23" (or "1:02:03"). */
export function formatDuration(s) {
  s = Math.max(0, Math.floor(s));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * Voice is the widget's side of a call. Options:
 *   send(frame) -> bool     sends a frame on the chat socket
 *   status                  the widget's status line (data-testid call-status)
 *   bar                     the call bar container (it also holds the <audio>)
 *   config() -> object      the widget's data-* settings
 *   agentName() -> string   the assigned agent's name, if any
 *   restoreStatus()         redraws the connection state in the status line
 *   handOff(pc, stream)     video takes the connection over when the call ends
 *   negotiates(pc) -> bool  video runs the connection's offers and answers
 *   iceServers() -> Promise  the ICE servers for a new connection (fresh TURN
 *                           credentials); the welcome's by default
 */
export class Voice {
  constructor({ send, status, bar, config, agentName, restoreStatus, handOff, negotiates, iceServers }) {
    this.send = send;
    this.iceServers = iceServers ?? (async () => this.features.ice_servers ?? []);
    // handOff(pc, stream) may take over the connection when the call ends
    // while video still uses it; it returns whether it did.
    this.handOff = handOff ?? (() => false);
    // negotiates(pc) says whether video runs the offers and answers of the
    // call's connection (the camera joined the call): an ICE restart then
    // goes through it.
    this.negotiates = negotiates ?? (() => false);
    this.statusEl = status;
    this.bar = bar;
    this.config = config;
    this.agentName = agentName;
    this.restoreStatus = restoreStatus;
    this.features = { voice: false, ice_servers: [] };
    this.enabled = false;
    this.available = false; // the conversation's voice flag: the customer may start a call
    this.call = null; // the server's Call object, last seen
    this.elsewhere = null; // a call this page does not hold (another tab's, or before a reload)
    this.phase = 'idle'; // idle | starting | incoming | active | ending
    this.label = '';
    this.pc = null;
    this.stream = null;
    this.pendingLocal = []; // our candidates, until the answer arrives
    this.pendingRemote = []; // the server's, until we have its description
    this.restarting = false;
    this.frameSeq = 0;
    this.outcome = null; // {text, state} of the last call, shown for a while
    this.outcomeTimer = 0;
    this.ticker = 0;
    this.restartTimer = 0;
    this.connectedAt = 0;
    this.beepCtx = null;
    this.onOnline = () => { if (this.pc && this.phase === 'active') this.restartIce('online'); };
    this.build();
  }

  build() {
    this.startButton = h('button', {
      type: 'button', class: 'icon-button voice-start', 'data-testid': 'voice-start',
      'aria-label': 'Start a voice call', title: 'Call us', hidden: true,
    }, h('span', { class: 'mic-icon', 'aria-hidden': 'true' }));
    this.startButton.addEventListener('click', () => this.start());

    this.barText = h('span', { class: 'call-text', 'data-testid': 'call-bar-text', text: '' });
    this.muteButton = h('button', { type: 'button', class: 'call-button mute', 'data-testid': 'mute', 'aria-pressed': 'false', text: 'Mute' });
    this.muteButton.addEventListener('click', () => this.toggleMute());
    this.keypadButton = h('button', { type: 'button', class: 'call-button keypad-toggle', 'data-testid': 'keypad', 'aria-expanded': 'false', text: 'Keypad' });
    this.keypadButton.addEventListener('click', () => this.toggleKeypad());
    this.hangupButton = h('button', { type: 'button', class: 'call-button hangup', 'data-testid': 'hangup', text: 'Hang up' });
    this.hangupButton.addEventListener('click', () => this.hangup());
    this.acceptButton = h('button', { type: 'button', class: 'call-button accept', 'data-testid': 'call-accept', text: 'Accept', hidden: true });
    this.acceptButton.addEventListener('click', () => this.accept());
    this.declineButton = h('button', { type: 'button', class: 'call-button hangup', 'data-testid': 'call-decline', text: 'Decline', hidden: true });
    this.declineButton.addEventListener('click', () => this.decline());

    this.digitsEl = h('output', { class: 'digits', 'data-testid': 'keypad-digits', 'aria-live': 'polite' });
    this.pad = h('div', { class: 'keypad', 'data-testid': 'keypad-pad', role: 'group', 'aria-label': 'Keypad', hidden: true },
      this.digitsEl,
      h('div', { class: 'keys' }, KEYS.map((d) => {
        const key = h('button', { type: 'button', class: 'key', 'data-testid': 'keypad-key', 'data-digit': d, 'aria-label': `Key ${d}`, text: d });
        key.addEventListener('click', () => this.pressKey(d));
        return key;
      })));

    this.audio = h('audio', { class: 'remote-audio', 'data-testid': 'remote-audio', autoplay: true });
    this.recordingEl = h('p', { class: 'recording-notice', 'data-testid': 'recording-status', role: 'status', text: 'This call is being recorded', hidden: true });
    this.controls = h('div', { class: 'call-controls' }, this.acceptButton, this.declineButton, this.muteButton, this.keypadButton, this.hangupButton);
    this.bar.append(h('div', { class: 'call-row' }, this.barText, this.controls), this.recordingEl, this.pad, this.audio);
  }

  /** setFeatures takes features from the welcome frame. */
  setFeatures(features) {
    this.features = { voice: Boolean(features?.voice), ice_servers: features?.ice_servers ?? [] };
    this.render();
  }

  /**
   * setAvailable takes the conversation's voice flag: whether the gateway
   * lets the customer start a call now (the queue may open calls only once
   * an agent has joined). Calls toward the customer do not need it.
   */
  setAvailable(on) {
    this.available = on;
    this.render();
  }

  /** setEnabled allows calls (an open, connected conversation) or not. */
  setEnabled(on) {
    this.enabled = on;
    if (!on && this.phase === 'incoming') this.teardown();
    this.render();
  }

  get busy() {
    return this.phase !== 'idle';
  }

  nextId() {
    this.frameSeq++;
    return `v:${this.frameSeq}`;
  }

  /** onFrame handles voice frames; it returns true for those it took. */
  onFrame(f) {
    switch (f.type) {
      case 'rtc.answer': this.answered(f.sdp); return true;
      case 'rtc.candidate': this.remoteCandidate(f.candidate); return true;
      case 'call': this.callFrame(f.call); return true;
      case 'call.incoming': this.incoming(f.call, f.caller); return true;
      case 'call.dtmf':
        this.flash(`The agent pressed ${f.digit}`);
        return true;
      case 'message':
        this.transcriptEvent(f.message);
        return false;
      case 'error':
        if (typeof f.ref === 'string' && f.ref.startsWith('v:')) {
          this.voiceError(f);
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  /**
   * resume squares the call with the gateway once the socket is back
   * (the welcome frame, with the call in progress and the media this page
   * still holds). A call that ended meanwhile ends here too; an offer
   * whose answer was lost with the old socket goes out again; a call this
   * page does not hold (another tab's, or one the page had before a
   * reload) is shown until it ends.
   */
  resume(f) {
    const call = f.call && LIVE.has(f.call.state) ? f.call : null;
    const held = Boolean(f.media?.voice);
    const pc = this.pc;
    if (this.phase === 'idle') {
      this.elsewhere = call && !held ? call : null;
      this.render();
      return;
    }
    if (this.phase === 'incoming') {
      if (!call || call.id !== this.call?.id) this.teardown(); // answered elsewhere, or over
      return;
    }
    if (this.phase === 'starting' && pc?.signalingState === 'have-local-offer' && this.offerSent) {
      // Our offer or the gateway's answer was lost with the socket.
      const type = held ? 'rtc.offer' : 'voice.start';
      if (!this.send({ type, id: this.nextId(), sdp: pc.localDescription.sdp })) this.fail('Not connected: try again in a moment');
      return;
    }
    if (!call || (this.call && call.id !== this.call.id) || !held) {
      // The call ended while the socket was down: the transcript says how.
      const id = this.call?.id;
      const end = (f.messages ?? []).findLast((m) => ['voice.ended', 'voice.failed'].includes(m.event?.name) && m.event.data?.call === id);
      const data = end?.event.data ?? {};
      this.finished({ ...(this.call ?? {}), state: end?.event.name === 'voice.failed' ? 'failed' : 'ended', cause: data.cause ?? '', ended_by: data.by ?? '' });
      return;
    }
    this.callFrame(call);
    if (this.restarting && pc?.signalingState === 'have-local-offer') {
      // The answer to our ICE restart may have been lost: restart again.
      this.restarting = false;
      pc.setLocalDescription({ type: 'rollback' }).then(() => this.restartIce('resume')).catch(() => {});
    }
  }

  /** start begins a call from the mic button. */
  async start() {
    if (this.busy || !this.features.voice) return;
    this.clearOutcome();
    this.phase = 'starting';
    this.call = null;
    this.offerSent = false;
    this.label = '';
    this.render();
    try {
      await this.connectPeer();
    } catch (err) {
      this.fail(this.mediaErrorText(err));
    }
  }

  /** accept answers a call ringing the widget. */
  async accept() {
    if (this.phase !== 'incoming') return;
    this.phase = 'starting';
    this.render();
    try {
      await this.connectPeer();
    } catch (err) {
      this.send({ type: 'voice.hangup', id: this.nextId() });
      this.fail(this.mediaErrorText(err));
    }
  }

  decline() {
    if (this.phase !== 'incoming') return;
    this.declined = true;
    this.send({ type: 'voice.hangup', id: this.nextId() });
    this.phase = 'ending';
    this.render();
  }

  mediaErrorText(err) {
    if (err?.name === 'NotAllowedError') return 'Microphone access was denied';
    if (err?.name === 'NotFoundError') return 'No microphone was found';
    return `The call could not start (${err?.message || err})`;
  }

  audioConstraints() {
    const off = String(this.config().audioProcessing ?? '').toLowerCase() === 'off';
    return { echoCancellation: !off, noiseSuppression: !off, autoGainControl: !off };
  }

  /** connectPeer opens the microphone and the peer connection and sends the offer. */
  async connectPeer() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: this.audioConstraints(), video: false });
    const iceServers = await this.iceServers();
    if (this.phase !== 'starting') { // hung up while the permission prompt was open
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    this.stream = stream;
    const cfg = { iceServers };
    const policy = this.config().iceTransportPolicy;
    if (policy === 'relay' || policy === 'all') cfg.iceTransportPolicy = policy;
    const pc = new RTCPeerConnection(cfg);
    this.pc = pc;
    this.pendingLocal = [];
    this.pendingRemote = [];
    for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
    pc.addEventListener('icecandidate', (e) => {
      if (!e.candidate || pc !== this.pc) return;
      const c = e.candidate.toJSON();
      if (pc.remoteDescription) this.send({ type: 'rtc.candidate', candidate: c });
      else this.pendingLocal.push(c);
    });
    pc.addEventListener('track', (e) => {
      if (e.track.kind !== 'audio') return; // the agent's video is the video module's
      this.audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
      this.audio.play().catch(() => { /* autoplay refused: the call bar click allows it next time */ });
    });
    pc.addEventListener('connectionstatechange', () => this.peerState());
    pc.addEventListener('iceconnectionstatechange', () => this.peerState());
    pc.addEventListener('signalingstatechange', () => this.peerState());
    addEventListener('online', this.onOnline);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (pc !== this.pc) return;
    this.offerSent = this.send({ type: 'voice.start', id: this.nextId(), sdp: pc.localDescription.sdp });
    if (!this.offerSent) this.fail('Not connected: try again in a moment');
  }

  async answered(sdp) {
    const pc = this.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      this.send({ type: 'voice.hangup', id: this.nextId() });
      this.fail(`The call could not start (${err.message})`);
      return;
    }
    this.restarting = false;
    if (this.phase === 'starting') this.phase = 'active';
    for (const c of this.pendingLocal) this.send({ type: 'rtc.candidate', candidate: c });
    this.pendingLocal = [];
    for (const c of this.pendingRemote) pc.addIceCandidate(c).catch(() => {});
    this.pendingRemote = [];
    this.render();
  }

  remoteCandidate(c) {
    const pc = this.pc;
    if (!pc || !c) return;
    if (!pc.remoteDescription || pc.signalingState !== 'stable') {
      this.pendingRemote.push(c);
      return;
    }
    pc.addIceCandidate(c).catch(() => { /* a candidate of an earlier ICE generation */ });
  }

  /** peerState restarts ICE when the path breaks (Wi-Fi to mobile, sleep). */
  peerState() {
    const pc = this.pc;
    if (!pc || this.phase !== 'active') return;
    const s = pc.connectionState === 'failed' || pc.iceConnectionState === 'failed' ? 'failed'
      : (pc.iceConnectionState === 'disconnected' ? 'disconnected' : 'ok');
    clearTimeout(this.restartTimer);
    if (s === 'ok' && this.restarting && this.negotiates(pc) && pc.connectionState === 'connected' && pc.signalingState === 'stable') {
      this.restarting = false; // video's negotiator finished the restart
    }
    if (s === 'failed') this.restartIce('failed');
    // "disconnected" often heals by itself within a second or two.
    else if (s === 'disconnected') this.restartTimer = setTimeout(() => this.restartIce('disconnected'), 2000);
    this.render();
  }

  async restartIce(why) {
    const pc = this.pc;
    if (!pc || this.restarting || pc.signalingState !== 'stable') return;
    this.restarting = true;
    this.render();
    if (this.negotiates(pc)) {
      // Video's negotiator makes the offer and takes the answer; the bar
      // clears when the connection is back (peerState).
      pc.restartIce();
      return;
    }
    try {
      const offer = await pc.createOffer({ iceRestart: true });
      await pc.setLocalDescription(offer);
      if (!this.send({ type: 'rtc.offer', id: this.nextId(), sdp: pc.localDescription.sdp })) {
        // The socket is down too: roll back and try again once it is up.
        await pc.setLocalDescription({ type: 'rollback' });
        this.restarting = false;
        this.restartTimer = setTimeout(() => this.restartIce(why), 1000);
      }
    } catch {
      this.restarting = false;
    }
    this.render();
  }

  /** incoming shows a call that rings the customer. */
  incoming(call, caller) {
    if (this.busy || !this.enabled) return;
    this.clearOutcome();
    this.call = call;
    this.phase = 'incoming';
    this.label = call?.direction === 'agent' ? `${this.agentName() || 'Your agent'} is calling you` : `Incoming call from ${caller || 'the contact center'}`;
    this.render();
  }

  callFrame(call) {
    if (!call) return;
    const terminal = call.state === 'ended' || call.state === 'failed';
    if (this.phase === 'idle' && this.elsewhere?.id === call.id) {
      // Another page's call (this page's own, before a reload).
      this.elsewhere = terminal ? null : call;
      if (terminal) this.finished(call);
      else this.render();
      return;
    }
    // A late frame of an earlier call must not end the current one.
    if (this.call && this.call.id !== call.id && terminal && this.phase !== 'idle') return;
    const was = this.call?.id === call.id ? this.call.state : '';
    const involved = this.phase !== 'idle';
    this.call = call;
    // The customer is told while the call is recorded.
    this.recordingEl.hidden = !(call.recording && !terminal);
    if (call.state === 'connected' && was !== 'connected' && was !== 'held') this.connectedAt = Date.now();
    if (terminal) {
      // An agent's callback that never reached the widget is not news here.
      if (involved) this.finished(call);
      else this.render();
      return;
    }
    this.render();
  }

  /** transcriptEvent picks up the server's words for whom we are calling. */
  transcriptEvent(m) {
    const ev = m?.event;
    if (!ev || ev.name !== 'voice.dialing' || !this.call || ev.data?.call !== this.call.id) return;
    if (this.call.direction === 'outbound' && m.text) {
      this.label = `${m.text}…`;
      this.render();
    }
  }

  voiceError(f) {
    // A refused start (a limit, or every line busy) is no call that ended:
    // its words stand alone.
    const limited = f.code === 'rate_limited' || f.code === 'busy';
    const text = f.code === 'rate_limited' ? retryText(f.retry_after) : (ERROR_TEXT[f.code] || f.message || f.code);
    if (this.phase === 'starting' || (this.phase === 'active' && !this.call)) {
      if (limited) this.fail(text, text);
      else this.fail(text);
      return;
    }
    if (this.restarting) this.restarting = false;
    this.flash(text);
  }

  finished(call) {
    const reason = CAUSE_TEXT[call.cause] || call.reason || (call.state === 'failed' ? 'The call could not be connected' : 'The call ended');
    const declined = this.declined || call.cause === 'declined';
    this.teardown();
    this.showOutcome(declined ? 'Call declined' : `Call ended: ${reason}`, call.state, call.ended_by);
  }

  fail(text, outcome = `Call ended: ${text}`) {
    this.teardown();
    this.showOutcome(outcome, 'failed', 'customer');
  }

  hangup() {
    if (this.phase === 'idle') return;
    if (this.phase === 'incoming') {
      this.decline();
      return;
    }
    if ((!this.offerSent && !this.call) || !this.send({ type: 'voice.hangup', id: this.nextId() })) {
      this.fail('You hung up');
      return;
    }
    this.phase = 'ending';
    // The server's "ended" normally follows at once; do not leave the
    // microphone open if it does not.
    clearTimeout(this.endTimer);
    this.endTimer = setTimeout(() => { if (this.phase === 'ending') this.fail('You hung up'); }, 5000);
    this.render();
  }

  /** teardown closes the peer connection and the microphone. */
  teardown() {
    clearTimeout(this.restartTimer);
    clearTimeout(this.endTimer);
    removeEventListener('online', this.onOnline);
    if (this.pc) {
      if (!this.handOff(this.pc, this.stream)) {
        this.pc.close();
        for (const t of this.stream?.getTracks() ?? []) t.stop();
      }
      this.pc = null;
    } else {
      for (const t of this.stream?.getTracks() ?? []) t.stop();
    }
    this.stream = null;
    this.audio.srcObject = null;
    this.restarting = false;
    this.offerSent = false;
    this.declined = false;
    this.muted = false;
    this.phase = 'idle';
    this.pad.hidden = true;
    this.digitsEl.textContent = '';
    this.render();
  }

  toggleMute() {
    const tracks = this.stream?.getAudioTracks() ?? [];
    if (!tracks.length) return;
    this.muted = !this.muted;
    for (const t of tracks) t.enabled = !this.muted;
    this.render();
  }

  toggleKeypad() {
    this.pad.hidden = !this.pad.hidden;
    this.render();
    if (!this.pad.hidden) this.pad.querySelector('.key')?.focus({ preventScroll: true });
  }

  pressKey(d) {
    if (this.call?.state !== 'connected') return;
    this.send({ type: 'voice.dtmf', id: this.nextId(), digits: d });
    this.digitsEl.textContent = (this.digitsEl.textContent + d).slice(-16);
    this.beep(d);
  }

  /** beep plays the key's DTMF pair quietly, as a phone does. */
  beep(d) {
    try {
      this.beepCtx ??= new AudioContext();
      const ctx = this.beepCtx;
      const gain = ctx.createGain();
      gain.gain.value = 0.05;
      gain.connect(ctx.destination);
      const end = ctx.currentTime + 0.12;
      for (const f of DTMF[d] ?? []) {
        const o = ctx.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start();
        o.stop(end);
      }
    } catch { /* no audio output: the digit still goes */ }
  }

  showOutcome(text, state, endedBy) {
    clearTimeout(this.outcomeTimer);
    this.outcome = { text, state, endedBy: endedBy || '' };
    this.outcomeTimer = setTimeout(() => this.clearOutcome(), OUTCOME_MS);
    this.render();
  }

  clearOutcome() {
    clearTimeout(this.outcomeTimer);
    if (!this.outcome) return;
    this.outcome = null;
    this.render();
  }

  /** flash shows a short note in the call bar. */
  flash(text) {
    clearTimeout(this.flashTimer);
    this.flashText = text;
    this.render();
    this.flashTimer = setTimeout(() => { this.flashText = ''; this.render(); }, 4000);
  }

  /** statusText is what the status line says about the call, or ''. */
  statusText() {
    const c = this.call;
    if (this.phase === 'idle' && this.elsewhere) return 'A call is in progress in another window';
    if (this.phase === 'idle') return this.outcome?.text ?? '';
    if (this.phase === 'incoming') return this.label;
    if (this.phase === 'ending') return 'Hanging up…';
    if (this.restarting) return 'Reconnecting the call…';
    switch (c?.state) {
      case 'ringing': return 'Ringing…';
      case 'connected': return `Connected ${formatDuration((Date.now() - this.connectedAt) / 1000)}`;
      case 'held': return 'On hold';
      case 'dialing': return this.label || 'Calling…';
      default: return c ? (this.label || 'Calling…') : 'Starting the call…';
    }
  }

  /** callState is the data-call-state of the status line. */
  callState() {
    if (this.phase === 'idle' && this.elsewhere) return 'elsewhere';
    if (this.phase === 'idle') return this.outcome?.state ?? '';
    if (this.phase === 'incoming') return 'incoming';
    if (this.phase === 'ending') return 'ending';
    if (this.phase === 'starting' && !this.call) return 'starting';
    return this.call?.state ?? 'starting';
  }

  /**
   * overlay writes the call's words over the status line, when there is a
   * call to talk about; it reports whether it did.
   */
  overlay() {
    const el = this.statusEl;
    const text = this.statusText();
    const state = this.callState();
    if (state) el.dataset.callState = state;
    else delete el.dataset.callState;
    if (this.phase === 'idle' && this.outcome) el.dataset.endedBy = this.outcome.endedBy;
    else delete el.dataset.endedBy;
    if (!text) return false;
    el.textContent = text;
    return true;
  }

  render() {
    const inCall = this.phase !== 'idle';
    const ready = this.features.voice && this.enabled && this.available;
    this.startButton.hidden = !ready && !inCall;
    this.startButton.disabled = inCall || !ready || Boolean(this.elsewhere);
    this.startButton.setAttribute('aria-pressed', String(inCall));
    this.bar.hidden = !inCall && !this.flashText;
    this.bar.dataset.phase = this.phase;
    const incoming = this.phase === 'incoming';
    this.acceptButton.hidden = !incoming;
    this.declineButton.hidden = !incoming;
    const talking = this.call?.state === 'connected' || this.call?.state === 'held';
    this.muteButton.hidden = incoming;
    this.muteButton.disabled = !this.stream;
    this.muteButton.setAttribute('aria-pressed', String(Boolean(this.muted)));
    this.muteButton.textContent = this.muted ? 'Unmute' : 'Mute';
    this.keypadButton.hidden = incoming;
    this.keypadButton.disabled = !talking;
    this.keypadButton.setAttribute('aria-expanded', String(!this.pad.hidden));
    this.hangupButton.hidden = incoming;
    if (!talking) this.pad.hidden = true;
    this.barText.textContent = this.flashText || (inCall ? this.statusText() : '');
    clearInterval(this.ticker);
    if (this.call?.state === 'connected' && inCall) this.ticker = setInterval(() => this.tick(), 1000);
    if (!this.overlay()) this.restoreStatus();
  }

  tick() {
    if (this.call?.state !== 'connected' || this.phase === 'idle') {
      clearInterval(this.ticker);
      return;
    }
    const text = this.statusText();
    this.statusEl.textContent = text;
    if (!this.flashText) this.barText.textContent = text;
  }
}
