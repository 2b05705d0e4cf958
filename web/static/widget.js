// The Segue chat widget: <segue-widget>, a custom element with an open shadow
// root. Embed it with one tag:
//
//   <script src="https://gateway.example.com/widget.js" type="module" data-queue="support"></script>
//
// Optional attributes on that tag (or on a <segue-widget> element placed in
// the page): data-queue, data-name (a prefilled customer name) and
// data-identity (a token signed by the site's backend), data-lang (en, es,
// fr, de or ar; the browser's languages otherwise). The widget talks to
// the gateway it was loaded from, so it works on any allowed site.

import { h, apiError, enterSends, newId, ChatLog, HistoryPager, Outbox, PAGE, Socket, STATE_TEXT, Typing } from './chat.js';
import { Voice } from './call.js';
import { WidgetVideo } from './widget-video.js'; // video (Step 3)
import { direction, pickLanguage, translator } from './i18n.js';

const ORIGIN = new URL(import.meta.url).origin;
const API = `${ORIGIN}/api/v1`;
const WS_URL = `${ORIGIN.replace(/^http/, 'ws')}/api/v1/ws`;
const KEY = `segue:${ORIGIN}`; // localStorage keys are scoped to the gateway

/** scriptConfig reads data-* attributes from the <script> that loaded us. */
function scriptConfig() {
  const here = import.meta.url;
  for (const s of document.querySelectorAll('script[src]')) {
    if (s.src === here) return { ...s.dataset };
  }
  return {};
}

function loadJSON(key) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? 'null');
  } catch {
    return null;
  }
}

function saveJSON(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch { /* storage disabled: the chat still works until reload */ }
}

class SegueWidget extends HTMLElement {
  constructor() {
    super();
    this.attachShadow({ mode: 'open' });
    this.session = loadJSON(`${KEY}:conversation`); // {id, token}
    this.outbox = new Outbox(`${KEY}:outbox`);
    this.conversation = null;
    this.unread = 0;
    this.creating = null;
    this.readSent = 0;
    this.typingHide = 0;
    this.socket = new Socket({
      url: WS_URL,
      hello: () => ({ type: 'hello', token: this.session?.token, after: this.log.maxSeq, page: PAGE }),
      onFrame: (f) => this.onFrame(f),
      onState: (s, reason) => this.showState(s, reason),
      onRejected: () => this.forget(this.t('gone')),
      onRetry: (n) => { if (n % 3 === 0) this.checkSession(); },
    });
    this.typing = new Typing((on) => this.socket.send({ type: 'typing', typing: on }));
    // Not this.lang: that would set the host element's lang attribute.
    this.language = pickLanguage(this.config.lang);
    this.t = translator(this.language);
    this.build();
  }

  /** config merges the element's data-* attributes over the script tag's. */
  get config() {
    return { ...scriptConfig(), ...this.dataset };
  }

  connectedCallback() {
    // Attributes of the host may only be set once it is in the document.
    if (!this.styled) this.style.visibility = 'hidden';
    this.refresh();
    if (this.session?.token) this.socket.start();
    for (const item of this.outbox.items) this.showPending(item);
    this.onVisible = () => this.sendRead();
    document.addEventListener('visibilitychange', this.onVisible);
    if (sessionStorage.getItem(`${KEY}:open`) === '1') this.open();
  }

  disconnectedCallback() {
    // A widget taken out of the page leaves its call and its video too.
    this.video.teardown();
    this.voice.hangup();
    this.voice.teardown();
    this.socket.stop();
    document.removeEventListener('visibilitychange', this.onVisible);
  }

  build() {
    const $ = (tag, props, ...kids) => h(tag, props, ...kids);
    const t = this.t;
    const lang = { lang: this.language, dir: direction(this.language) };
    this.launcher = $('button', {
      type: 'button', class: 'launcher', 'data-testid': 'widget-open',
      'aria-label': t('launcher.open'), 'aria-expanded': 'false', ...lang,
    },
    $('span', { class: 'launcher-icon', 'aria-hidden': 'true' }),
    $('span', { class: 'launcher-text', text: t('launcher.text') }));
    this.badge = $('span', { class: 'badge', 'data-testid': 'unread', hidden: true });
    this.launcher.append(this.badge);
    this.launcher.addEventListener('click', () => this.open());

    this.titleEl = $('h2', { class: 'title', id: 'segue-title', text: t('head.title') });
    this.agentLine = $('p', { class: 'agent', 'data-testid': 'agent-name', text: t('head.tagline') });
    this.status = $('p', { class: 'status-line', 'data-testid': 'call-status', 'data-state': 'idle', role: 'status', text: t('state.idle') });
    // The customer's place in the queue while waiting (queue.position).
    this.positionEl = $('p', { class: 'position', 'data-testid': 'queue-position', 'aria-live': 'polite', hidden: true });
    const close = $('button', { type: 'button', class: 'icon-button close', 'data-testid': 'widget-close', 'aria-label': t('close'), text: '×' });
    close.addEventListener('click', () => this.close());
    const header = $('header', { class: 'head' },
      $('div', { class: 'avatar', 'aria-hidden': 'true' }),
      $('div', { class: 'head-text' }, this.titleEl, this.agentLine, this.positionEl, this.status),
      close);

    // Voice and video controls of later steps go into this bar.
    this.callBar = $('div', { class: 'callbar', 'data-testid': 'call-bar', hidden: true });
    this.voice = new Voice({
      send: (f) => this.socket.send(f),
      status: this.status,
      bar: this.callBar,
      config: () => this.config,
      agentName: () => this.conversation?.agent?.name ?? '',
      restoreStatus: () => this.showState(this.socket.state, this.socket.reason),
      handOff: (pc, stream) => this.video?.adopt(pc, stream) ?? false, // video (Step 3)
      negotiates: (pc) => this.video?.negotiates(pc) ?? false,
      iceServers: () => this.iceServers(),
    });
    close.before(this.voice.startButton);

    this.logEl = $('div', { class: 'log', 'data-testid': 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': t('messages'), tabindex: '0' });
    this.log = new ChatLog(this.logEl, {
      role: 'customer',
      loadFile: (id, inline) => this.fetchFile(id, inline),
      onChange: (msg, isNew) => this.changed(msg, isNew),
      onRetry: (msg) => this.queueText(msg.text),
    });
    this.empty = $('p', { class: 'empty', text: t('empty') });
    // Older pages of the transcript, fetched on scroll up.
    this.moreButton = $('button', { type: 'button', class: 'history-more', 'data-testid': 'history-more', hidden: true });
    this.pager = new HistoryPager({
      log: this.log, scroller: this.logEl, button: this.moreButton,
      request: (before) => this.socket.send({ type: 'history', before }),
    });
    this.typingEl = $('p', { class: 'typing', 'data-testid': 'typing', 'aria-live': 'polite', hidden: true });
    this.notice = $('p', { class: 'notice', 'data-testid': 'notice', role: 'alert', hidden: true });

    this.restart = $('button', { type: 'button', class: 'secondary', 'data-testid': 'new-conversation', text: t('new') });
    this.restart.addEventListener('click', () => this.forget(''));
    this.buildRating();
    this.endedEl = $('div', { class: 'ended', 'data-testid': 'ended', hidden: true },
      $('p', { text: t('ended') }), this.ratingEl, this.restart);
    this.buildBusy();
    // No agent logged in: say so, and offer to leave a message.
    const leave = $('button', { type: 'button', class: 'link', 'data-testid': 'leave-message', text: t('away.leave') });
    leave.addEventListener('click', () => this.showBusy(this.input.value, 'away'));
    this.awayEl = $('div', { class: 'away', 'data-testid': 'away', role: 'status', hidden: true },
      $('p', { text: t('away.title') }), leave);

    this.nameInput = $('input', {
      type: 'text', class: 'name', 'data-testid': 'customer-name', autocomplete: 'name',
      maxlength: '80', placeholder: t('name.placeholder'), 'aria-label': t('name.label'),
    });
    if (this.config.name) this.nameInput.value = this.config.name;
    this.input = $('textarea', {
      class: 'input', 'data-testid': 'chat-input', rows: '1', maxlength: '4000',
      placeholder: t('input.placeholder'), 'aria-label': t('input.label'),
    });
    this.sendButton = $('button', { type: 'submit', class: 'send', 'data-testid': 'chat-send', 'aria-label': t('send') },
      $('span', { class: 'send-icon', 'aria-hidden': 'true' }));
    this.fileInput = $('input', { type: 'file', class: 'file-input', 'data-testid': 'file-input', 'aria-label': t('attach') });
    const attach = $('label', { class: 'icon-button attach', title: t('attach') },
      $('span', { class: 'attach-icon', 'aria-hidden': 'true' }), this.fileInput);
    this.form = $('form', { class: 'composer', 'aria-label': 'Send a message' },
      this.nameInput,
      $('div', { class: 'row' }, attach, this.input, this.sendButton));

    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.sendText(); });
    enterSends(this.input, () => this.sendText());
    this.input.addEventListener('input', () => { this.autoGrow(); if (this.conversation) this.typing.input(); });
    this.fileInput.addEventListener('change', () => this.sendFiles());

    this.panel = $('section', {
      class: 'panel', role: 'dialog', 'aria-labelledby': 'segue-title', 'data-testid': 'chat-panel', hidden: true, ...lang,
    }, header, this.callBar, $('div', { class: 'body' }, this.moreButton, this.empty, this.logEl), this.typingEl, this.notice, this.endedEl, this.awayEl, this.busyEl, this.form);
    this.panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') this.close(); });
    this.video = new WidgetVideo(this); // video (Step 3): its bar goes under the call bar

    // Stay invisible until the stylesheet is in, so the host page never
    // sees unstyled controls.
    const css = $('link', { rel: 'stylesheet', href: `${ORIGIN}/widget.css` });
    const show = () => {
      this.styled = true;
      if (this.isConnected) this.style.visibility = '';
    };
    css.addEventListener('load', show);
    css.addEventListener('error', show);
    this.shadowRoot.append(css, this.launcher, this.panel);
  }

  /**
   * buildBusy makes the panel for leaving a message instead of chatting:
   * when the queue is full (mode "full": answered by e-mail), closed
   * ("closed": outside opening hours) or has nobody logged in ("away").
   * Outside hours and with nobody in, the message waits for the next agent.
   */
  buildBusy() {
    const $ = (tag, props, ...kids) => h(tag, props, ...kids);
    const t = this.t;
    this.busyName = $('input', {
      type: 'text', class: 'name', 'data-testid': 'busy-name', autocomplete: 'name',
      maxlength: '80', placeholder: t('form.name'), 'aria-label': t('form.name'),
    });
    this.busyEmail = $('input', {
      type: 'email', class: 'name', 'data-testid': 'busy-email', autocomplete: 'email', required: true,
      maxlength: '254', placeholder: t('form.email'), 'aria-label': t('form.email'),
    });
    this.busyText = $('textarea', {
      class: 'input', 'data-testid': 'busy-message', rows: '3', maxlength: '4000', required: true,
      placeholder: t('form.message'), 'aria-label': t('form.message'),
    });
    this.busySend = $('button', { type: 'submit', class: 'secondary', 'data-testid': 'busy-send', text: t('form.send') });
    this.busyForm = $('form', { class: 'busy-form', 'aria-label': t('away.leave') }, this.busyName, this.busyEmail, this.busyText, this.busySend);
    this.busyForm.addEventListener('submit', (e) => { e.preventDefault(); this.leaveMessage(); });
    this.busyDone = $('p', { class: 'busy-sent', 'data-testid': 'busy-sent', role: 'status', hidden: true });
    this.busyBack = $('button', { type: 'button', class: 'link', 'data-testid': 'busy-retry', text: t('form.retry') });
    this.busyBack.addEventListener('click', () => this.hideBusy());
    this.busyTitle = $('p', { class: 'busy-title', 'data-testid': 'busy-title', text: t('busy.title') });
    this.busyNext = $('p', { class: 'busy-next', 'data-testid': 'opening-hours', hidden: true });
    this.busyHint = $('p', { text: t('busy.hint') });
    this.busyEl = $('div', { class: 'busy', 'data-testid': 'busy', role: 'region', 'aria-label': t('away.leave'), hidden: true },
      this.busyTitle, this.busyNext, this.busyHint, this.busyForm, this.busyDone, this.busyBack);
  }

  /**
   * showBusy offers to leave a message, prefilled with what was typed;
   * mode is full, closed or away, and status the gateway's queue status.
   */
  showBusy(text, mode = 'full', status = null) {
    const t = this.t;
    this.busyEl.dataset.mode = mode;
    this.busyTitle.textContent = t({ full: 'busy.title', closed: 'closed.title', away: 'away.title' }[mode]);
    this.busyHint.textContent = t(mode === 'full' ? 'busy.hint' : 'closed.hint');
    this.busyNext.hidden = !status?.next_open;
    this.busyNext.textContent = status?.next_open ? t('closed.next', { when: this.formatWhen(status.next_open) }) : '';
    this.busyName.hidden = mode === 'full';
    if (!this.busyName.value) this.busyName.value = this.nameInput.value.trim() || this.config.name || '';
    // Outside opening hours there is no chat to go back to.
    this.busyBack.hidden = mode === 'closed';
    this.busyText.value = text ?? '';
    this.busyForm.hidden = false;
    this.busyDone.hidden = true;
    this.busyEl.hidden = false;
    this.awayEl.hidden = true;
    this.form.hidden = true;
    this.note('');
    this.showState('idle');
    (mode === 'full' ? this.busyEmail : this.busyName).focus({ preventScroll: true });
  }

  /** formatWhen says when the queue opens, in the customer's language and time zone. */
  formatWhen(iso) {
    try {
      return new Intl.DateTimeFormat(this.language, { weekday: 'long', day: 'numeric', month: 'long', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
        .format(new Date(iso));
    } catch {
      return new Date(iso).toLocaleString();
    }
  }

  hideBusy() {
    this.busyEl.hidden = true;
    this.refresh();
  }

  /**
   * checkOpen asks the gateway, before a conversation exists, whether the
   * queue takes chats now: outside opening hours the widget offers only to
   * leave a message; with nobody logged in it says so and offers it too.
   */
  async checkOpen() {
    if (this.session || this.checkingOpen) return;
    this.checkingOpen = true;
    try {
      const q = this.config.queue ? `?queue=${encodeURIComponent(this.config.queue)}` : '';
      const res = await fetch(`${API}/queue-status${q}`);
      if (!res.ok) return;
      const st = await res.json();
      this.queueStatus = st;
      if (this.session) return;
      if (st.reason === 'closed' || st.reason === 'holiday') this.showBusy(this.input.value, 'closed', st);
      else this.refresh();
    } catch { /* unreachable: the chat says so when it starts */ } finally {
      this.checkingOpen = false;
    }
  }

  async leaveMessage() {
    const cfg = this.config;
    const body = {
      queue: cfg.queue || undefined, name: this.busyName.value.trim() || this.nameInput.value.trim() || cfg.name || undefined,
      identity: cfg.identity || undefined, email: this.busyEmail.value.trim(), text: this.busyText.value.trim(),
    };
    if (!body.email || !body.text) return;
    this.busySend.disabled = true;
    try {
      const res = await fetch(`${API}/left-messages`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      if (!res.ok) throw await apiError(res);
      this.busyForm.hidden = true;
      this.busyDone.textContent = this.t('form.thanks', { email: body.email });
      this.busyDone.hidden = false;
      this.busyText.value = '';
      this.note('');
    } catch (err) {
      const wait = err.retryAfter ? ` ${this.t('retry.after', { n: err.retryAfter })}` : '';
      this.note(`${this.t('form.failed', { error: err.message })}${wait}`);
    } finally {
      this.busySend.disabled = false;
    }
  }

  /** buildRating makes the satisfaction rating offered once the conversation ends. */
  buildRating() {
    const $ = (tag, props, ...kids) => h(tag, props, ...kids);
    const t = this.t;
    this.ratingScore = 0;
    this.stars = [1, 2, 3, 4, 5].map((n) => {
      const b = $('button', {
        type: 'button', class: 'star', 'data-testid': 'rating-star', 'data-score': String(n),
        'aria-label': t('rating.star', { n }), 'aria-pressed': 'false', text: '☆',
      });
      b.addEventListener('click', () => this.pickScore(n));
      return b;
    });
    this.ratingComment = $('textarea', {
      class: 'input', 'data-testid': 'rating-comment', rows: '2', maxlength: '1000',
      placeholder: t('rating.comment'), 'aria-label': t('rating.comment'),
    });
    this.ratingSend = $('button', { type: 'submit', class: 'secondary', 'data-testid': 'rating-send', text: t('rating.send'), disabled: true });
    this.ratingForm = $('form', { class: 'rating-form', 'aria-label': t('rating.title') },
      $('p', { class: 'rating-title', text: t('rating.title') }),
      $('div', { class: 'stars', role: 'group', 'aria-label': t('rating.title') }, ...this.stars),
      this.ratingComment, this.ratingSend);
    this.ratingForm.addEventListener('submit', (e) => { e.preventDefault(); this.sendRating(); });
    this.ratingThanks = $('p', { class: 'rating-thanks', 'data-testid': 'rating-thanks', role: 'status', text: t('rating.thanks'), hidden: true });
    this.ratingEl = $('div', { class: 'rating', 'data-testid': 'rating', hidden: true }, this.ratingForm, this.ratingThanks);
  }

  pickScore(n) {
    this.ratingScore = n;
    this.stars.forEach((b, i) => {
      b.textContent = i < n ? '★' : '☆';
      b.setAttribute('aria-pressed', String(i + 1 === n));
    });
    this.ratingSend.disabled = false;
  }

  async sendRating() {
    const session = this.session;
    if (!session || !this.ratingScore) return;
    this.ratingSend.disabled = true;
    try {
      const res = await fetch(`${API}/conversations/${encodeURIComponent(session.id)}/rating`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${session.token}` },
        body: JSON.stringify({ score: this.ratingScore, comment: this.ratingComment.value.trim() }),
      });
      if (!res.ok) {
        const err = await apiError(res);
        if (err.code !== 'already_rated') throw err;
      } else {
        const data = await res.json();
        this.conversation = data.conversation;
      }
      this.rated = true;
      this.note('');
      this.refresh();
    } catch (err) {
      this.ratingSend.disabled = false;
      this.note(this.t('rating.failed', { error: err.message }));
    }
  }

  /** showPosition shows the customer's place in the queue and the estimated wait. */
  showPosition(p) {
    this.position = p && this.conversation?.state !== 'ended' && !this.conversation?.agent ? p : null;
    const el = this.positionEl;
    if (!this.position) {
      el.hidden = true;
      delete el.dataset.position;
      return;
    }
    const t = this.t;
    const secs = p.estimated_wait_seconds ?? 0;
    let text = t('position', { n: p.position });
    if (secs > 0) text += ` · ${secs < 60 ? t('position.soon') : t('position.wait', { m: Math.round(secs / 60) })}`;
    el.textContent = text;
    el.dataset.position = String(p.position);
    el.dataset.estimate = String(secs);
    el.hidden = false;
  }

  open() {
    this.panel.hidden = false;
    this.launcher.setAttribute('aria-expanded', 'true');
    this.classList.add('open');
    this.shadowRoot.host.dataset.open = 'true';
    sessionStorage.setItem(`${KEY}:open`, '1');
    this.unread = 0;
    this.refresh();
    this.checkOpen();
    this.scrollDown();
    this.sendRead();
    (this.nameInput.hidden ? this.input : this.nameInput).focus({ preventScroll: true });
  }

  close() {
    this.panel.hidden = true;
    this.launcher.setAttribute('aria-expanded', 'false');
    delete this.shadowRoot.host.dataset.open;
    sessionStorage.removeItem(`${KEY}:open`);
    this.launcher.focus({ preventScroll: true });
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  /** setIdentity sets the signed identity token used by the next conversation. */
  setIdentity(token) {
    this.dataset.identity = token;
  }

  /** refresh updates everything derived from the conversation. */
  refresh() {
    const c = this.conversation;
    const ended = c?.state === 'ended';
    const started = Boolean(this.session);
    this.nameInput.hidden = started;
    this.empty.hidden = this.log.items.size > 0;
    this.endedEl.hidden = !ended;
    this.form.hidden = ended || !this.busyEl.hidden;
    // Rated once, after the end: the form, then the thanks.
    const rated = this.rated || Boolean(c?.rating);
    this.ratingEl.hidden = !ended || !this.session;
    this.ratingForm.hidden = rated;
    this.ratingThanks.hidden = !rated;
    this.awayEl.hidden = started || !this.busyEl.hidden || this.queueStatus?.reason !== 'no_agents';
    if (c?.state !== 'waiting') this.showPosition(null);
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = String(this.unread);
    this.launcher.setAttribute('aria-label', this.unread ? this.t('launcher.unread', { n: this.unread }) : this.t('launcher.open'));
    if (c?.agent?.name) this.lastAgent = c.agent;
    // After a reload of an ended chat, the last agent who wrote is known.
    if (ended && !this.lastAgent) {
      for (const { msg } of this.log.items.values()) if (msg.from?.role === 'agent' && msg.from.name) this.lastAgent = msg.from;
    }
    const t = this.t;
    if (ended) {
      this.titleEl.textContent = this.lastAgent?.name || t('head.title');
      this.agentLine.textContent = t('head.ended');
    } else if (c?.agent?.name) {
      this.titleEl.textContent = c.agent.name;
      this.agentLine.textContent = t('head.helping');
      this.agentLine.dataset.agent = c.agent.id ?? '';
    } else {
      this.titleEl.textContent = t('head.title');
      this.agentLine.textContent = started && !ended ? t('head.waiting') : t('head.tagline');
      delete this.agentLine.dataset.agent;
    }
    this.dataset.state = c?.state ?? (started ? 'starting' : 'new');
    this.voice?.setAvailable(Boolean(c?.voice));
    this.video?.setAvailable(Boolean(c?.video)); // video (Step 3)
    this.voice?.setEnabled(Boolean(c) && !ended);
    this.video?.setEnabled(Boolean(c) && !ended); // video (Step 3)
  }

  showState(state, reason) {
    this.status.dataset.state = state;
    let text = STATE_TEXT[state] ? this.t(`state.${state}`) : state;
    if (state === 'restarting' && reason && reason !== 'server restarting') text = `${text}: ${reason}`;
    else if (state === 'restarting') text = `${text} — ${this.t('state.reconnecting')}`;
    else if (reason && state !== 'connected') text = `${text} (${reason})`;
    this.status.textContent = text;
    this.status.dataset.reason = reason ?? '';
    this.voice?.overlay();
  }

  note(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  autoGrow() {
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
  }

  scrollDown() {
    this.logEl.scrollTop = this.logEl.scrollHeight;
  }

  changed(msg, isNew) {
    this.refresh();
    const mine = msg.from?.role === 'customer';
    // Only agent messages the customer has not read yet count as new.
    if (isNew && msg.from?.role === 'agent' && msg.seq > this.readSent && !this.isOpen) this.unread++;
    // Follow new messages unless the reader has scrolled up into history.
    const el = this.logEl;
    if (isNew && (mine || el.scrollHeight - el.scrollTop - el.clientHeight < 240)) this.scrollDown();
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = String(this.unread);
  }

  /** ensureConversation creates the conversation on first use. */
  ensureConversation() {
    if (this.session) return Promise.resolve(this.session);
    this.creating ??= this.createConversation().finally(() => { this.creating = null; });
    return this.creating;
  }

  async createConversation() {
    const cfg = this.config;
    const body = { queue: cfg.queue || undefined, name: this.nameInput.value.trim() || cfg.name || undefined, identity: cfg.identity || undefined };
    this.showState('connecting');
    const res = await fetch(`${API}/conversations`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw await apiError(res);
    const data = await res.json();
    this.session = { id: data.conversation.id, token: data.token };
    saveJSON(`${KEY}:conversation`, this.session);
    this.conversation = data.conversation;
    this.refresh();
    this.socket.start();
    return this.session;
  }

  async sendText() {
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = '';
    this.autoGrow();
    this.typing.stop();
    await this.queueText(text);
  }

  /** queueText puts a message in the outbox and sends it when it can. */
  async queueText(text) {
    const item = { id: newId(), text, created_at: new Date().toISOString() };
    this.outbox.add(item);
    this.showPending(item);
    try {
      await this.ensureConversation();
      this.note('');
      this.socket.send({ type: 'message', id: item.id, text: item.text });
    } catch (err) {
      this.failed(item.id, err);
    }
  }

  failed(id, err) {
    if (err.code === 'queue_full') {
      // Every agent is busy and the queue is full: leave a message instead.
      const item = this.outbox.items.find((m) => m.id === id);
      this.outbox.remove(id);
      this.log.remove(id);
      this.refresh();
      this.showBusy(item?.text);
      return;
    }
    this.outbox.remove(id);
    const wait = err.retryAfter ? ` ${this.t('retry.after', { n: err.retryAfter })}` : '';
    this.log.fail(id, 'Not sent');
    this.note(`${this.t('start.failed', { error: err.message })}${wait}`);
    this.showState(this.session ? this.socket.state : 'idle');
  }

  showPending(item) {
    this.log.upsert({ id: item.id, text: item.text, kind: 'text', from: { role: 'customer' }, created_at: item.created_at });
  }

  async sendFiles() {
    const files = [...this.fileInput.files];
    this.fileInput.value = '';
    for (const file of files) await this.upload(file);
  }

  async upload(file) {
    const id = newId();
    this.log.upsert({ id, kind: 'file', from: { role: 'customer' }, file: { name: file.name, size: file.size, uploading: true } });
    try {
      const { id: convId, token } = await this.ensureConversation();
      const form = new FormData();
      form.append('id', id);
      form.append('file', file, file.name);
      const res = await fetch(`${API}/conversations/${encodeURIComponent(convId)}/files`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
        body: form,
      });
      if (!res.ok) throw await apiError(res);
      const { message } = await res.json();
      if (message.id !== id) this.log.remove(id);
      this.log.upsert(message);
      this.note('');
    } catch (err) {
      this.log.fail(id, 'Upload failed');
      this.note(`Could not send ${file.name}: ${err.message}`);
    }
  }

  /**
   * checkSession asks over HTTP whether our token still opens the
   * conversation, when the socket keeps failing; a handshake refusal is
   * invisible to WebSocket clients.
   */
  async checkSession() {
    const session = this.session;
    if (!session) return;
    try {
      const res = await fetch(`${API}/conversations/${encodeURIComponent(session.id)}`, { headers: { Authorization: `Bearer ${session.token}` } });
      if ([401, 403, 404].includes(res.status) && this.session === session) this.forget(this.t('gone'));
    } catch { /* still unreachable: keep trying */ }
  }

  /**
   * iceServers returns the ICE servers for a new peer connection. TURN
   * credentials made for this conversation expire: when those of the
   * welcome have less than ten minutes left, it asks for fresh ones.
   */
  async iceServers() {
    const ice = this.ice ?? { servers: [], expires: 0 };
    if (!ice.expires || ice.expires * 1000 - Date.now() > 10 * 60_000 || !this.session) return ice.servers;
    try {
      const res = await fetch(`${API}/ice-servers`, { headers: { Authorization: `Bearer ${this.session.token}` } });
      if (res.ok) {
        const f = await res.json();
        this.ice = { servers: f.ice_servers ?? [], expires: f.ice_expires_at ?? 0 };
      }
    } catch { /* unreachable: try with what we have */ }
    return this.ice.servers;
  }

  /** fetchFile downloads a file with the customer token (never in the URL). */
  async fetchFile(fileId, inline) {
    const url = `${API}/files/${encodeURIComponent(fileId)}${inline ? '?inline=1' : ''}`;
    const res = await fetch(url, { headers: { Authorization: `Bearer ${this.session?.token}` } });
    if (!res.ok) throw await apiError(res);
    return res.blob();
  }

  onFrame(f) {
    if (this.video.onFrame(f)) return; // video (Step 3)
    if (this.voice.onFrame(f)) return;
    switch (f.type) {
      case 'welcome':
        this.voice.setFeatures(f.features);
        this.ice = { servers: f.features?.ice_servers ?? [], expires: f.features?.ice_expires_at ?? 0 };
        this.conversation = f.conversation;
        this.readSent = Math.max(this.readSent, f.conversation?.read?.customer ?? 0);
        // Too much was missed to show it all: start again from the latest page.
        if (f.older && this.log.maxSeq > 0) {
          this.log.clear();
          for (const item of this.outbox.items) this.showPending(item);
        }
        for (const m of f.messages ?? []) this.log.upsert(m);
        this.pager.reset();
        this.pager.setOlder(f.older);
        this.log.setRead(f.conversation?.read?.agent ?? 0);
        this.refresh();
        this.showPosition(f.queue_position);
        // After a reconnect: the call and the video go on where the
        // gateway says they are.
        this.voice.resume(f);
        this.video.resume(f);
        this.flushOutbox();
        this.sendRead();
        break;
      case 'ack':
        this.outbox.remove(f.id);
        this.log.ack(f.id, f.seq);
        break;
      case 'history':
        this.pager.received(f.messages ?? [], f.older);
        break;
      case 'message':
        // The ended event can come before the conversation frame.
        if (f.message?.event?.name === 'conversation.ended' && this.conversation) {
          this.conversation = { ...this.conversation, state: 'ended' };
        }
        this.log.upsert(f.message);
        if (f.message?.from?.role !== 'customer') this.showTyping(false);
        this.sendRead();
        break;
      case 'conversation':
        this.conversation = f.conversation;
        this.log.setRead(f.conversation?.read?.agent ?? 0);
        this.refresh();
        break;
      case 'typing':
        if (f.role !== 'customer') this.showTyping(f.typing);
        break;
      case 'queue.position':
        if (f.conversation_id === this.session?.id) this.showPosition(f);
        break;
      case 'read':
        if (f.role !== 'customer') this.log.setRead(f.seq);
        break;
      case 'error':
        if (f.ref && f.code === 'rate_limited' && this.outbox.items.some((m) => m.id === f.ref)) {
          // Sent too fast: it stays in the outbox and goes again shortly.
          const id = f.ref;
          setTimeout(() => {
            const item = this.outbox.items.find((m) => m.id === id);
            if (item) this.socket.send({ type: 'message', id: item.id, text: item.text });
          }, Math.max(1, f.retry_after || 1) * 1000);
        } else if (f.ref && this.outbox.items.some((m) => m.id === f.ref)) {
          this.outbox.remove(f.ref);
          this.log.fail(f.ref, `Not sent: ${f.message || f.code}`);
        }
        if (f.code === 'conversation_full') this.note(f.message);
        break;
      default:
        break;
    }
  }

  /** flushOutbox sends every unacknowledged message again, oldest first. */
  flushOutbox() {
    for (const item of this.outbox.items) {
      this.showPending(item);
      this.socket.send({ type: 'message', id: item.id, text: item.text });
    }
  }

  showTyping(on) {
    clearTimeout(this.typingHide);
    const name = this.conversation?.agent?.name || this.t('typing.agent');
    this.typingEl.textContent = on ? this.t('typing', { name }) : '';
    this.typingEl.hidden = !on;
    if (on) this.typingHide = setTimeout(() => this.showTyping(false), 8000);
  }

  /** sendRead reports what the customer has seen, when the chat is in view. */
  sendRead() {
    if (!this.isOpen || this.conversation?.state === 'ended' || document.visibilityState !== 'visible') return;
    const seq = this.log.lastOtherSeq();
    if (seq > this.readSent && this.socket.send({ type: 'read', seq })) this.readSent = seq;
  }

  /** forget leaves the current conversation so that a new one can start. */
  forget(reason) {
    this.video.teardown(); // video (Step 3)
    this.voice.hangup();
    this.voice.teardown();
    this.socket.stop();
    this.session = null;
    this.conversation = null;
    this.lastAgent = null;
    this.readSent = 0;
    this.rated = false;
    this.ratingScore = 0;
    this.ratingComment.value = '';
    this.stars.forEach((b) => { b.textContent = '☆'; b.setAttribute('aria-pressed', 'false'); });
    this.ratingSend.disabled = true;
    this.showPosition(null);
    saveJSON(`${KEY}:conversation`, null);
    this.outbox.clear();
    this.log.clear();
    this.showTyping(false);
    this.note(reason);
    this.refresh();
    this.showState('idle');
    if (this.isOpen) {
      this.nameInput.focus();
      this.checkOpen();
    }
  }
}

if (!customElements.get('segue-widget')) customElements.define('segue-widget', SegueWidget);

/** mount adds the widget to the page unless the page placed one itself. */
function mount() {
  let el = document.querySelector('segue-widget');
  if (!el) {
    el = document.createElement('segue-widget');
    const cfg = scriptConfig();
    for (const [k, v] of Object.entries(cfg)) el.dataset[k] = v;
    document.body.append(el);
  }
  globalThis.segueWidget = {
    element: el,
    open: () => el.open(),
    close: () => el.close(),
    setIdentity: (token) => el.setIdentity(token),
  };
}

if (document.body) mount();
else document.addEventListener('DOMContentLoaded', mount, { once: true });
