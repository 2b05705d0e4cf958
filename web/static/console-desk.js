// The agent's desk in the console: search over past conversations, a
// customer's earlier conversations, internal notes, wrap-up codes, canned
// replies after "/" in the reply box, and desktop notifications with an
// optional sound for new offers. It builds its own elements beside the
// console's and talks to the gateway through the functions it is given.

import { h, formatTime } from './chat.js';

const $ = (id) => document.getElementById(id);
const NOTIFY_KEY = 'segue:console:notify';
const OFFER_SOUND_KEY = 'segue:console:offer-sound';

function setting(key) {
  try { return localStorage.getItem(key) === 'on'; } catch { return false; }
}

function setSetting(key, on) {
  try {
    if (on) localStorage.setItem(key, 'on');
    else localStorage.removeItem(key);
  } catch { /* storage refused: the setting lasts for this page */ }
}

let soundCtx = null;

/** playOffer plays a short rising chime (660 then 880 Hz). */
function playOffer() {
  if (!soundCtx && window.AudioContext) soundCtx = new AudioContext();
  const ctx = soundCtx;
  if (!ctx) return;
  ctx.resume().catch(() => {});
  const t0 = ctx.currentTime + 0.05;
  [660, 880].forEach((hz, i) => {
    const gain = ctx.createGain();
    gain.gain.value = 0.12;
    gain.connect(ctx.destination);
    const osc = ctx.createOscillator();
    osc.frequency.value = hz;
    osc.connect(gain);
    osc.start(t0 + i * 0.18);
    osc.stop(t0 + i * 0.18 + 0.16);
  });
}

const customerName = (c) => c?.customer?.name || c?.customer?.email || 'Visitor';

/** Desk holds the console's desk features. */
export class Desk {
  /**
   * @param {object} o
   * @param {(path: string, options?: object) => Promise<any>} o.api  the console's API call
   * @param {(id: string) => void} o.open  opens a conversation (read-only when not held)
   * @param {(frame: object) => boolean} o.send  sends a WebSocket frame
   * @param {(text: string) => void} o.note  shows a notice
   */
  constructor({ api, open, send, note }) {
    this.api = api;
    this.open = open;
    this.send = send;
    this.notice = note;
    this.queues = new Map(); // name -> {canned_replies, wrap_up_codes, wrap_up_required}
    this.own = []; // personal canned replies
    this.current = null; // conversation data on screen
    this.notes = []; // notes of the conversation on screen
    this.matches = []; // canned replies shown after "/"
    this.active = 0;
    this.build();
  }

  /** build adds the desk's elements to the console's page. */
  build() {
    document.head.append(h('link', { rel: 'stylesheet', href: '/console-desk.css' }));

    // Settings, beside the ring sound.
    this.notifyBox = h('input', { type: 'checkbox', 'data-testid': 'desktop-notify' });
    this.notifyBox.checked = setting(NOTIFY_KEY) && window.Notification?.permission === 'granted';
    this.notifyBox.addEventListener('change', () => this.setNotify(this.notifyBox.checked));
    this.soundBox = h('input', { type: 'checkbox', 'data-testid': 'offer-sound' });
    this.soundBox.checked = setting(OFFER_SOUND_KEY);
    this.soundBox.addEventListener('change', () => {
      setSetting(OFFER_SOUND_KEY, this.soundBox.checked);
      if (this.soundBox.checked && window.AudioContext) (soundCtx ??= new AudioContext()).resume().catch(() => {});
    });
    $('ring-sound').closest('label').after(
      h('label', { class: 'ring-sound', title: 'Show a desktop notification for a new offer and a ringing call' }, this.notifyBox, ' Notifications'),
      h('label', { class: 'ring-sound', title: 'Play a sound when a conversation is offered to you' }, this.soundBox, ' Offer sound'));

    // Search, at the top of the sidebar.
    this.searchInput = h('input', { type: 'search', 'data-testid': 'search-input', placeholder: 'Name, e-mail or words', 'aria-label': 'Search conversations' });
    this.results = h('ul', { class: 'list', 'data-testid': 'search-results' });
    this.searchNote = h('p', { class: 'empty', 'data-testid': 'search-status', hidden: true });
    const form = h('form', { class: 'desk-search', role: 'search' }, this.searchInput,
      h('button', { type: 'submit', 'data-testid': 'search-submit', text: 'Search' }));
    form.addEventListener('submit', (e) => { e.preventDefault(); this.search(); });
    $('queue').closest('section').before(h('section', { class: 'desk-search-section' }, h('h2', { text: 'Search' }), form, this.searchNote, this.results));

    // Beside the conversation: earlier conversations and internal notes.
    this.earlierList = h('ul', { class: 'list', 'data-testid': 'earlier' });
    this.earlierBox = h('section', { class: 'desk-earlier', hidden: true }, h('h3', { text: 'Earlier conversations' }), this.earlierList);
    this.notesList = h('ul', { class: 'desk-notes', 'data-testid': 'notes' });
    this.noteInput = h('textarea', { rows: '2', 'data-testid': 'note-input', placeholder: 'Internal note (never shown to the customer)', 'aria-label': 'Internal note' });
    const noteForm = h('form', { class: 'desk-note-form' }, this.noteInput, h('button', { type: 'submit', 'data-testid': 'note-add', text: 'Add note' }));
    noteForm.addEventListener('submit', (e) => { e.preventDefault(); this.addNote(); });
    this.panel = h('aside', { class: 'desk-panel', 'aria-label': 'Notes and history' },
      this.earlierBox, h('section', {}, h('h3', { text: 'Internal notes' }), this.notesList, noteForm));
    $('composer').after(this.panel);

    // The wrap-up code, beside End.
    this.wrapUp = h('select', { 'data-testid': 'wrap-up', 'aria-label': 'Wrap-up code', hidden: true });
    $('end').before(this.wrapUp);

    // Canned replies: the list shown after "/", and the agent's own.
    this.cannedList = h('ul', { class: 'desk-canned', 'data-testid': 'canned-list', role: 'listbox', hidden: true });
    $('composer').before(this.cannedList);
    const input = $('chat-input');
    input.addEventListener('input', () => this.filterCanned());
    // Captured on the document: ahead of the console's Enter-sends handler.
    document.addEventListener('keydown', (e) => { if (e.target === input) this.cannedKey(e); }, { capture: true });
    // The line break of the Enter that inserted a reply does not send it,
    // should the browser deliver it despite the cancelled keydown: until
    // that key is released (an automation tool's separate "char" event
    // may come a while after the keydown).
    document.addEventListener('keyup', (e) => { if (e.key === 'Enter') this.swallowBreak = false; }, { capture: true });
    document.addEventListener('beforeinput', (e) => {
      if (e.target !== input || !this.swallowBreak) return;
      this.swallowBreak = false;
      if (e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph') {
        e.preventDefault();
        e.stopImmediatePropagation();
      }
    }, { capture: true });
    input.addEventListener('blur', () => setTimeout(() => this.hideCanned(), 150));
    this.ownList = h('ul', { class: 'list', 'data-testid': 'canned-own' });
    this.ownShortcut = h('input', { 'data-testid': 'canned-shortcut', placeholder: 'shortcut', 'aria-label': 'Shortcut', maxlength: '32' });
    this.ownText = h('textarea', { 'data-testid': 'canned-text', rows: '2', placeholder: 'Reply text', 'aria-label': 'Reply text' });
    this.ownID = '';
    const ownForm = h('form', { class: 'desk-own-form' }, this.ownShortcut, this.ownText,
      h('button', { type: 'submit', 'data-testid': 'canned-save', text: 'Save reply' }));
    ownForm.addEventListener('submit', (e) => { e.preventDefault(); this.saveOwn(); });
    this.ownBox = h('details', { class: 'desk-own', 'data-testid': 'canned-manage' },
      h('summary', { text: 'My canned replies' }), this.ownList, ownForm);
    $('mine').closest('section').after(h('section', {}, this.ownBox));
  }

  /** start loads the queues' replies and codes and the agent's own replies. */
  async start() {
    try {
      const d = await this.api('/agent/desk');
      this.queues = new Map((d.queues ?? []).map((q) => [q.name, q]));
      this.own = d.canned_replies ?? [];
      this.renderOwn();
      this.renderWrapUp();
    } catch (err) {
      this.notice(`Could not load canned replies: ${err.message}`);
    }
  }

  /** onFrame takes the desk's frames; it reports whether it consumed f. */
  onFrame(f) {
    switch (f.type) {
      case 'note':
        if (f.note?.conversation_id === this.current?.id && !this.notes.some((n) => n.id === f.note.id)) {
          this.notes.push(f.note);
          this.renderNotes();
        }
        return true;
      case 'offer':
        this.offered(f.conversation);
        return false; // the console shows the offer too
      default:
        return false;
    }
  }

  // ---- search ----

  async search() {
    const q = this.searchInput.value.trim();
    if (!q) return;
    this.searchNote.hidden = false;
    this.searchNote.textContent = 'Searching…';
    try {
      const { conversations } = await this.api(`/agent/search?q=${encodeURIComponent(q)}`);
      this.results.replaceChildren(...conversations.map((c) => this.convItem(c, 'search-result')));
      this.searchNote.textContent = conversations.length ? '' : 'No conversation found.';
      this.searchNote.hidden = conversations.length > 0;
    } catch (err) {
      this.searchNote.textContent = `Search failed: ${err.message}`;
    }
  }

  convItem(c, testid) {
    const when = formatTime(c.created_at);
    const b = h('button', { type: 'button', class: 'item-button' },
      h('span', { class: 'name', text: customerName(c) }),
      h('span', { class: 'sub', text: `${c.queue} · ${c.state}${c.wrap_up ? ` · ${c.wrap_up}` : ''} · ${when}` }));
    b.addEventListener('click', () => this.open(c.id));
    return h('li', { class: 'item conv', 'data-testid': testid, 'data-conversation': c.id }, b);
  }

  // ---- the conversation on screen ----

  /** show follows the conversation on screen: its notes, earlier ones, wrap-up codes. */
  show(c) {
    const changed = c?.id !== this.current?.id;
    this.current = c ?? null;
    this.panel.hidden = !c;
    this.renderWrapUp();
    if (!c || !changed) return;
    this.notes = [];
    this.renderNotes();
    this.earlierList.replaceChildren();
    this.earlierBox.hidden = true;
    const id = c.id;
    this.api(`/agent/conversations/${encodeURIComponent(id)}/notes`).then(({ notes }) => {
      if (this.current?.id !== id) return;
      for (const n of notes ?? []) if (!this.notes.some((x) => x.id === n.id)) this.notes.push(n);
      this.notes.sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
      this.renderNotes();
    }).catch(() => {});
    this.api(`/agent/conversations/${encodeURIComponent(id)}/earlier`).then(({ conversations }) => {
      if (this.current?.id !== id) return;
      this.earlierList.replaceChildren(...(conversations ?? []).map((x) => this.convItem(x, 'earlier-item')));
      this.earlierBox.hidden = !conversations?.length;
    }).catch(() => {});
  }

  renderNotes() {
    this.notesList.replaceChildren(...this.notes.map((n) => h('li', { class: 'desk-note', 'data-testid': 'note' },
      h('span', { class: 'sub', text: `${n.agent?.name || n.agent?.id || ''} · ${formatTime(n.created_at)}` }),
      h('span', { class: 'text', text: n.text }))));
  }

  addNote() {
    const text = this.noteInput.value.trim();
    if (!text || !this.current) return;
    if (this.send({ type: 'note', id: `note-${Date.now()}`, conversation_id: this.current.id, text })) this.noteInput.value = '';
    else this.notice('Not connected: try again in a moment.');
  }

  renderWrapUp() {
    const c = this.current;
    const q = c && this.queues.get(c.queue);
    const codes = q?.wrap_up_codes ?? [];
    const open = c && c.state !== 'ended' && c.state !== 'left';
    this.wrapUp.hidden = !open || codes.length === 0;
    if (this.wrapUp.dataset.queue === (c?.queue ?? '')) return;
    this.wrapUp.dataset.queue = c?.queue ?? '';
    this.wrapUp.dataset.required = q?.wrap_up_required ? 'true' : 'false';
    this.wrapUp.replaceChildren(h('option', { value: '', text: q?.wrap_up_required ? 'Wrap-up (required)…' : 'Wrap-up…' }),
      ...codes.map((code) => h('option', { value: code, text: code })));
  }

  /**
   * endFrame adds the chosen wrap-up code to an end frame; it returns
   * null, and says why, when the queue requires one and none is chosen.
   */
  endFrame(frame) {
    const code = this.wrapUp.hidden ? '' : this.wrapUp.value;
    if (!code && this.wrapUp.dataset.required === 'true' && !this.wrapUp.hidden) {
      this.notice('Choose a wrap-up code to end this conversation.');
      this.wrapUp.focus();
      return null;
    }
    return code ? { ...frame, wrap_up: code } : frame;
  }

  // ---- canned replies ----

  /** replies are the canned replies open to the conversation on screen. */
  replies() {
    const q = this.current && this.queues.get(this.current.queue);
    return [...this.own.map((r) => ({ ...r, mine: true })), ...(q?.canned_replies ?? [])];
  }

  /** slash finds the "/word" being typed before the caret, if any. */
  slash() {
    const input = $('chat-input');
    const before = input.value.slice(0, input.selectionStart);
    const m = before.match(/(^|\s)\/([\w.-]*)$/);
    return m ? { start: before.length - m[2].length - 1, word: m[2].toLowerCase() } : null;
  }

  filterCanned() {
    const s = this.slash();
    if (!s) return this.hideCanned();
    this.matches = this.replies().filter((r) => r.shortcut.toLowerCase().startsWith(s.word));
    if (!this.matches.length) return this.hideCanned();
    this.active = Math.min(this.active, this.matches.length - 1);
    this.cannedList.replaceChildren(...this.matches.map((r, i) => {
      const li = h('li', { class: `desk-canned-item${i === this.active ? ' active' : ''}`, role: 'option', 'data-testid': 'canned-item',
        'data-shortcut': r.shortcut, 'aria-selected': i === this.active ? 'true' : 'false' },
        h('span', { class: 'shortcut', text: `/${r.shortcut}` }), h('span', { class: 'text', text: r.text }));
      li.addEventListener('mousedown', (e) => { e.preventDefault(); this.insert(r); });
      return li;
    }));
    this.cannedList.hidden = false;
  }

  hideCanned() {
    this.cannedList.hidden = true;
    this.matches = [];
    this.active = 0;
  }

  cannedKey(e) {
    if (this.cannedList.hidden || !this.matches.length) return;
    const n = this.matches.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      this.active = (this.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.filterCanned();
    } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
      this.insert(this.matches[this.active]);
      this.swallowBreak = e.key === 'Enter';
    } else if (e.key === 'Escape') {
      this.hideCanned();
    } else {
      return;
    }
    e.preventDefault();
    e.stopImmediatePropagation();
  }

  /** insert replaces the "/word" before the caret with the reply's text. */
  insert(r) {
    const s = this.slash();
    const input = $('chat-input');
    if (s) {
      const end = input.selectionStart;
      input.value = input.value.slice(0, s.start) + r.text + input.value.slice(end);
      const caret = s.start + r.text.length;
      input.setSelectionRange(caret, caret);
    }
    this.hideCanned();
    input.focus();
  }

  renderOwn() {
    this.ownList.replaceChildren(...this.own.map((r) => {
      const edit = h('button', { type: 'button', class: 'link', 'data-testid': 'canned-edit', text: 'Edit' });
      edit.addEventListener('click', () => {
        this.ownID = r.id;
        this.ownShortcut.value = r.shortcut;
        this.ownText.value = r.text;
      });
      const del = h('button', { type: 'button', class: 'link', 'data-testid': 'canned-delete', text: 'Delete' });
      del.addEventListener('click', () => this.deleteOwn(r));
      return h('li', { class: 'item', 'data-testid': 'canned-own-item', 'data-shortcut': r.shortcut },
        h('div', { class: 'item-text' }, h('span', { class: 'name', text: `/${r.shortcut}` }), h('span', { class: 'sub', text: r.text })),
        edit, del);
    }));
  }

  async saveOwn() {
    const body = { shortcut: this.ownShortcut.value.trim(), text: this.ownText.value };
    if (this.ownID) body.id = this.ownID;
    try {
      const { canned_reply: r } = await this.api('/agent/canned-replies', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      this.own = [...this.own.filter((x) => x.id !== r.id), r].sort((a, b) => a.shortcut.localeCompare(b.shortcut));
      this.ownID = '';
      this.ownShortcut.value = '';
      this.ownText.value = '';
      this.renderOwn();
    } catch (err) {
      this.notice(`Could not save the reply: ${err.message}`);
    }
  }

  async deleteOwn(r) {
    try {
      await this.api(`/agent/canned-replies/${encodeURIComponent(r.id)}`, { method: 'DELETE' });
      this.own = this.own.filter((x) => x.id !== r.id);
      this.renderOwn();
    } catch (err) {
      this.notice(`Could not delete the reply: ${err.message}`);
    }
  }

  // ---- notifications ----

  async setNotify(on) {
    if (on && window.Notification && Notification.permission !== 'granted') {
      const p = await Notification.requestPermission().catch(() => 'denied');
      if (p !== 'granted') {
        this.notifyBox.checked = false;
        this.notice('Notifications are blocked for this site in the browser.');
        on = false;
      }
    }
    setSetting(NOTIFY_KEY, on);
  }

  notify(title, body, tag) {
    if (!this.notifyBox.checked || !window.Notification || Notification.permission !== 'granted') return;
    try {
      const n = new Notification(title, { body, tag });
      n.onclick = () => { window.focus(); n.close(); };
    } catch { /* some browsers allow notifications from a service worker only */ }
  }

  /** offered tells the agent of a new offer: a notification and the offer sound. */
  offered(c) {
    if (!c) return;
    this.notify(`New conversation: ${customerName(c)}`, c.preview || `Waiting in ${c.queue}`, `offer-${c.id}`);
    if (this.soundBox.checked) {
      playOffer();
      this.soundBox.dataset.played = String(Number(this.soundBox.dataset.played || 0) + 1);
    }
  }

  /** ringing tells the agent that a call of one of its conversations rings. */
  ringing(c) {
    if (c) this.notify(`Call ringing: ${customerName(c)}`, 'Your desk phone is ringing for this conversation.', `call-${c.id}`);
  }
}
