/**
 * The sessiond chat page: one plain ES module, no build step, no dependency.
 * It speaks the protocol of docs/protocol.md like any other client.
 *
 * What it keeps per session key in localStorage (`sessiond.session.<key>`):
 * - `lastSeq`: the highest durable seq it has shown. It is the resume point
 *   (the socket opens with `?after=lastSeq`) and the duplicate filter (a
 *   durable frame with `seq <= lastSeq` is dropped), so a reload or a dropped
 *   network shows every reply exactly once.
 * - `entries`: what the conversation shows (the user's messages and the
 *   durable frames), in arrival order, so a reload redraws it without asking
 *   the server (durable frames carry the replies, not the user's messages).
 * - `outbox`: messages and answers whose `accepted` has not arrived. They are
 *   resent with the same requestId on every connect (idempotent server-side).
 * The session's token is kept under `sessiond.token.<key>`.
 *
 * Order of a durable frame: shown, stored (with lastSeq), then acked — a reload
 * between storing and acking replays nothing we have not stored.
 *
 * Live tokens go to a streaming bubble per eventSeq; the durable message for
 * that eventSeq replaces it, and later tokens for it are dropped. Tokens are a
 * preview: the ones missed during a reload are simply missing from the bubble.
 *
 * A token comes from, in order: localStorage (while it has a minute left), the
 * dev token endpoint (answers only on a localhost server on embedded PGlite),
 * or the user, who pastes one minted with `sessiond token <key>`.
 */

const SUBPROTOCOL = "sessiond.v1";
const SESSION_KEY = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$/;
const MAX_ENTRIES = 500;
const MAX_RECENT = 12;

/** @param {string} id */
function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

const ui = {
  sessionForm: byId("session-form"),
  sessionKey: /** @type {HTMLInputElement} */ (byId("session-key")),
  recent: byId("recent-sessions"),
  newSession: byId("new-session"),
  status: byId("status"),
  tokenPanel: byId("token-panel"),
  tokenForm: byId("token-form"),
  tokenInput: /** @type {HTMLInputElement} */ (byId("token-input")),
  tokenSession: byId("token-session"),
  tokenCommand: byId("token-command"),
  tokenError: byId("token-error"),
  messages: byId("messages"),
  notice: byId("notice"),
  composer: byId("composer"),
  input: /** @type {HTMLTextAreaElement} */ (byId("message-input")),
  send: /** @type {HTMLButtonElement} */ (byId("send")),
  timeline: /** @type {HTMLTableSectionElement} */ (document.querySelector("#timeline tbody")),
  cursor: byId("cursor"),
  refreshTimeline: byId("refresh-timeline"),
};

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

const storage = {
  /** @param {string} name @param {unknown} fallback */
  read(name, fallback) {
    try {
      const text = localStorage.getItem(`sessiond.${name}`);
      return text === null ? fallback : JSON.parse(text);
    } catch {
      return fallback;
    }
  },
  /** @param {string} name @param {unknown} value */
  write(name, value) {
    try {
      localStorage.setItem(`sessiond.${name}`, JSON.stringify(value));
    } catch {
      // Storage full or disabled: the page still works, it just forgets on reload.
    }
  },
  /** @param {string} name */
  remove(name) {
    try {
      localStorage.removeItem(`sessiond.${name}`);
    } catch {}
  },
};

/**
 * @typedef {{ lastSeq: number, entries: Entry[], outbox: OutFrame[] }} SessionState
 * @typedef {{ kind: "user", requestId: string, text: string, eventSeq: number | null, refused?: string }
 *   | { kind: "assistant", seq: number, eventSeq: number | null, requestId: string, role: string, content: string }
 *   | { kind: "failure", seq: number, eventSeq: number | null, requestId: string | null, code: string, message: string }
 *   | { kind: "interrupt", seq: number, eventSeq: number | null, requestId: string, value: unknown, answer?: string }
 *   | { kind: "effect", seq: number, eventSeq: number | null, effectType: string, payload: unknown }} Entry
 * @typedef {{ type: "message", requestId: string, text: string }
 *   | { type: "answer", requestId: string, value: unknown }} OutFrame
 */

/** @param {string} key @returns {SessionState} */
function loadState(key) {
  const state = storage.read(`session.${key}`, null);
  if (state && Number.isInteger(state.lastSeq) && Array.isArray(state.entries) && Array.isArray(state.outbox)) {
    return state;
  }
  return { lastSeq: 0, entries: [], outbox: [] };
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomSessionKey() {
  return `chat-${newId().slice(0, 8)}`;
}

/** @param {string} key */
function rememberSession(key) {
  const recent = /** @type {string[]} */ (storage.read("recent", [])).filter((k) => k !== key);
  recent.unshift(key);
  storage.write("recent", recent.slice(0, MAX_RECENT));
  storage.write("current", key);
  ui.recent.replaceChildren(
    ...recent.slice(0, MAX_RECENT).map((k) => Object.assign(document.createElement("option"), { value: k })),
  );
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/** @param {string} token @returns {number} expiry in ms, 0 if unreadable */
function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    return Number(JSON.parse(json).exp) * 1000 || 0;
  } catch {
    return 0;
  }
}

/**
 * A token for `key`, or null when the user must paste one.
 * @param {string} key
 * @returns {Promise<string | null>}
 */
async function obtainToken(key) {
  const stored = storage.read(`token.${key}`, null);
  if (typeof stored === "string" && tokenExpiry(stored) > Date.now() + 60_000) return stored;
  storage.remove(`token.${key}`);
  const response = await fetch(`/v1/dev/token?session=${encodeURIComponent(key)}`, { cache: "no-store" });
  if (!response.ok) return null;
  const { token } = await response.json();
  storage.write(`token.${key}`, token);
  return token;
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 */
function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {unknown} value */
function describeValue(value) {
  if (value && typeof value === "object" && "question" in value && typeof value.question === "string") {
    return value.question;
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * The element of one entry. `onAnswer` is called when the user answers an interrupt.
 * @param {Entry} entry
 * @param {(entry: Entry, text: string) => void} onAnswer
 */
function entryNode(entry, onAnswer) {
  const li = h("li", `msg ${entry.kind}`);
  const body = h("span", "body");
  const meta = h("span", "meta");
  li.append(body, meta);
  switch (entry.kind) {
    case "user":
      li.dataset.requestId = entry.requestId;
      body.textContent = entry.text;
      if (entry.refused) {
        li.classList.add("refused");
        meta.textContent = `refused: ${entry.refused}`;
      } else if (entry.eventSeq === null) {
        li.classList.add("pending");
        meta.textContent = "sending…";
      } else {
        li.dataset.eventSeq = String(entry.eventSeq);
        meta.textContent = `event #${entry.eventSeq}`;
      }
      break;
    case "assistant":
      body.textContent = entry.content;
      meta.textContent = `seq ${entry.seq}${entry.eventSeq !== null ? ` · reply to event #${entry.eventSeq}` : ""}`;
      break;
    case "failure":
      body.textContent = `${entry.code}: ${entry.message}`;
      meta.textContent = `seq ${entry.seq} · failure${entry.eventSeq !== null ? ` of event #${entry.eventSeq}` : ""}`;
      break;
    case "interrupt": {
      body.textContent = describeValue(entry.value);
      meta.textContent = `seq ${entry.seq} · the agent asks`;
      if (entry.answer !== undefined) {
        meta.textContent += ` · answered: ${entry.answer}`;
      } else {
        const form = h("form", "");
        const input = /** @type {HTMLInputElement} */ (h("input", ""));
        input.placeholder = "your answer";
        input.required = true;
        form.append(input, h("button", "", "Answer"));
        form.addEventListener("submit", (event) => {
          event.preventDefault();
          if (input.value.trim()) onAnswer(entry, input.value.trim());
        });
        li.append(form);
      }
      break;
    }
    case "effect":
      body.textContent = `${entry.effectType} ${JSON.stringify(entry.payload)}`;
      meta.textContent = `seq ${entry.seq}`;
      break;
  }
  if ("seq" in entry) li.dataset.seq = String(entry.seq);
  if (entry.kind !== "user" && entry.eventSeq !== null) li.dataset.eventSeq = String(entry.eventSeq);
  return li;
}

/** @param {Date | string | null} at */
function clock(at) {
  if (!at) return "";
  const d = new Date(at);
  const pad = (/** @type {number} */ n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * @param {Array<{ at: string, kind: string, seq: number, eventSeq: number | null, type: string, status: string,
 *   summary: string, latencyMs: number | null }>} entries
 */
function renderTimeline(entries) {
  ui.timeline.replaceChildren(
    ...entries.map((row) => {
      const tr = h("tr", row.kind);
      tr.dataset.kind = row.kind;
      tr.dataset.seq = String(row.seq);
      tr.dataset.status = row.status;
      const status = h("span", `pill ${row.status}`, row.status);
      const cells = [
        h("td", "time", clock(row.at)),
        h("td", "kind", row.kind),
        h("td", "num", String(row.seq)),
        h("td", "num", row.eventSeq === null ? "" : String(row.eventSeq)),
        h("td", "type", row.type),
        h("td", "status"),
        h("td", "summary"),
        h("td", "num", row.latencyMs === null ? "" : String(Math.round(row.latencyMs))),
      ];
      cells[5]?.append(status);
      const summary = h("div", "", row.summary);
      summary.title = row.summary;
      cells[6]?.append(summary);
      tr.append(...cells);
      return tr;
    }),
  );
}

/** @param {string} state @param {string} text */
function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

/** @param {string} [text] */
function setNotice(text) {
  ui.notice.hidden = !text;
  ui.notice.textContent = text ?? "";
}

// ---------------------------------------------------------------------------
// One open session
// ---------------------------------------------------------------------------

class ChatSession {
  /** @param {string} key @param {string} token */
  constructor(key, token) {
    this.key = key;
    this.token = token;
    this.state = loadState(key);
    /** @type {WebSocket | null} */
    this.ws = null;
    this.ended = false;
    this.attempts = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.reconnectTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.ackTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timelineTimer = undefined;
    this.ackedSent = 0;
    /** Durable frames dropped as duplicates (seq <= lastSeq). */
    this.dropped = 0;
    /** @type {Map<number, { li: HTMLElement, body: HTMLElement, lastIndex: number }>} eventSeq → streaming bubble */
    this.streams = new Map();
    /** @type {Set<number>} eventSeqs whose durable reply is shown: their tokens are dropped */
    this.answered = new Set();
    for (const entry of this.state.entries) {
      if (entry.kind !== "user" && entry.eventSeq !== null) this.answered.add(entry.eventSeq);
    }
    this.redraw();
    this.connect();
  }

  get base() {
    return `/v1/sessions/${encodeURIComponent(this.key)}`;
  }

  save() {
    if (this.state.entries.length > MAX_ENTRIES) this.state.entries.splice(0, this.state.entries.length - MAX_ENTRIES);
    storage.write(`session.${this.key}`, this.state);
    ui.cursor.textContent = `last seq ${this.state.lastSeq}`;
    ui.messages.dataset.lastSeq = String(this.state.lastSeq);
    ui.messages.dataset.dropped = String(this.dropped);
  }

  redraw() {
    ui.messages.replaceChildren(...this.state.entries.map((entry) => this.node(entry)));
    this.streams.clear();
    this.save();
    this.scrollDown(true);
  }

  /** @param {Entry} entry */
  node(entry) {
    return entryNode(entry, (interrupt, text) => this.answer(interrupt, text));
  }

  scrollDown(force = false) {
    const list = ui.messages;
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    if (force || nearBottom) list.scrollTop = list.scrollHeight;
  }

  /** Ends this session view: no reconnect, no timers. */
  end() {
    this.ended = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.ackTimer);
    clearTimeout(this.timelineTimer);
    this.ws?.close(1000, "switching session");
    this.ws = null;
  }

  connect() {
    if (this.ended) return;
    const url = new URL(`${this.base}/ws`, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("after", String(this.state.lastSeq));
    setStatus("connecting", "connecting…");
    const ws = new WebSocket(url, [SUBPROTOCOL, `bearer.${this.token}`]);
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.attempts = 0;
      this.ackedSent = 0;
      setStatus("live", "live");
      setNotice();
      for (const frame of this.state.outbox) ws.send(JSON.stringify(frame));
      this.scheduleAck();
      this.refreshTimeline();
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(String(event.data));
      } catch {
        return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws || this.ended) return;
      this.ws = null;
      this.reconnect(event.code);
    });
  }

  /** @param {number} code the close code */
  async reconnect(code) {
    const delay = Math.min(5000, 250 * 2 ** this.attempts) + Math.floor(Math.random() * 150);
    this.attempts += 1;
    setStatus("offline", `offline (close ${code}); retrying in ${(delay / 1000).toFixed(1)} s`);
    for (const stream of this.streams.values()) stream.li.remove();
    this.streams.clear();
    this.reconnectTimer = setTimeout(async () => {
      // A refused upgrade looks like any drop (1006): ask the timeline whether the token still works.
      const result = await this.refreshTimeline();
      if (this.ended) return;
      if (result === "unauthorized" || code === 4401) {
        storage.remove(`token.${this.key}`);
        const token = await obtainToken(this.key).catch(() => undefined);
        if (this.ended) return;
        if (token === null) {
          this.end();
          askForToken(this.key, "The stored token is no longer accepted (expired or minted with another secret).");
          return;
        }
        if (token !== undefined) this.token = token;
      }
      if (!this.ws && !this.ended) this.connect(); // (the `online` event may have reconnected meanwhile)
    }, delay);
  }

  /** @param {any} frame */
  onFrame(frame) {
    switch (frame.type) {
      case "accepted":
        return this.onAccepted(frame);
      case "token":
        return this.onToken(frame);
      case "message":
      case "failure":
      case "interrupt":
      case "effect":
        return this.onDurable(frame);
      case "error":
        return this.onError(frame);
      default:
        return; // resumed, and frame types this page does not know
    }
  }

  /** @param {{ requestId: string, eventSeq: number }} frame */
  onAccepted(frame) {
    this.state.outbox = this.state.outbox.filter((out) => out.requestId !== frame.requestId);
    const entry = this.state.entries.find((e) => e.kind === "user" && e.requestId === frame.requestId);
    if (entry && entry.kind === "user") {
      entry.eventSeq = frame.eventSeq;
      this.replaceNode(`li.user[data-request-id="${CSS.escape(frame.requestId)}"]`, entry);
    }
    this.save();
    this.scheduleTimeline();
  }

  /** @param {{ eventSeq: number, index: number, text: string }} frame */
  onToken(frame) {
    if (this.answered.has(frame.eventSeq)) return;
    let stream = this.streams.get(frame.eventSeq);
    if (!stream) {
      const li = h("li", "msg assistant streaming");
      li.dataset.streamingEventSeq = String(frame.eventSeq);
      const body = h("span", "body", frame.index > 0 ? "… " : "");
      li.append(body, h("span", "meta", `streaming · reply to event #${frame.eventSeq}`));
      ui.messages.append(li);
      stream = { li, body, lastIndex: -1 };
      this.streams.set(frame.eventSeq, stream);
    }
    if (frame.index <= stream.lastIndex) return;
    stream.lastIndex = frame.index;
    stream.body.textContent += frame.text;
    this.scrollDown();
  }

  /** @param {any} frame a durable frame */
  onDurable(frame) {
    if (!Number.isInteger(frame.seq) || frame.seq <= this.state.lastSeq) {
      this.dropped += 1;
      ui.messages.dataset.dropped = String(this.dropped);
      return;
    }
    /** @type {Entry} */
    let entry;
    const eventSeq = frame.eventSeq ?? null;
    if (frame.type === "message") {
      const { seq, requestId, role, content } = frame;
      entry = { kind: "assistant", seq, eventSeq, requestId, role, content };
    } else if (frame.type === "failure") {
      const { seq, requestId, code, message } = frame;
      entry = { kind: "failure", seq, eventSeq, requestId, code, message };
    } else if (frame.type === "interrupt") {
      const { seq, requestId, value } = frame;
      entry = { kind: "interrupt", seq, eventSeq, requestId, value };
    } else {
      const { seq, effectType, payload } = frame;
      entry = { kind: "effect", seq, eventSeq, effectType, payload };
    }
    const node = this.node(entry);
    const stream = eventSeq !== null ? this.streams.get(eventSeq) : undefined;
    if (stream) {
      stream.li.replaceWith(node);
      this.streams.delete(/** @type {number} */ (eventSeq));
    } else {
      ui.messages.append(node);
    }
    if (eventSeq !== null) this.answered.add(eventSeq);
    this.state.lastSeq = frame.seq;
    this.state.entries.push(entry);
    this.save();
    this.scrollDown();
    this.scheduleAck();
    this.scheduleTimeline();
  }

  /** @param {{ code: string, message: string, requestId?: string }} frame */
  onError(frame) {
    if (frame.code === "ack_beyond_head") {
      // Only a stored cursor ahead of the server acks past its head, and the server answers that
      // cause with resume_beyond_head too (handled below): no notice of its own, which would hide
      // that one's. The next ack follows the new cursor.
      this.ackedSent = 0;
      return;
    }
    if (frame.code === "resume_beyond_head") {
      // The server has less than we stored (a fresh database under the same key): start over from its start.
      setNotice(`The server's session is behind this page's copy (${frame.message}); showing the server's version.`);
      const waiting = new Set(this.state.outbox.map((out) => out.requestId));
      const unsent = this.state.entries.filter((e) => e.kind === "user" && waiting.has(e.requestId));
      this.state = { lastSeq: 0, entries: unsent, outbox: this.state.outbox };
      this.answered.clear();
      this.redraw();
      this.ws?.send(JSON.stringify({ type: "resume", after: 0 }));
      return;
    }
    const retryable = frame.code === "shutting_down" || frame.code === "rate_limited" || frame.code === "internal";
    if (frame.requestId && !retryable) {
      this.state.outbox = this.state.outbox.filter((out) => out.requestId !== frame.requestId);
      const entry = this.state.entries.find((e) => e.kind === "user" && e.requestId === frame.requestId);
      if (entry && entry.kind === "user") {
        entry.refused = `${frame.code}: ${frame.message}`;
        this.replaceNode(`li.user[data-request-id="${CSS.escape(frame.requestId)}"]`, entry);
      }
      this.save();
    }
    setNotice(`${frame.code}: ${frame.message}${retryable && frame.requestId ? " (will retry)" : ""}`);
    if (retryable && frame.requestId && frame.code === "rate_limited") {
      const out = this.state.outbox.find((o) => o.requestId === frame.requestId);
      setTimeout(() => {
        if (out && this.ws?.readyState === WebSocket.OPEN && this.state.outbox.includes(out)) {
          this.ws.send(JSON.stringify(out));
        }
      }, 1000);
    }
  }

  /** @param {string} selector @param {Entry} entry */
  replaceNode(selector, entry) {
    ui.messages.querySelector(selector)?.replaceWith(this.node(entry));
  }

  /** @param {string} text */
  sendMessage(text) {
    /** @type {OutFrame} */
    const out = { type: "message", requestId: newId(), text };
    this.state.entries.push({ kind: "user", requestId: out.requestId, text, eventSeq: null });
    this.state.outbox.push(out);
    this.save();
    ui.messages.append(this.node(/** @type {Entry} */ (this.state.entries.at(-1))));
    this.scrollDown(true);
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(out));
  }

  /** @param {Entry} interrupt @param {string} text */
  answer(interrupt, text) {
    if (interrupt.kind !== "interrupt") return;
    interrupt.answer = text;
    /** @type {OutFrame} */
    const out = { type: "answer", requestId: newId(), value: text };
    this.state.outbox.push(out);
    this.save();
    this.replaceNode(`li.interrupt[data-seq="${interrupt.seq}"]`, interrupt);
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(out));
  }

  /** Acks are cumulative: one `ack` for everything shown so far, batched. */
  scheduleAck() {
    if (this.ackTimer !== undefined) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      const seq = this.state.lastSeq;
      if (seq > this.ackedSent && this.ws?.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: "ack", seq }));
        this.ackedSent = seq;
        this.scheduleTimeline();
      }
    }, 50);
  }

  scheduleTimeline() {
    clearTimeout(this.timelineTimer);
    this.timelineTimer = setTimeout(() => this.refreshTimeline(), 300);
  }

  /** @returns {Promise<"ok" | "unauthorized" | "offline">} */
  async refreshTimeline() {
    try {
      const response = await fetch(`${this.base}/timeline`, {
        headers: { Authorization: `Bearer ${this.token}` },
        cache: "no-store",
      });
      if (this.ended) return "ok";
      if (response.status === 401 || response.status === 403) return "unauthorized";
      if (!response.ok) return "offline";
      const body = await response.json();
      if (!this.ended) renderTimeline(body.entries);
      return "ok";
    } catch {
      return "offline";
    }
  }
}

// ---------------------------------------------------------------------------
// Choosing a session
// ---------------------------------------------------------------------------

/** @type {ChatSession | null} */
let current = null;

/** @param {string} key @param {string} [why] */
function askForToken(key, why) {
  ui.tokenPanel.hidden = false;
  ui.tokenPanel.dataset.session = key;
  ui.tokenSession.textContent = key;
  ui.tokenCommand.textContent = `npx sessiond token ${key}`;
  ui.tokenError.hidden = !why;
  ui.tokenError.textContent = why ?? "";
  ui.send.disabled = true;
  setStatus("idle", "needs a token");
  ui.tokenInput.focus();
}

/** @param {string} key */
async function openSession(key) {
  current?.end();
  current = null;
  ui.tokenPanel.hidden = true;
  ui.sessionKey.value = key;
  rememberSession(key);
  const url = new URL(location.href);
  url.searchParams.set("session", key);
  history.replaceState(null, "", url);
  document.title = `${key} · sessiond`;
  ui.messages.replaceChildren();
  ui.timeline.replaceChildren();
  setNotice();
  setStatus("connecting", "getting a token…");
  let token;
  try {
    token = await obtainToken(key);
  } catch (error) {
    setStatus("offline", "server unreachable");
    setNotice(
      `Could not reach the server: ${error instanceof Error ? error.message : String(error)}. Reload to retry.`,
    );
    return;
  }
  if (ui.sessionKey.value !== key) return; // another session was chosen meanwhile
  if (token === null) {
    askForToken(key);
    return;
  }
  ui.send.disabled = false;
  current = new ChatSession(key, token);
  ui.input.focus();
}

ui.sessionForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = ui.sessionKey.value.trim();
  if (!SESSION_KEY.test(key)) {
    setNotice("A session key is 1..200 characters of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit.");
    return;
  }
  openSession(key);
});

ui.newSession.addEventListener("click", () => openSession(randomSessionKey()));

ui.tokenForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = ui.tokenPanel.dataset.session ?? "";
  const token = ui.tokenInput.value.trim();
  const response = await fetch(`/v1/sessions/${encodeURIComponent(key)}/timeline?limit=1`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  }).catch(() => null);
  if (!response?.ok) {
    const body = await response?.json().catch(() => null);
    ui.tokenError.hidden = false;
    ui.tokenError.textContent = body?.message ?? "The server did not accept this token.";
    return;
  }
  storage.write(`token.${key}`, token);
  ui.tokenInput.value = "";
  openSession(key);
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (!text || !current) return;
  current.sendMessage(text);
  ui.input.value = "";
  ui.input.focus();
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

ui.refreshTimeline.addEventListener("click", () => current?.refreshTimeline());

// Back online: reconnect now rather than at the end of the backoff.
window.addEventListener("online", () => {
  if (current && !current.ws && !current.ended) {
    clearTimeout(current.reconnectTimer);
    current.connect();
  }
});

const requested = new URL(location.href).searchParams.get("session");
const initial = requested && SESSION_KEY.test(requested) ? requested : storage.read("current", null);
openSession(typeof initial === "string" && SESSION_KEY.test(initial) ? initial : randomSessionKey());
