// The supervisor's board in the agent console (agents[].role: supervisor):
// the queues of the supervisor with their waiting conversations and
// longest wait, each agent's presence, conversations, call and video
// state, and today's counts, all pushed by the gateway ("board" frames
// after "board.subscribe"), never polled. From the board a supervisor
// opens any conversation of its queues to read it, reassigns it to
// another agent, and monitors a call: listen, whisper (the agent's desk
// phone hears the supervisor) or barge in (both sides do), over a peer
// connection of its own.

import { h } from './chat.js';

/** formatWait shows seconds as m:ss, or h:mm:ss past an hour. */
function formatWait(s) {
  s = Math.max(0, Math.floor(s));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

const CALL_TEXT = { dialing: 'dialing', ringing: 'ringing', connected: 'on a call', held: 'on hold' };

/**
 * SupervisorBoard draws the board and runs the monitoring. Options:
 *   root          the element the board goes into
 *   send(frame)   sends a frame on the console's socket
 *   note(text)    shows a notice
 *   open(id)      opens a conversation (read-only unless the console holds it)
 *   iceServers()  the ICE servers of the console's welcome
 */
export class SupervisorBoard {
  constructor({ root, send, note, open, iceServers }) {
    this.root = root;
    this.send = send;
    this.note = note;
    this.open = open;
    this.iceServers = iceServers ?? (() => []);
    this.board = null;
    this.monitor = null; // {convId, pc, stream, audio, mode}
    this.ticker = 0;
    this.build();
  }

  build() {
    this.queuesEl = h('div', { class: 'board-queues' });
    this.agentsEl = h('div', { class: 'board-agents' });
    this.todayEl = h('dl', { class: 'board-today', 'data-testid': 'board-today' });
    this.monitorEl = h('span', { class: 'monitor-status', 'data-testid': 'monitor-status', 'data-state': 'none', role: 'status', text: '' });
    // The call's mix plays here while monitoring.
    this.audio = h('audio', { 'data-testid': 'monitor-audio', autoplay: true, hidden: true });
    this.panel = h('section', { class: 'board', 'data-testid': 'board', 'aria-label': 'Supervisor board' },
      h('h2', { text: 'Board' }), this.monitorEl, this.audio, this.queuesEl, this.agentsEl, h('h3', { text: 'Today' }), this.todayEl);
    this.root.replaceChildren(this.panel);
    this.root.hidden = false;
  }

  /**
   * start subscribes to the board; call it after every welcome. A
   * monitoring ends with the socket it started on, so one still shown
   * from before a reconnect is closed here.
   */
  start() {
    if (this.monitor) this.closeMonitor();
    this.send({ type: 'board.subscribe' });
    clearInterval(this.ticker);
    // Waits count up on screen between boards; the gateway sends a board
    // only when something changes.
    this.ticker = setInterval(() => this.tickWaits(), 1000);
  }

  /** onFrame takes the board's frames; it returns true for those it handled. */
  onFrame(f) {
    switch (f.type) {
      case 'board':
        this.board = f;
        this.render();
        return true;
      case 'monitor.answer':
        this.monitor?.pc.setRemoteDescription({ type: 'answer', sdp: f.sdp }).catch((err) => this.note(`Monitoring failed: ${err.message}`));
        return true;
      case 'monitor.candidate':
        if (this.monitor?.convId === f.conversation_id && f.candidate?.candidate) {
          this.monitor.pc.addIceCandidate(f.candidate).catch(() => {});
        }
        return true;
      case 'monitor':
        if (f.state === 'ended') {
          if (this.monitor?.convId === f.conversation_id) this.closeMonitor();
        } else if (this.monitor?.convId === f.conversation_id) {
          this.monitor.mode = f.state;
        }
        this.showMonitor();
        this.render();
        return true;
      default:
        return false;
    }
  }

  render() {
    const b = this.board;
    if (!b) return;
    this.queuesEl.replaceChildren(...b.queues.map((q) => h('div', {
      class: 'board-queue', 'data-testid': 'board-queue', 'data-queue': q.name, 'data-waiting': q.waiting,
    },
    h('strong', { text: q.name }),
    h('span', { 'data-testid': 'board-waiting', text: `${q.waiting} waiting` }),
    h('span', { class: 'board-wait', 'data-testid': 'board-longest-wait', 'data-since': q.oldest_since ?? '', text: q.waiting ? `longest ${formatWait(q.longest_wait_s)}` : '' }),
    h('ul', { class: 'board-waiting' }, q.list.map((c) => h('li', { 'data-testid': 'board-waiting-conversation', 'data-conversation': c.id },
      h('button', { type: 'button', class: 'link', 'data-testid': 'board-open', onclick: () => this.open(c.id), text: c.customer || 'Visitor' }),
      this.reassignControl(c.id)))))));
    this.agentsEl.replaceChildren(...b.agents.map((a) => h('div', {
      class: 'board-agent', 'data-testid': 'board-agent', 'data-agent': a.id, 'data-presence': a.presence, 'data-role': a.role,
    },
    h('strong', { text: a.name || a.id }),
    h('span', { class: `presence-dot ${a.presence}`, 'data-testid': 'board-presence', text: a.presence }),
    h('span', { class: 'count', text: `${a.conversations.length}/${a.max_chats}` }),
    h('ul', {}, a.conversations.map((c) => this.conversationRow(c))))));
    const t = b.today;
    const calls = t.calls ?? {};
    this.todayEl.replaceChildren(
      ...[['conversations', 'Conversations', t.conversations], ['answered', 'Answered', t.answered], ['abandoned', 'Abandoned', t.abandoned],
        ['avg-wait', 'Average wait', formatWait(t.avg_wait_s)], ['avg-call', 'Average call', formatWait(t.avg_call_s)]]
        .map(([id, label, v]) => h('div', {}, h('dt', { text: label }), h('dd', { 'data-testid': `today-${id}`, text: String(v) }))),
      h('div', {}, h('dt', { text: 'Calls' }), h('dd', {
        'data-testid': 'today-calls', 'data-answered': calls.answered ?? 0, 'data-not-answered': calls.not_answered ?? 0, 'data-active': calls.active ?? 0,
        text: `${calls.answered ?? 0} answered, ${calls.not_answered ?? 0} not answered, ${calls.active ?? 0} in progress`,
      })));
  }

  conversationRow(c) {
    const mine = this.monitor?.convId === c.id;
    const live = c.call === 'connected' || c.call === 'held';
    const row = h('li', {
      class: 'board-conversation', 'data-testid': 'board-conversation', 'data-conversation': c.id,
      'data-call-state': c.call ?? '', 'data-video': c.video ? 'true' : 'false', 'data-monitor': c.monitor?.mode ?? '',
    },
    h('button', { type: 'button', class: 'link', 'data-testid': 'board-open', onclick: () => this.open(c.id), text: c.customer || 'Visitor' }),
    c.call ? h('span', { class: 'badge', text: CALL_TEXT[c.call] ?? c.call }) : null,
    c.video ? h('span', { class: 'badge', text: 'video' }) : null,
    c.monitor && !mine ? h('span', { class: 'badge', text: `${c.monitor.supervisor}: ${c.monitor.mode}` }) : null);
    if (live && (!c.monitor || mine)) {
      const act = (mode) => () => (mine ? this.setMode(c.id, mode) : this.startMonitor(c.id, mode));
      row.append(h('span', { class: 'monitor-actions' },
        h('button', { type: 'button', 'data-testid': 'monitor-listen', 'aria-pressed': String(mine && this.monitor.mode === 'listen'), onclick: act('listen'), text: 'Listen' }),
        h('button', { type: 'button', 'data-testid': 'monitor-whisper', 'aria-pressed': String(mine && this.monitor.mode === 'whisper'), onclick: act('whisper'), text: 'Whisper' }),
        h('button', { type: 'button', 'data-testid': 'monitor-barge', 'aria-pressed': String(mine && this.monitor.mode === 'barge'), onclick: act('barge'), text: 'Barge in' }),
        mine ? h('button', { type: 'button', class: 'danger', 'data-testid': 'monitor-stop', onclick: () => this.stopMonitor(), text: 'Stop' }) : null));
    }
    row.append(this.reassignControl(c.id));
    return row;
  }

  /** reassignControl: a list of the board's agents and a button. */
  reassignControl(convId) {
    const sel = h('select', { 'data-testid': 'reassign-target', 'aria-label': 'Reassign to' },
      h('option', { value: '', text: 'Reassign to…' }),
      (this.board?.agents ?? []).map((a) => h('option', { value: a.id, text: `${a.name || a.id} (${a.presence})` })));
    const go = h('button', { type: 'button', class: 'secondary', 'data-testid': 'reassign', text: 'Reassign' });
    go.addEventListener('click', () => {
      if (sel.value) this.send({ type: 'reassign', conversation_id: convId, agent: sel.value, id: `r:${convId}` });
    });
    return h('span', { class: 'reassign' }, sel, go);
  }

  tickWaits() {
    for (const el of this.queuesEl.querySelectorAll('[data-testid="board-longest-wait"]')) {
      if (el.dataset.since) el.textContent = `longest ${formatWait((Date.now() - Date.parse(el.dataset.since)) / 1000)}`;
    }
  }

  /**
   * startMonitor opens the monitoring connection: the microphone (sent,
   * but heard by nobody until whisper or barge) and the call's mix.
   */
  async startMonitor(convId, mode) {
    if (this.monitor) this.stopMonitor();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      this.note(`Monitoring needs the microphone: ${err.message}`);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    const audio = this.audio;
    pc.ontrack = (e) => { audio.srcObject = e.streams[0] ?? new MediaStream([e.track]); audio.play().catch(() => {}); };
    for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
    this.monitor = { convId, pc, stream, audio, mode: 'starting', wanted: mode };
    this.showMonitor();
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 3000);
    });
    if (this.monitor?.pc !== pc) return;
    this.send({ type: 'monitor.start', conversation_id: convId, sdp: pc.localDescription.sdp, id: `m:${convId}` });
    if (mode !== 'listen') this.setMode(convId, mode);
  }

  setMode(convId, mode) {
    this.send({ type: 'monitor.mode', conversation_id: convId, state: mode });
  }

  stopMonitor() {
    if (!this.monitor) return;
    this.send({ type: 'monitor.stop', conversation_id: this.monitor.convId });
    this.closeMonitor();
  }

  closeMonitor() {
    const m = this.monitor;
    this.monitor = null;
    if (!m) return;
    m.pc.close();
    for (const track of m.stream.getTracks()) track.stop();
    m.audio.srcObject = null;
    this.showMonitor();
    this.render();
  }

  /** errorFrame ends a monitoring the gateway refused. */
  errorFrame(f) {
    if (typeof f.ref === 'string' && f.ref.startsWith('m:') && this.monitor?.convId === f.ref.slice(2)) {
      this.note(`Monitoring refused: ${f.message}`);
      this.closeMonitor();
      return true;
    }
    return false;
  }

  showMonitor() {
    const m = this.monitor;
    this.monitorEl.dataset.state = m ? m.mode : 'none';
    this.monitorEl.dataset.conversation = m?.convId ?? '';
    this.monitorEl.textContent = m ? { starting: 'Connecting…', listen: 'Listening', whisper: 'Whispering to the agent', barge: 'In the call' }[m.mode] ?? m.mode : '';
  }
}
