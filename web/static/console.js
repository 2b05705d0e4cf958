// The Segue agent console: login, presence, the waiting queue, the agent's
// conversations and the chat itself. It uses the session cookie for HTTP and
// for the WebSocket of the same origin.

import { h, apiError, enterSends, formatTime, newId, ChatLog, Outbox, PAGE, Socket, STATE_TEXT, Typing } from './chat.js';
import { ConsoleCalls } from './console-call.js';
import { ConsoleVideo } from './console-video.js'; // video (Step 3)
import { SupervisorBoard } from './console-super.js'; // supervisors
import { Desk } from './console-desk.js';

const API = '/api/v1';
const WS_URL = `${location.origin.replace(/^http/, 'ws')}/api/v1/ws`;

const $ = (id) => document.getElementById(id);

/** closed: a conversation that takes no more messages (ended, or a message left). */
const closed = (c) => c?.state === 'ended' || c?.state === 'left';

// The ring sound is a setting of this browser: off unless the agent
// turns it on.
const RING_SOUND_KEY = 'segue:console:ring-sound';

function ringSoundOn() {
  try { return localStorage.getItem(RING_SOUND_KEY) === 'on'; } catch { return false; }
}

function setRingSound(on) {
  try {
    if (on) localStorage.setItem(RING_SOUND_KEY, 'on');
    else localStorage.removeItem(RING_SOUND_KEY);
  } catch { /* storage refused: the setting lasts for this page */ }
  if (on) ringContext()?.resume().catch(() => {}); // the click allows audio
}

let ringCtx = null;
function ringContext() {
  if (!ringCtx && window.AudioContext) ringCtx = new AudioContext();
  return ringCtx;
}

/** playRing plays two short rings (440 + 480 Hz, the North American ring). */
function playRing() {
  const ctx = ringContext();
  if (!ctx) return;
  ctx.resume().catch(() => {});
  const gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(ctx.destination);
  const t0 = ctx.currentTime + 0.05;
  for (const start of [0, 0.6]) {
    gain.gain.setValueAtTime(0.15, t0 + start);
    gain.gain.setValueAtTime(0, t0 + start + 0.4);
  }
  for (const hz of [440, 480]) {
    const osc = ctx.createOscillator();
    osc.frequency.value = hz;
    osc.connect(gain);
    osc.start(t0);
    osc.stop(t0 + 1.1);
  }
}

/** byAge orders queue entries as the gateway does: oldest first, then by id. */
function byAge(a, b) {
  const d = Date.parse(a.created_at) - Date.parse(b.created_at);
  if (d) return d;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Conv is the console's view of one conversation: its data, log and counters. */
class Conv {
  constructor(data) {
    this.data = data;
    this.unread = 0;
    this.container = h('div', { class: 'log', 'data-testid': 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages', tabindex: '0', 'data-conversation': data.id });
    this.log = new ChatLog(this.container, {
      role: 'agent',
      loadFile: fetchFile,
      onChange: (msg, isNew) => app.messageShown(this, msg, isNew),
      onRetry: (msg) => app.queueText(this, msg.text),
    });
    this.readSent = 0;
    this.loaded = false;
    // older: the gateway has messages before the first one shown.
    this.older = false;
    this.loadingOlder = false;
  }

  get id() {
    return this.data.id;
  }
}

/** fetchFile downloads a file with the session cookie. */
async function fetchFile(fileId, inline) {
  const res = await fetch(`${API}/files/${encodeURIComponent(fileId)}${inline ? '?inline=1' : ''}`, { credentials: 'same-origin' });
  if (!res.ok) throw await apiError(res);
  return res.blob();
}

async function api(path, options = {}) {
  const res = await fetch(`${API}${path}`, { credentials: 'same-origin', ...options });
  if (!res.ok) throw await apiError(res);
  return res.status === 204 ? null : res.json();
}

const app = {
  agent: null,
  convs: new Map(), // my conversations, by id
  queue: [], // the waiting conversations loaded so far, oldest first
  queueTotal: 0, // how many wait in my queues
  queueMore: false, // more pages of the queue to load
  queueLoading: false,
  left: [], // messages left while the queue was full, newest first
  agents: [], // everyone, with presence, for transfers
  queues: [], // queue names, for transfers
  offered: new Set(),
  selected: null,
  wanted: null, // conversation id from /console/c/{id}
  early: new Map(), // history frames that came before their conversation
  outbox: null, // unacknowledged messages, per agent
  socket: null,
  typing: null,
  typingHide: 0,

  async start() {
    const m = location.pathname.match(/^\/console\/c\/([^/]+)/);
    if (m) this.wanted = decodeURIComponent(m[1]);
    $('login-form').addEventListener('submit', (e) => { e.preventDefault(); this.login(); });
    try {
      const { agent } = await api('/agent/me');
      this.enter(agent);
    } catch {
      this.showLogin();
    }
  },

  showLogin(message = '') {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message;
    $('login-error').hidden = !message;
    $('login-id').focus();
  },

  async login() {
    const button = $('login-submit');
    button.disabled = true;
    try {
      const { agent } = await api('/agent/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ id: $('login-id').value.trim(), password: $('login-password').value }),
      });
      $('login-password').value = '';
      this.enter(agent);
    } catch (err) {
      let text = `Sign-in failed: ${err.message}`;
      if (err.status === 401) text = 'Wrong agent id or password.';
      else if (err.code === 'login_locked' || err.code === 'demo_password') text = `Sign-in refused: ${err.message}.`;
      this.showLogin(text);
    } finally {
      button.disabled = false;
    }
  },

  async logout() {
    this.socket?.stop();
    try { await api('/agent/logout', { method: 'POST' }); } catch { /* the session is gone anyway */ }
    location.assign('/console');
  },

  /** logoutAll ends this agent's sessions on every browser. */
  async logoutAll() {
    this.socket?.stop();
    try { await api('/agent/logout-all', { method: 'POST' }); } catch { /* the session is gone anyway */ }
    location.assign('/console');
  },

  enter(agent) {
    // Another agent signing in on this page starts from a clean page.
    if (this.agent && this.agent.id !== agent.id) {
      location.assign(location.pathname);
      return;
    }
    this.socket?.stop();
    this.agent = agent;
    this.outbox = new Outbox(`segue:console:${agent.id}:outbox`);
    $('login').hidden = true;
    $('app').hidden = false;
    $('me').textContent = agent.name || agent.id;
    $('me').dataset.agent = agent.id;
    if (agent.presence === 'away') $('presence').value = 'away';
    this.bind();
    this.queues = agent.queues ?? [];
    this.fillTransferTargets();
    this.socket = new Socket({
      url: WS_URL,
      hello: () => ({ type: 'hello', page: PAGE, after: Object.fromEntries([...this.convs.values()].map((c) => [c.id, c.log.maxSeq])) }),
      onFrame: (f) => this.onFrame(f),
      onState: (s, reason) => this.showState(s, reason),
      onRejected: () => this.showLogin('Your session has ended. Please sign in again.'),
      onRetry: (n) => { if (n % 3 === 0) this.checkSession(); },
    });
    this.typing = new Typing((on) => !closed(this.selected?.data) && this.selected && this.socket.send({ type: 'typing', typing: on, conversation_id: this.selected.id }));
    this.calls ??= new ConsoleCalls({
      bar: $('callbar'), send: (f) => this.socket.send(f), note: (t) => this.note(t),
      onChange: (id, prev) => this.callChanged(id, prev),
    });
    // video (Step 3)
    this.video ??= new ConsoleVideo({ send: (f) => this.socket.send(f), note: (t) => this.note(t), log: (id) => this.convs.get(id)?.log });
    if (!this.desk) {
      this.desk = new Desk({ api, open: (id) => this.openLinked(id), send: (f) => this.socket.send(f), note: (t) => this.note(t) });
      this.desk.start();
    }
    this.socket.start();
  },

  /** checkSession shows the login form if the session is gone. */
  async checkSession() {
    try {
      const res = await fetch(`${API}/agent/me`, { credentials: 'same-origin' });
      if (res.status === 401) {
        this.socket.stop();
        this.showLogin('Your session has ended. Please sign in again.');
      }
    } catch { /* unreachable: the socket keeps trying */ }
  },

  bind() {
    if (this.bound) return;
    this.bound = true;
    $('presence').addEventListener('change', (e) => this.socket.send({ type: 'presence', state: e.target.value }));
    $('ring-sound').checked = ringSoundOn();
    $('ring-sound').addEventListener('change', (e) => setRingSound(e.target.checked));
    $('logout').addEventListener('click', () => this.logout());
    $('logout-all').addEventListener('click', () => this.logoutAll());
    $('composer').addEventListener('submit', (e) => { e.preventDefault(); this.sendText(); });
    enterSends($('chat-input'), () => this.sendText());
    $('chat-input').addEventListener('input', () => this.typing.input());
    $('file-input').addEventListener('change', () => this.sendFiles());
    $('end').addEventListener('click', () => this.end());
    $('dismiss').addEventListener('click', () => this.dismiss());
    $('transfer-form').addEventListener('submit', (e) => { e.preventDefault(); this.transfer(); });
    $('queue-more').addEventListener('click', () => this.loadQueuePage());
    $('history-more').addEventListener('click', () => this.loadOlder(this.selected));
    document.addEventListener('visibilitychange', () => this.sendRead());
    addEventListener('popstate', () => {
      const m = location.pathname.match(/^\/console\/c\/([^/]+)/);
      const conv = m && this.convs.get(decodeURIComponent(m[1]));
      if (conv) this.select(conv, false);
    });
  },

  /** fillTransferTargets lists the other agents and the queues. */
  fillTransferTargets() {
    const sel = $('transfer-target');
    const keep = sel.value;
    const others = this.agents.filter((a) => a.id !== this.agent.id);
    sel.replaceChildren(h('option', { value: '', text: 'Transfer to…' }));
    if (others.length) {
      sel.append(h('optgroup', { label: 'Agents' }, others.map((a) => h('option', {
        value: `agent:${a.id}`, 'data-presence': a.presence,
        text: `${a.name || a.id}${a.presence && a.presence !== 'available' ? ` (${a.presence})` : ''}`,
      }))));
    }
    if (this.queues.length) {
      sel.append(h('optgroup', { label: 'Queues' }, this.queues.map((q) => h('option', { value: `queue:${q}`, text: q }))));
    }
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  },

  showState(state, reason) {
    const el = $('call-status');
    el.dataset.state = state;
    el.dataset.reason = reason ?? '';
    let text = STATE_TEXT[state] ?? state;
    if (reason && state !== 'connected') text = `${text} (${reason})`;
    el.textContent = text;
  },

  onFrame(f) {
    if (this.video?.onFrame(f)) return; // video (Step 3)
    if (this.calls?.onFrame(f)) return;
    if (this.board?.onFrame(f)) return;
    if (this.desk?.onFrame(f)) return;
    switch (f.type) {
      case 'welcome': this.welcome(f); break;
      case 'ack': this.acked(f); break;
      case 'message': this.message(f.message); break;
      case 'conversation': this.conversation(f.conversation); break;
      case 'queue.added':
      case 'queue.updated':
        this.queueTotal = f.total ?? this.queueTotal;
        // The latest word on the conversation's offer: an offer that
        // expired or went to another agent is no longer shown as ours.
        if (f.conversation?.id && f.conversation.offered_to !== this.agent?.id) this.offered.delete(f.conversation.id);
        this.queuePut(f.conversation, f.type === 'queue.added');
        this.renderQueue();
        break;
      case 'queue.removed':
        this.queueTotal = f.total ?? this.queueTotal;
        this.queue = this.queue.filter((c) => c.id !== f.conversation_id);
        this.offered.delete(f.conversation_id);
        this.renderQueue();
        break;
      case 'queue.page':
        this.queueLoading = false;
        this.queueTotal = f.total ?? this.queueTotal;
        this.queueMore = Boolean(f.more);
        for (const c of f.queue ?? []) this.queuePut(c, true);
        this.renderQueue();
        break;
      case 'left.added':
        this.left = [f.conversation, ...this.left.filter((c) => c.id !== f.conversation.id)];
        this.renderLeft();
        break;
      case 'offer':
        this.offered.add(f.conversation.id);
        this.queuePut(f.conversation, true);
        this.renderQueue();
        break;
      case 'typing': this.typingFrame(f); break;
      case 'read':
        if (f.role !== 'agent') this.convs.get(f.conversation_id)?.log.setRead(f.seq);
        break;
      case 'presence': $('presence').value = f.state; break;
      case 'history': this.history(f.conversation_id, f.messages ?? [], f.older); break;
      case 'agents':
        this.agents = f.agents ?? [];
        this.fillTransferTargets();
        break;
      case 'error': this.errorFrame(f); break;
      default: break;
    }
  },

  welcome(f) {
    if (f.agent) this.agent = { ...this.agent, ...f.agent };
    if (f.agent?.presence === 'away' || f.agent?.presence === 'available') $('presence').value = f.agent.presence;
    if (Array.isArray(f.agents)) this.agents = f.agents;
    if (Array.isArray(f.queues)) this.queues = f.queues;
    this.fillTransferTargets();
    if (this.agent.role === 'supervisor') {
      this.board ??= new SupervisorBoard({
        root: $('board-slot'), send: (fr) => this.socket.send(fr), note: (t) => this.note(t),
        open: (id) => this.openLinked(id), iceServers: () => this.video?.iceServers ?? [],
      });
      this.board.start();
    }
    const open = new Set();
    for (const c of f.conversations ?? []) {
      open.add(c.id);
      this.upsertConv(c);
    }
    const older = f.older ?? {};
    for (const conv of this.convs.values()) {
      if (!open.has(conv.id)) continue;
      // Too much was missed to show it all: start again from the latest page.
      if (older[conv.id] && conv.log.maxSeq > 0) conv.log.clear();
      conv.older = Boolean(older[conv.id]);
      conv.loadingOlder = false;
    }
    for (const m of f.messages ?? []) this.message(m);
    for (const conv of this.convs.values()) {
      conv.loaded = true;
      if (!open.has(conv.id) && !closed(conv.data)) this.convs.delete(conv.id);
    }
    this.queueTotal = f.queue_total ?? (f.queue ?? []).length;
    this.queueMore = Boolean(f.queue_more);
    this.queueLoading = false;
    this.setQueue(f.queue ?? []);
    this.left = f.left ?? [];
    this.renderLeft();
    this.renderMine();
    if (this.wanted) {
      this.openLinked(this.wanted);
      this.wanted = null;
    } else if (!this.selected && this.convs.size === 1) {
      this.select(this.convs.values().next().value);
    } else if (this.selected) {
      this.select(this.convs.get(this.selected.id) ?? null, false);
    }
    // Video goes on where the gateway says it is, now that the
    // conversation on screen is chosen (after a reload: joins it again).
    this.video?.resume(f);
    this.flushOutbox();
  },

  /**
   * openLinked shows the conversation of a /console/c/{id} link (from a
   * desk phone's Call-Info, say): one of mine, one waiting in my queues, or
   * an earlier one I may still read.
   */
  async openLinked(id) {
    const conv = this.convs.get(id);
    if (conv) {
      this.select(conv, false);
      return;
    }
    if (this.queue.some((c) => c.id === id)) {
      this.linked = id;
      this.renderQueue();
      this.note('The linked conversation is waiting: accept it to reply.');
      return;
    }
    try {
      const { conversation } = await api(`/conversations/${encodeURIComponent(id)}`);
      const readOnly = this.upsertConv(conversation);
      this.renderMine();
      this.select(readOnly, false);
    } catch (err) {
      this.note(err.status === 403 || err.status === 404
        ? 'The linked conversation is not yours to open.'
        : `Could not open the linked conversation: ${err.message}`);
    }
  },

  /** upsertConv adds or updates one of my conversations. */
  upsertConv(data) {
    let conv = this.convs.get(data.id);
    if (!conv) {
      conv = new Conv(data);
      this.convs.set(data.id, conv);
      const early = this.early.get(data.id);
      this.early.delete(data.id);
      for (const m of early?.messages ?? []) conv.log.upsert(m);
      if (early) conv.older = Boolean(early.older);
    } else {
      conv.data = data;
    }
    conv.log.setRead(data.read?.customer ?? 0);
    return conv;
  },

  /**
   * history shows a page of a transcript: the latest one, pushed after
   * accept or transfer or asked for by loadHistory, or an older one asked
   * for by loadOlder. older says whether messages before it exist.
   */
  history(convID, messages, older) {
    const conv = this.convs.get(convID);
    if (!conv) {
      this.early.set(convID, { messages, older });
      return;
    }
    const el = conv.container;
    const fromBottom = el.scrollHeight - el.scrollTop;
    const first = conv.log.minSeq();
    for (const m of messages) conv.log.upsert(m);
    // A page before what is shown keeps the reader's place; the latest
    // page sets how far back the log goes.
    if (conv.loadingOlder) el.scrollTop = el.scrollHeight - fromBottom;
    if (conv.loadingOlder || !first || (messages.length && messages[0].seq <= first)) conv.older = Boolean(older);
    conv.loadingOlder = false;
    conv.loaded = true;
    if (conv === this.selected) this.renderOlder();
  },

  /** loadHistory fetches the latest page of a transcript the log lacks. */
  async loadHistory(conv) {
    if (conv.log.maxSeq === 0) {
      if (this.socket.send({ type: 'history', conversation_id: conv.id })) return;
    }
    try {
      const { messages } = await api(`/conversations/${encodeURIComponent(conv.id)}/messages?after=${conv.log.maxSeq}`);
      for (const m of messages ?? []) conv.log.upsert(m);
      conv.loaded = true;
    } catch (err) {
      if (conv === this.selected) this.note(`Could not load the history: ${err.message}`);
    }
  },

  /** loadOlder asks for the page before the oldest message shown. */
  loadOlder(conv) {
    if (!conv?.older || conv.loadingOlder) return;
    const before = conv.log.minSeq();
    if (!before || !this.socket.send({ type: 'history', conversation_id: conv.id, before })) return;
    conv.loadingOlder = true;
    this.renderOlder();
  },

  renderOlder() {
    const conv = this.selected;
    const b = $('history-more');
    b.hidden = !conv?.older;
    b.disabled = Boolean(conv?.loadingOlder);
    b.textContent = conv?.loadingOlder ? 'Loading earlier messages…' : 'Load earlier messages';
  },

  conversation(data) {
    const mine = data.agent?.id === this.agent.id;
    const known = this.convs.get(data.id);
    this.queue = this.queue.filter((c) => c.id !== data.id || data.state === 'waiting');
    if (data.state === 'waiting') {
      const i = this.queue.findIndex((c) => c.id === data.id);
      if (i >= 0) this.queue[i] = data;
    }
    if (mine) {
      const conv = this.upsertConv(data);
      if (!known) {
        this.loadHistory(conv);
        if (this.accepting === data.id || !this.selected) this.select(conv);
      }
      if (this.accepting === data.id) this.accepting = null;
      if (this.linked === data.id) this.linked = null;
    } else if (known) {
      // Transferred away: keep it readable until the agent switches; its
      // video went with it.
      known.data = data;
      this.video?.handedOver(data.id);
      if (!closed(data)) {
        this.convs.delete(data.id);
        if (this.selected === known) this.select(null);
      }
    }
    this.renderQueue();
    this.renderMine();
    if (this.selected?.id === data.id) this.renderSelected();
  },

  setQueue(list) {
    this.queue = [...list].sort(byAge);
    for (const id of this.offered) if (!list.some((c) => c.id === id)) this.offered.delete(id);
    this.renderQueue();
  },

  /**
   * queuePut adds or updates a waiting conversation in the loaded part of
   * the queue: a new one past the last loaded page waits for that page.
   */
  queuePut(c, add) {
    if (!c || c.state !== 'waiting') return;
    const i = this.queue.findIndex((x) => x.id === c.id);
    if (i >= 0) {
      this.queue[i] = c;
      return;
    }
    const last = this.queue[this.queue.length - 1];
    if (!add || (this.queueMore && last && byAge(c, last) > 0)) return;
    this.queue.push(c);
    this.queue.sort(byAge);
  },

  /** loadQueuePage asks for the waiting conversations after the last loaded. */
  loadQueuePage() {
    const last = this.queue[this.queue.length - 1];
    if (!this.queueMore || this.queueLoading || !last) return;
    if (this.socket.send({ type: 'queue.page', after: { created_at: last.created_at, id: last.id } })) {
      this.queueLoading = true;
      this.renderQueue();
    }
  },

  renderQueue() {
    const ul = $('queue');
    ul.replaceChildren(...this.queue.map((c) => this.queueItem(c)));
    const total = Math.max(this.queueTotal, this.queue.length);
    $('queue-count').textContent = String(total);
    $('queue-empty').hidden = total > 0;
    const more = $('queue-more');
    more.hidden = !this.queueMore;
    more.disabled = this.queueLoading;
    more.textContent = this.queueLoading ? 'Loading…' : `Show more (${total - this.queue.length} more waiting)`;
    this.renderTitle();
  },

  /** renderLeft lists the messages left while the queue was full. */
  renderLeft() {
    const ul = $('left');
    ul.replaceChildren(...this.left.map((c) => {
      const b = h('button', { type: 'button', class: 'item-button' },
        h('span', { class: 'name', text: c.customer?.name || c.customer?.email || 'Visitor' }),
        h('span', { class: 'sub', text: `${c.customer?.email || ''} · ${formatTime(c.created_at)}` }));
      b.addEventListener('click', () => this.openLeft(c));
      return h('li', { class: 'item conv', 'data-testid': 'left-item', 'data-conversation': c.id }, b);
    }));
    $('left-section').hidden = this.left.length === 0;
  },

  /** openLeft shows a message left, read-only. */
  openLeft(c) {
    const conv = this.upsertConv(c);
    this.renderMine();
    this.select(conv);
  },

  queueItem(c) {
    const accept = h('button', { type: 'button', class: 'accept', 'data-testid': 'accept', 'data-conversation': c.id, text: 'Accept' });
    accept.addEventListener('click', () => this.accept(c.id, accept));
    const offered = this.offered.has(c.id);
    const linked = this.linked === c.id;
    return h('li', {
      class: `item${offered || linked ? ' offered' : ''}`, 'data-testid': 'queue-item', 'data-conversation': c.id,
      'data-offered': offered ? 'true' : null, 'data-linked': linked ? 'true' : null,
    },
      h('div', { class: 'item-text' },
        h('span', { class: 'name', text: c.customer?.name || 'Visitor' }),
        h('span', { class: 'sub', text: `${c.queue || ''} · since ${formatTime(c.created_at)}` }),
        offered ? h('span', { class: 'pill', text: 'Offered to you' }) : null),
      accept);
  },

  renderMine() {
    const ul = $('mine');
    const convs = [...this.convs.values()];
    ul.replaceChildren(...convs.map((conv) => this.convItem(conv)));
    $('mine-empty').hidden = convs.length > 0;
    this.renderTitle();
  },

  /**
   * renderTitle puts unread messages and offers in the tab's title, and
   * first, while a call for one of the agent's conversations rings, who
   * is calling: the title is what an agent sees of a tab in the background.
   */
  renderTitle() {
    let n = this.offered.size;
    for (const conv of this.convs.values()) n += conv.unread;
    const base = n ? `(${n}) Segue — agent console` : 'Segue — agent console';
    const ringing = [...this.convs.values()].find((conv) => this.calls?.ringing(conv.data.id));
    document.title = ringing ? `☎ Call ringing: ${ringing.data.customer?.name || 'Visitor'} — ${base}` : base;
  },

  /**
   * callChanged follows the calls of the agent's conversations: the
   * indicator in the list, the title, and a ring sound (a console setting,
   * off by default) when one starts ringing.
   */
  callChanged(id, prev) {
    if (!this.convs.has(id)) return;
    this.renderMine();
    if (this.calls.ringing(id) && !['dialing', 'ringing'].includes(prev) && ringSoundOn()) playRing();
    if (this.calls.ringing(id) && !['dialing', 'ringing'].includes(prev)) this.desk?.ringing(this.convs.get(id).data);
  },

  convItem(conv) {
    const c = conv.data;
    const li = h('li', {
      class: `item conv${conv === this.selected ? ' selected' : ''}${closed(c) ? ' ended' : ''}`,
      'data-testid': 'conversation-item',
      'data-conversation': c.id,
      'data-state': c.state,
    });
    const button = h('button', { type: 'button', class: 'item-button', 'aria-current': conv === this.selected ? 'true' : null },
      h('span', { class: 'name', text: c.customer?.name || 'Visitor' }),
      h('span', { class: 'sub', text: c.state === 'left' ? 'Message left' : c.state === 'ended' ? 'Ended' : c.queue || '' }),
      this.callIndicator(c.id),
      conv.unread ? h('span', { class: 'unread', 'data-testid': 'unread', text: String(conv.unread) }) : null);
    button.addEventListener('click', () => this.select(conv));
    li.append(button);
    return li;
  },

  /** callIndicator shows a conversation's call in the list while one is up. */
  callIndicator(id) {
    const st = this.calls?.stateOf(id);
    if (!st) return null;
    const text = { dialing: 'Ringing', ringing: 'Ringing', connected: 'On a call', held: 'On hold' }[st];
    return h('span', { class: `call-pill ${st}`, 'data-testid': 'call-indicator', 'data-call-state': st, title: text, text: `☎ ${text}` });
  },

  select(conv, push = true) {
    this.typing?.stop();
    this.selected = conv;
    $('typing').hidden = true;
    this.note('');
    this.calls?.show(conv?.data);
    this.video?.show(conv?.data); // video (Step 3)
    this.desk?.show(conv?.data);
    if (!conv) {
      $('conversation').hidden = true;
      $('history-more').hidden = true;
      $('placeholder').hidden = false;
      $('log-slot').replaceChildren();
      this.renderMine();
      return;
    }
    conv.unread = 0;
    $('placeholder').hidden = true;
    $('conversation').hidden = false;
    $('log-slot').replaceChildren(conv.container);
    if (!conv.scrollBound) {
      conv.scrollBound = true;
      conv.container.addEventListener('scroll', () => { if (conv.container.scrollTop < 40) this.loadOlder(conv); });
    }
    this.renderOlder();
    if (!conv.loaded) this.loadHistory(conv);
    if (push) {
      const path = `/console/c/${encodeURIComponent(conv.id)}`;
      if (location.pathname !== path) history.pushState(null, '', path);
    }
    this.renderSelected();
    this.renderMine();
    conv.container.scrollTop = conv.container.scrollHeight;
    this.sendRead();
    $('chat-input').focus({ preventScroll: true });
  },

  renderSelected() {
    const c = this.selected?.data;
    if (!c) return;
    const cust = c.customer ?? {};
    $('customer-name').textContent = cust.name || 'Visitor';
    $('verified').hidden = !cust.verified;
    $('customer-email').textContent = cust.email || '—';
    $('customer-external').textContent = cust.external_id || '—';
    $('conv-queue').textContent = c.queue || '—';
    $('conv-state').textContent = c.state;
    // The customer's satisfaction rating, once given after the end.
    $('conv-rating-row').hidden = !c.rating;
    $('conv-rating').textContent = c.rating ? `${'★'.repeat(c.rating.score)}${'☆'.repeat(5 - c.rating.score)} ${c.rating.score}/5${c.rating.comment ? ` — “${c.rating.comment}”` : ''}` : '';
    $('conv-rating').dataset.score = String(c.rating?.score ?? '');
    const ended = closed(c);
    $('composer').hidden = ended;
    $('end').hidden = ended;
    $('dismiss').hidden = !ended;
    $('transfer').disabled = ended;
    $('transfer-target').disabled = ended;
    this.calls?.show(c);
    this.video?.show(c); // video (Step 3)
    this.desk?.show(c);
  },

  messageShown(conv, msg, isNew) {
    if (!isNew) return;
    const el = conv.container;
    if (msg.from?.role === 'agent') {
      if (conv === this.selected) el.scrollTop = el.scrollHeight;
      return;
    }
    if (!msg.seq) return;
    const visible = conv === this.selected && document.visibilityState === 'visible';
    if (visible) {
      // Follow new messages unless the agent has scrolled up into history.
      if (el.scrollHeight - el.scrollTop - el.clientHeight < 240) el.scrollTop = el.scrollHeight;
      this.sendRead();
    } else if (conv.loaded && msg.seq > conv.readSent && msg.seq > (conv.data.read?.agent ?? 0)) {
      conv.unread++;
      this.renderMine();
    }
  },

  message(m) {
    if (!m) return;
    let conv = this.convs.get(m.conversation_id);
    if (!conv) return; // not (or no longer) ours
    // The ended event can come before the conversation frame that says so;
    // take it as the end already, so no read or typing goes to a closed chat.
    if (m.event?.name === 'conversation.ended' && conv.data.state !== 'ended') {
      conv.data = { ...conv.data, state: 'ended' };
      if (conv === this.selected) this.renderSelected();
    }
    conv.log.upsert(m);
    if (m.from?.role === 'customer' && conv === this.selected) this.showTyping(false);
  },

  acked(f) {
    this.outbox.remove(f.id);
    this.convs.get(f.conversation_id)?.log.ack(f.id, f.seq);
  },

  errorFrame(f) {
    console.warn('segue: server error', f.code, f.message, f.ref ?? '');
    if (this.board?.errorFrame(f)) return;
    const item = f.ref && this.outbox.items.find((m) => m.id === f.ref);
    if (item) {
      this.outbox.remove(f.ref);
      this.convs.get(item.conversation_id)?.log.fail(f.ref, `Not sent: ${f.message || f.code}`);
      return;
    }
    if (this.accepting) {
      this.accepting = null;
      this.renderQueue();
    }
    this.note(f.message || f.code || 'Something went wrong');
  },

  typingFrame(f) {
    if (f.role === 'agent' || f.conversation_id !== this.selected?.id) return;
    this.showTyping(f.typing);
  },

  showTyping(on) {
    clearTimeout(this.typingHide);
    const el = $('typing');
    el.textContent = on ? `${this.selected?.data.customer?.name || 'The customer'} is typing…` : '';
    el.hidden = !on;
    if (on) this.typingHide = setTimeout(() => this.showTyping(false), 8000);
  },

  sendRead() {
    const conv = this.selected;
    if (!conv || closed(conv.data) || document.visibilityState !== 'visible') return;
    const seq = conv.log.lastOtherSeq();
    if (seq > conv.readSent && this.socket.send({ type: 'read', seq, conversation_id: conv.id })) conv.readSent = seq;
  },

  note(text) {
    $('notice').textContent = text;
    $('notice').hidden = !text;
  },

  accept(id, button) {
    button.disabled = true;
    this.accepting = id;
    if (!this.socket.send({ type: 'accept', conversation_id: id })) {
      button.disabled = false;
      this.note('Not connected: try again in a moment.');
    }
  },

  sendText() {
    const conv = this.selected;
    const input = $('chat-input');
    const text = input.value.trim();
    if (!conv || !text || closed(conv.data)) return;
    input.value = '';
    this.typing.stop();
    this.queueText(conv, text);
  },

  /** queueText puts a message in the outbox and sends it when it can. */
  queueText(conv, text) {
    if (closed(conv.data)) return;
    const item = { id: newId(), conversation_id: conv.id, text, created_at: new Date().toISOString() };
    this.outbox.add(item);
    this.showPending(item);
    this.socket.send({ type: 'message', id: item.id, text, conversation_id: conv.id });
  },

  showPending(item) {
    this.convs.get(item.conversation_id)?.log.upsert({
      id: item.id, conversation_id: item.conversation_id, text: item.text, kind: 'text',
      from: { role: 'agent', id: this.agent.id, name: this.agent.name }, created_at: item.created_at,
    });
  },

  flushOutbox() {
    for (const item of this.outbox.items) {
      if (!this.convs.has(item.conversation_id)) {
        this.outbox.remove(item.id);
        continue;
      }
      this.showPending(item);
      this.socket.send({ type: 'message', id: item.id, text: item.text, conversation_id: item.conversation_id });
    }
  },

  async sendFiles() {
    const input = $('file-input');
    const files = [...input.files];
    input.value = '';
    for (const file of files) await this.upload(this.selected, file);
  },

  async upload(conv, file) {
    if (!conv) return;
    const id = newId();
    conv.log.upsert({ id, kind: 'file', from: { role: 'agent' }, file: { name: file.name, size: file.size, uploading: true } });
    try {
      const form = new FormData();
      form.append('id', id);
      form.append('file', file, file.name);
      const { message } = await api(`/conversations/${encodeURIComponent(conv.id)}/files`, { method: 'POST', body: form });
      if (message.id !== id) conv.log.remove(id);
      conv.log.upsert(message);
    } catch (err) {
      conv.log.fail(id, 'Upload failed');
      this.note(`Could not send ${file.name}: ${err.message}`);
    }
  },

  transfer() {
    const conv = this.selected;
    const target = $('transfer-target').value;
    if (!conv || !target) return;
    const frame = { type: 'transfer', conversation_id: conv.id };
    if (target.startsWith('queue:')) frame.queue = target.slice(6);
    else frame.agent = target.slice(6);
    if (!this.socket.send(frame)) this.note('Not connected: try again in a moment.');
  },

  /** dismiss takes an ended conversation off the list. */
  dismiss() {
    const conv = this.selected;
    if (!conv || !closed(conv.data)) return;
    this.convs.delete(conv.id);
    this.select(null);
    if (location.pathname !== '/console') history.pushState(null, '', '/console');
  },

  end() {
    const conv = this.selected;
    if (!conv) return;
    const frame = this.desk ? this.desk.endFrame({ type: 'end', conversation_id: conv.id }) : { type: 'end', conversation_id: conv.id };
    if (frame && !this.socket.send(frame)) this.note('Not connected: try again in a moment.');
  },
};

app.start();

