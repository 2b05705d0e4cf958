// Shared pieces of the Segue widget and the agent console: DOM helpers that
// only ever write text, a WebSocket that reconnects with back-off, a chat log
// that orders messages by seq and shows each id once, and a persisted outbox.

/**
 * h builds an element. Props become attributes (or listeners for "on*");
 * children are nodes or strings, and strings always become text nodes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) el.append(child);
  }
  return el;
}

/**
 * enterSends makes Enter in a textarea call send, and Shift+Enter insert a
 * line break. The beforeinput check catches line breaks whose keydown was
 * not cancellable (synthetic key events, some virtual keyboards).
 */
export function enterSends(textarea, send) {
  let shift = false;
  textarea.addEventListener('keydown', (e) => {
    shift = e.shiftKey;
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  textarea.addEventListener('beforeinput', (e) => {
    if ((e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph') && !shift && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
}

/** formatBytes renders a size such as "12.4 KB". */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** formatTime renders an RFC 3339 time as a local "14:05". */
export function formatTime(iso) {
  const d = iso ? new Date(iso) : new Date();
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * PAGE names this page load in every hello it sends, from one socket to
 * the next: the gateway ties the peer connections the page makes to it,
 * so that a reconnect keeps them and a reload ends them (docs/api.md,
 * "Reconnecting and reloading").
 */
export const PAGE = newId();

/** newId returns a client-made message id. */
export function newId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** apiError turns a failed fetch response into an Error with the server's message. */
export async function apiError(res) {
  let message = `${res.status} ${res.statusText}`;
  let code = '';
  try {
    const body = await res.json();
    if (body?.error?.message) message = body.error.message;
    code = body?.error?.code ?? '';
  } catch { /* not JSON */ }
  const err = new Error(message);
  err.status = res.status;
  err.code = code;
  err.retryAfter = Number(res.headers.get('Retry-After')) || 0;
  return err;
}

/** saveBlob offers a blob to the user as a download named name. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name || 'download' });
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Connection states shown in call-status. */
export const STATE_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  restarting: 'Server restarting',
};

/** Error codes of a refused hello that no retry can fix. */
const REFUSED = new Set(['unauthorized', 'forbidden', 'not_found']);

/**
 * Socket is a WebSocket that says hello on every (re)connect and reconnects
 * with exponential back-off and jitter. It reports its state through onState
 * ("connecting", "connected", "reconnecting", "offline", "restarting") with an
 * optional reason, and hands every parsed frame to onFrame. It counts as
 * connected once the server answered hello with welcome.
 */
export class Socket {
  constructor({ url, hello, onFrame, onState, onRejected, onRetry }) {
    this.url = url;
    this.hello = hello;
    this.onFrame = onFrame;
    this.onState = onState ?? (() => {});
    this.onRejected = onRejected ?? (() => {});
    this.onRetry = onRetry ?? (() => {});
    this.helloError = null; // the error frame that answered hello, if any
    this.ws = null;
    this.ready = false;
    this.stopped = true;
    this.attempt = 0;
    this.timer = 0;
    this.pinger = 0;
    this.state = 'idle';
    this.onOnline = () => {
      if (this.stopped) return;
      if (this.ready) this.setState('connected');
      else this.reconnectNow();
    };
    this.onOffline = () => this.setState('offline');
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    addEventListener('online', this.onOnline);
    addEventListener('offline', this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    removeEventListener('online', this.onOnline);
    removeEventListener('offline', this.onOffline);
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    this.ready = false;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
    this.setState('idle');
  }

  setState(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.onState(state, reason);
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this.setState('offline');
      return;
    }
    if (this.attempt === 0) this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect('reconnecting', String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(this.hello()));
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.closed(ev);
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === 'error' && !this.ready) this.helloError = frame;
    if (frame.type === 'welcome') {
      this.ready = true;
      this.helloError = null;
      this.attempt = 0;
      this.setState('connected');
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ type: 'ping' }), 25_000);
    }
    this.onFrame(frame);
  }

  closed(ev) {
    const wasReady = this.ready;
    this.ready = false;
    this.ws = null;
    clearInterval(this.pinger);
    if (this.stopped) return;
    // A hello refused for who we are (a stale token, an expired session)
    // will not pass on a retry either.
    const refused = this.helloError && REFUSED.has(this.helloError.code);
    this.helloError = null;
    if (!wasReady && ev.code === 1008 && refused) {
      this.stopped = true;
      this.setState('idle', ev.reason);
      this.onRejected(ev.code, ev.reason);
      return;
    }
    if (ev.code === 1001) this.scheduleReconnect('restarting', ev.reason || 'server restarting');
    // While the server restarts, failed attempts keep saying so.
    else if (!wasReady && this.state === 'restarting') this.scheduleReconnect('restarting', this.reason);
    else this.scheduleReconnect(navigator.onLine === false ? 'offline' : 'reconnecting', ev.reason);
  }

  scheduleReconnect(state, reason) {
    this.setState(state, reason);
    const base = Math.min(15_000, 400 * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt++;
    this.timer = setTimeout(() => this.connect(), delay);
    this.onRetry(this.attempt);
  }

  reconnectNow() {
    this.attempt = 0;
    if (this.ws) this.ws.close();
    else this.connect();
  }

  /** send sends a frame if the socket is ready; it reports whether it did. */
  send(frame) {
    if (!this.ready || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}

/**
 * Outbox keeps messages that were sent but not yet acknowledged, in
 * localStorage under key, so that a reload or a reconnect sends them again.
 */
export class Outbox {
  constructor(key) {
    this.key = key;
    this.items = [];
    try {
      const stored = JSON.parse(localStorage.getItem(key) ?? '[]');
      if (Array.isArray(stored)) this.items = stored;
    } catch { /* start empty */ }
  }

  save() {
    try {
      if (this.items.length) localStorage.setItem(this.key, JSON.stringify(this.items));
      else localStorage.removeItem(this.key);
    } catch { /* storage full or disabled: keep in memory */ }
  }

  add(item) {
    this.items.push(item);
    this.save();
  }

  remove(id) {
    const before = this.items.length;
    this.items = this.items.filter((m) => m.id !== id);
    if (this.items.length !== before) this.save();
  }

  clear() {
    this.items = [];
    this.save();
  }
}

const EVENT_TEXT = {
  'conversation.accepted': (m) => `${m.event?.data?.agent_name || m.from?.name || 'An agent'} joined the chat`,
  'conversation.transferred': () => 'The conversation was transferred',
  'conversation.ended': () => 'The conversation has ended',
  'voice.dialing': () => 'Calling…',
  'voice.incoming': () => 'Incoming call',
  'voice.connected': () => 'Call connected',
  'voice.held': () => 'Call on hold',
  'voice.resumed': () => 'Call resumed',
  'voice.ended': () => 'Call ended',
  'voice.failed': () => 'Call failed',
  'voice.transferred': (m) => (m.event?.data?.to ? `Call transferred to ${m.event.data.to}` : 'Call transferred'),
  'voice.transfer_failed': (m) => (m.event?.data?.to ? `Transfer to ${m.event.data.to} failed` : 'Transfer failed') + (m.event?.data?.reason ? `: ${m.event.data.reason}` : ''),
};

/**
 * ChatLog renders the messages of one conversation into a container. Messages
 * are keyed by id (shown once, updated in place) and ordered by seq; messages
 * not yet acknowledged (no seq) stay at the end. role is the side that this
 * log belongs to ("customer" or "agent"), whose messages are "own".
 * loadFile(fileId, inline) must resolve to a Blob.
 */
export class ChatLog {
  constructor(container, { role, loadFile, onChange, onRetry }) {
    this.el = container;
    this.role = role;
    this.loadFile = loadFile;
    this.onChange = onChange ?? (() => {});
    this.onRetry = onRetry; // called with a failed text message to send again
    this.items = new Map(); // id -> {msg, node}
    this.maxSeq = 0;
    this.readSeq = 0; // how far the other side has read
    this.urls = [];
  }

  /** clear empties the log and frees thumbnail URLs. */
  clear() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.items.clear();
    this.el.replaceChildren();
    this.maxSeq = 0;
    this.readSeq = 0;
  }

  /** has reports whether a message id is shown. */
  has(id) {
    return this.items.has(id);
  }

  /** minSeq is the lowest seq shown (0 when none is). */
  minSeq() {
    let seq = 0;
    for (const { msg } of this.items.values()) {
      if (msg.seq && (!seq || msg.seq < seq)) seq = msg.seq;
    }
    return seq;
  }

  /** lastOtherSeq is the highest seq of a message not written by this side. */
  lastOtherSeq() {
    let seq = 0;
    for (const { msg } of this.items.values()) {
      if (msg.seq && msg.from?.role !== this.role && msg.seq > seq) seq = msg.seq;
    }
    return seq;
  }

  /**
   * upsert shows msg, or updates the message with the same id. It returns
   * true when the message is new. A pending copy never replaces a stored one.
   */
  upsert(msg) {
    if (!msg?.id) return false;
    const prev = this.items.get(msg.id);
    if (prev && prev.msg.seq && !msg.seq) return false;
    if (prev && prev.msg.seq === msg.seq && !msg.failed && prev.msg.kind === msg.kind) return false;
    const node = this.render(msg);
    if (prev) prev.node.remove();
    this.items.set(msg.id, { msg, node });
    this.place(node, msg.seq);
    if (msg.seq > this.maxSeq) this.maxSeq = msg.seq;
    this.applyRead();
    this.onChange(msg, !prev);
    return !prev;
  }

  /** ack gives a pending message its seq. */
  ack(id, seq) {
    const item = this.items.get(id);
    if (!item || item.msg.seq) return;
    this.upsert({ ...item.msg, seq, pending: false });
  }

  /** fail marks a pending message as not sent, with the server's reason. */
  fail(id, reason) {
    const item = this.items.get(id);
    if (!item || item.msg.seq) return;
    this.upsert({ ...item.msg, failed: reason || 'Not sent' });
  }

  remove(id) {
    const item = this.items.get(id);
    if (!item) return;
    item.node.remove();
    this.items.delete(id);
  }

  /** setRead records that the other side has read up to seq. */
  setRead(seq) {
    if (!(seq > this.readSeq)) return;
    this.readSeq = seq;
    this.applyRead();
  }

  applyRead() {
    for (const { msg, node } of this.items.values()) {
      if (msg.from?.role !== this.role || !msg.seq) continue;
      const status = node.querySelector('.status');
      if (!status) continue;
      const read = msg.seq <= this.readSeq;
      node.dataset.read = String(read);
      status.textContent = read ? 'Read' : 'Sent';
    }
  }

  place(node, seq) {
    const children = this.el.children;
    if (!seq) {
      this.el.append(node);
      return;
    }
    // Walk back from the end: new messages almost always go last.
    for (let i = children.length - 1; i >= 0; i--) {
      const s = Number(children[i].dataset.seq || 0);
      if (s && s < seq) {
        children[i].after(node);
        return;
      }
    }
    this.el.prepend(node);
  }

  render(msg) {
    const role = msg.from?.role ?? 'system';
    const own = role === this.role;
    const kind = msg.kind === 'event' || role === 'system' ? 'event' : msg.kind;
    const node = h('div', {
      class: `msg ${own ? 'own' : 'other'} kind-${kind} role-${role}`,
      'data-testid': 'message',
      'data-id': msg.id,
      'data-seq': msg.seq || '',
      'data-role': role,
      'data-kind': kind,
      'data-event': kind === 'event' ? msg.event?.name : null,
    });
    if (kind === 'event') {
      const text = msg.text || EVENT_TEXT[msg.event?.name]?.(msg) || msg.event?.name || '';
      node.append(h('p', { class: 'event-text', text }));
      return node;
    }
    const bubble = h('div', { class: 'bubble' });
    if (!own && msg.from?.name) bubble.append(h('span', { class: 'author', text: msg.from.name }));
    if (kind === 'file' && msg.file) bubble.append(this.renderFile(msg.file));
    else bubble.append(h('p', { class: 'text', 'data-testid': 'message-text', text: msg.text ?? '' }));
    node.append(bubble);
    const meta = h('div', { class: 'meta' }, h('time', { datetime: msg.created_at || '', text: formatTime(msg.created_at) }));
    if (own) {
      let status = msg.seq ? 'Sent' : 'Sending…';
      if (msg.failed) status = msg.failed;
      meta.append(h('span', { class: `status${msg.failed ? ' failed' : ''}`, 'data-testid': 'message-status', text: status }));
      if (msg.failed && msg.kind === 'text' && this.onRetry) {
        const retry = h('button', { type: 'button', class: 'retry', 'data-testid': 'retry', text: 'Retry' });
        retry.addEventListener('click', () => {
          this.remove(msg.id);
          this.onRetry(msg);
        });
        meta.append(retry);
      }
    }
    node.append(meta);
    return node;
  }

  renderFile(file) {
    const wrap = h('div', { class: 'file', 'data-file-id': file.id || '' });
    if (file.image && file.id) {
      const img = h('img', { class: 'thumb', alt: file.name || 'image', 'data-testid': 'file-thumb', loading: 'lazy' });
      wrap.append(img);
      this.loadFile(file.id, true)
        .then((blob) => {
          const url = URL.createObjectURL(blob);
          this.urls.push(url);
          img.src = url;
        })
        .catch(() => img.classList.add('broken'));
    }
    const name = h('span', { class: 'file-name', text: file.name || 'file' });
    const size = h('span', { class: 'file-size', text: file.uploading ? 'Uploading…' : formatBytes(file.size) });
    const row = h('div', { class: 'file-row' }, h('span', { class: 'file-icon', 'aria-hidden': 'true' }), h('span', { class: 'file-info' }, name, size));
    if (file.id) {
      const button = h('button', {
        type: 'button',
        class: 'file-download',
        'data-testid': 'file-download',
        'data-file-id': file.id,
        'aria-label': `Download ${file.name || 'file'}`,
        text: 'Download',
      });
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          saveBlob(await this.loadFile(file.id, false), file.name);
        } catch (err) {
          size.textContent = `Download failed: ${err.message}`;
        } finally {
          button.disabled = false;
        }
      });
      row.append(button);
    }
    wrap.append(row);
    return wrap;
  }
}

/**
 * Typing throttles outgoing typing frames: true at most every 3 s while the
 * user types, false after 4 s of silence or when a message is sent.
 */
export class Typing {
  constructor(send) {
    this.send = send;
    this.last = 0;
    this.timer = 0;
    this.active = false;
  }

  input() {
    const now = Date.now();
    if (!this.active || now - this.last > 3000) {
      this.active = this.send(true) !== false;
      this.last = now;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.stop(), 4000);
  }

  stop() {
    clearTimeout(this.timer);
    if (this.active) this.send(false);
    this.active = false;
  }
}

/**
 * HistoryPager fetches older pages of a transcript: the gateway sends the
 * latest page only (welcome, history) and says whether older messages
 * exist. When the reader scrolls to the top of scroller, or clicks button,
 * it asks for the page before the oldest message shown, through
 * request(before), which sends a history frame and reports whether it
 * could. received() takes the answer and keeps the reader's place.
 */
export class HistoryPager {
  constructor({ log, scroller, button, request }) {
    this.log = log;
    this.scroller = scroller;
    this.button = button;
    this.request = request;
    this.older = false;
    this.loading = false;
    scroller.addEventListener('scroll', () => { if (scroller.scrollTop < 40) this.load(); });
    button.addEventListener('click', () => this.load());
  }

  /** setOlder records whether messages older than the first shown exist. */
  setOlder(older) {
    this.older = Boolean(older);
    this.render();
  }

  load() {
    if (!this.older || this.loading) return;
    const before = this.log.minSeq();
    if (!before || !this.request(before)) return;
    this.loading = true;
    this.render();
  }

  /** received shows a page of older messages without moving the reader. */
  received(messages, older) {
    const el = this.scroller;
    const fromBottom = el.scrollHeight - el.scrollTop;
    for (const m of messages) this.log.upsert(m);
    el.scrollTop = el.scrollHeight - fromBottom;
    this.loading = false;
    this.setOlder(older);
  }

  /** reset forgets a request in flight (the socket was replaced). */
  reset() {
    this.loading = false;
    this.render();
  }

  render() {
    this.button.hidden = !this.older;
    this.button.disabled = this.loading;
    this.button.textContent = this.loading ? 'Loading earlier messages…' : 'Load earlier messages';
  }
}
