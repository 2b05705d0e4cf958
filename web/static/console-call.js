// Voice calls in the agent console: the call bar of the selected
// conversation (state, duration, codec and live quality from "call" frames,
// digits pressed on the desk phone), "Call customer" and "Hang up".
// The audio itself is on the agent's desk phone, not in the browser.

import { h } from './chat.js';
import { formatDuration } from './call.js';

const ACTIVE = new Set(['dialing', 'ringing', 'connected', 'held']);

/** RINGING are the states of a call that rings (the desk phone, or the customer). */
const RINGING = new Set(['dialing', 'ringing']);

/**
 * ConsoleCalls draws the call bar. Options:
 *   bar                 the #callbar element
 *   send(frame)         sends a frame on the agent's socket, reports success
 *   note(text)          shows a notice
 *   onChange(id, prev)  a conversation's call changed (prev: its last state, or '')
 */
export class ConsoleCalls {
  constructor({ bar, send, note, onChange }) {
    this.bar = bar;
    this.send = send;
    this.note = note;
    this.onChange = onChange ?? (() => {});
    this.calls = new Map(); // conversation id -> {call, since, digits}
    this.conv = null; // the selected conversation's data
    this.ticker = 0;
    this.build();
  }

  build() {
    this.statusEl = h('span', { class: 'call-state', 'data-testid': 'call-status', 'data-call-state': 'none', role: 'status', text: 'No call' });
    this.qualityEl = h('span', { class: 'call-quality', 'data-testid': 'call-quality' });
    this.dtmfEl = h('span', { class: 'call-dtmf', 'data-testid': 'call-dtmf', 'aria-live': 'polite' });
    this.demoEl = h('span', { class: 'call-demo', 'data-testid': 'demo-phone', title: 'The built-in demo phone answers this call: a greeting, then your customer hears themselves (echo). Configure a PBX under trunks for real calls.', text: 'demo phone', hidden: true });
    this.callButton = h('button', { type: 'button', class: 'secondary', 'data-testid': 'call-customer', text: 'Call customer' });
    this.callButton.addEventListener('click', () => this.callCustomer());
    this.hangupButton = h('button', { type: 'button', class: 'danger', 'data-testid': 'hangup', text: 'Hang up' });
    this.hangupButton.addEventListener('click', () => this.hangup());
    // Recording: a toggle for queues that record on demand, a mark while
    // the call is recorded, and the conversation's recordings to play.
    this.recordButton = h('button', { type: 'button', class: 'secondary', 'data-testid': 'recording-toggle', 'aria-pressed': 'false', text: 'Record', hidden: true });
    this.recordButton.addEventListener('click', () => this.toggleRecording());
    this.recordingEl = h('span', { class: 'call-recording', 'data-testid': 'recording-indicator', role: 'status', text: '● Recording', hidden: true });
    this.recordingsEl = h('span', { class: 'call-recordings', 'data-testid': 'recordings' });
    this.recordingsFor = '';
    this.bar.replaceChildren(
      h('span', { class: 'call-icon', 'aria-hidden': 'true', text: '☎' }),
      this.statusEl, this.demoEl, this.recordingEl, this.qualityEl, this.dtmfEl, this.recordingsEl,
      h('span', { class: 'call-actions' }, this.recordButton, this.callButton, this.hangupButton));
  }

  /** onFrame takes call frames; it returns true for those it handled. */
  onFrame(f) {
    switch (f.type) {
      case 'call': {
        const c = f.call;
        if (!c || !f.conversation_id) return true;
        const prev = this.calls.get(f.conversation_id);
        const same = prev?.call.id === c.id;
        const entry = {
          call: c,
          since: same ? prev.since : 0,
          digits: same ? prev.digits : '',
        };
        if (c.state === 'connected' && !(same && (prev.call.state === 'connected' || prev.call.state === 'held'))) entry.since = Date.now();
        this.calls.set(f.conversation_id, entry);
        if (same && prev.call.recording && !c.recording && this.conv?.id === f.conversation_id) this.recordingsFor = '';
        if (this.conv?.id === f.conversation_id) this.render();
        if (!same || prev.call.state !== c.state) this.onChange(f.conversation_id, same ? prev.call.state : '');
        return true;
      }
      case 'call.dtmf': {
        const entry = this.calls.get(f.conversation_id);
        if (entry) {
          entry.digits = (entry.digits + (f.digit ?? '')).slice(-24);
          if (this.conv?.id === f.conversation_id) this.render();
        }
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * stateOf is the state of a conversation's call while one is up
   * (dialing, ringing, connected or held), else ''.
   */
  stateOf(convId) {
    const st = this.calls.get(convId)?.call.state ?? '';
    return ACTIVE.has(st) ? st : '';
  }

  /** ringing says whether a conversation's call rings now. */
  ringing(convId) {
    return RINGING.has(this.stateOf(convId));
  }

  /** show draws the bar for the selected conversation (data), or hides it. */
  show(data) {
    this.conv = data ?? null;
    this.render();
  }

  callCustomer() {
    const c = this.conv;
    if (!c) return;
    if (!this.send({ type: 'voice.call', conversation_id: c.id })) this.note('Not connected: try again in a moment.');
  }

  toggleRecording() {
    const c = this.conv;
    const call = c && this.calls.get(c.id)?.call;
    if (!call) return;
    const type = call.recording ? 'recording.stop' : 'recording.start';
    if (!this.send({ type, conversation_id: c.id })) this.note('Not connected: try again in a moment.');
  }

  /** loadRecordings lists the conversation's call recordings as players. */
  async loadRecordings(convId) {
    this.recordingsFor = convId;
    let calls = [];
    try {
      const res = await fetch(`/api/v1/conversations/${encodeURIComponent(convId)}/calls`, { credentials: 'same-origin' });
      if (res.ok) calls = (await res.json()).calls ?? [];
    } catch {
      return;
    }
    if (this.conv?.id !== convId) return;
    const players = [];
    for (const call of calls) {
      for (const r of call.recordings ?? []) {
        if (!r.ended_at) continue;
        players.push(h('audio', { controls: true, preload: 'none', 'data-testid': 'recording-player', 'data-recording-id': r.id, src: r.url, title: `Recording of ${new Date(r.started_at).toLocaleString()}` }));
      }
    }
    this.recordingsEl.replaceChildren(...players);
  }

  hangup() {
    const c = this.conv;
    if (!c) return;
    if (!this.send({ type: 'voice.hangup', conversation_id: c.id })) this.note('Not connected: try again in a moment.');
  }

  /** The end of a call in the agent's words, from its cause code. */
  static endText(c) {
    const words = {
      agent_hangup: 'You hung up',
      customer_hangup: 'The customer hung up',
      browser_lost: "The customer's connection was lost",
      not_answered: 'The customer did not answer',
      declined: 'The customer declined the call',
      shutdown: 'The gateway is restarting',
      gateway_restart: 'The gateway restarted',
      internal_error: 'A fault in the gateway cut the call off',
    };
    return words[c.cause] || c.reason || (c.state === 'failed' ? 'unknown reason' : 'hung up');
  }

  statusText(entry) {
    const c = entry?.call;
    if (!c) return 'No call';
    const who = c.direction === 'outbound' ? (c.target ? `${c.target}` : 'your phone') : 'the customer';
    switch (c.state) {
      case 'dialing': return c.direction === 'agent' ? 'Ringing your phone…' : `Calling ${who}…`;
      case 'ringing': return c.direction === 'outbound' ? `Ringing ${who}…` : 'Ringing the customer…';
      case 'connected': return `Connected ${formatDuration((Date.now() - (entry.since || Date.now())) / 1000)}`;
      case 'held': return 'On hold';
      case 'failed': return `Call failed: ${ConsoleCalls.endText(c)}`;
      case 'ended': return `Call ended: ${ConsoleCalls.endText(c)}`;
      default: return c.state;
    }
  }

  qualityText(c) {
    if (!c) return '';
    const parts = [];
    if (c.codec) parts.push(c.codec);
    const q = c.quality;
    if (q && ACTIVE.has(c.state)) {
      parts.push(`loss ${Number(q.loss_percent ?? 0).toFixed(1)}%`);
      parts.push(`jitter ${Number(q.jitter_ms ?? 0).toFixed(1)} ms`);
      if (q.mos) parts.push(`MOS ${Number(q.mos).toFixed(1)}`);
    }
    return parts.join(' · ');
  }

  render() {
    clearInterval(this.ticker);
    const conv = this.conv;
    if (!conv) {
      this.bar.hidden = true;
      return;
    }
    const entry = this.calls.get(conv.id);
    const c = entry?.call;
    const live = c && ACTIVE.has(c.state);
    const open = conv.state === 'active';
    this.bar.hidden = !open && !c;
    this.bar.dataset.callState = c?.state ?? 'none';
    this.statusEl.textContent = this.statusText(entry);
    this.statusEl.dataset.callState = c?.state ?? 'none';
    this.statusEl.dataset.endedBy = c?.ended_by ?? '';
    const q = c?.quality;
    if (q && live) {
      this.statusEl.dataset.loss = String(q.loss_percent ?? 0);
      this.statusEl.dataset.jitter = String(q.jitter_ms ?? 0);
      this.statusEl.dataset.mos = String(q.mos ?? 0);
    }
    this.qualityEl.textContent = this.qualityText(c);
    this.demoEl.hidden = !c?.demo;
    this.dtmfEl.textContent = entry?.digits && live ? `Keypad: ${entry.digits}` : '';
    this.callButton.hidden = Boolean(live) || !open;
    this.hangupButton.hidden = !live;
    const up = c?.state === 'connected' || c?.state === 'held';
    this.recordingEl.hidden = !(up && c?.recording);
    this.recordButton.hidden = !(up && c?.recording_mode === 'on_demand');
    this.recordButton.textContent = c?.recording ? 'Stop recording' : 'Record';
    this.recordButton.setAttribute('aria-pressed', String(Boolean(c?.recording)));
    if (this.recordingsFor !== conv.id) {
      this.recordingsEl.replaceChildren();
      this.loadRecordings(conv.id);
    }
    if (c?.state === 'connected') {
      this.ticker = setInterval(() => { this.statusEl.textContent = this.statusText(this.calls.get(conv.id)); }, 1000);
    }
  }
}
