/**
 * The end-of-run books of a chaos suite: what the database holds, compared
 * with what each client sent and kept. `auditConversations` returns every
 * problem it finds as a sentence (the suites expect the list to be empty) and
 * the counts that go into docs/reliability.md.
 *
 * What is checked, per session:
 * - `sessiond.verify()` reports nothing (the invariants of docs/audit.md);
 * - every message the client sent is stored exactly once (by requestId), at the
 *   seq its `accepted` named, and nothing else is stored;
 * - every stored message has exactly one final reply, a send_message (no
 *   failure: a crash or a database fault must not turn into a lost answer),
 *   whose content is the local model's answer for that turn — the model states
 *   the message's position in the conversation, so a run that saw a history
 *   with an event twice (or missing) answers with the wrong number;
 * - the client kept durable frames 1..effect_seq with no gap, and exactly one
 *   reply per message after dropping duplicates by seq;
 * - the checkpoint: the thread's latest state holds each user message once, in
 *   order, each followed by its one reply, and the thread has one `input`
 *   checkpoint per message (a run committed twice would leave two).
 */
import type { BaseMessage } from "@langchain/core/messages";
import { verify } from "../../../src/audit/index.js";
import type { Db } from "../../../src/db/index.js";
import { SessiondCheckpointer } from "../../../src/session/checkpointer.js";
import type { ChaosClient } from "./chaos-client.js";

/** What the audit reads of a client: its books (a ChaosClient, or a copy of one). */
export type ClientBooks = Pick<
  ChaosClient,
  "sessionKey" | "sent" | "replies" | "durable" | "gaps" | "duplicatesDropped" | "connects"
>;

/** The local model's reply to `text` as the `turn`-th user message of a session. */
export function expectedReply(text: string, turn: number): string {
  return `[local model] You said: "${text}". (message ${turn * 2} in this conversation)`;
}

export interface ConversationStats {
  sessions: number;
  /** Messages sent by the clients (each counted once, however often resent). */
  messages: number;
  /** Messages with exactly one reply, stored and delivered. */
  answered: number;
  /** Messages without exactly one reply somewhere (must be 0). */
  lost: number;
  /** Durable frames the clients dropped as duplicates (by seq). */
  duplicatesDropped: number;
  /** Resends answered with `duplicate: true` (the message had been stored before). */
  duplicateAccepts: number;
  /** Frames that carried a message again (reconnects, retryable errors). */
  resends: number;
  /** Sockets opened beyond the first per client. */
  reconnects: number;
}

interface EventRow {
  seq: number;
  type: string;
  request_id: string | null;
  text: string | null;
}

interface EffectRow {
  seq: number;
  event_seq: number | null;
  type: string;
  payload: { requestId?: string; content?: string; final?: boolean };
}

function textOf(message: BaseMessage): string {
  return typeof message.content === "string" ? message.content : JSON.stringify(message.content);
}

export async function auditConversations(
  db: Db,
  clients: readonly ClientBooks[],
): Promise<{ problems: string[]; stats: ConversationStats }> {
  const problems: string[] = [];
  for (const v of await verify(db)) problems.push(`verify: ${v.check} on ${v.sessionKey}: ${v.detail}`);
  const checkpointer = new SessiondCheckpointer(db);
  const stats: ConversationStats = {
    sessions: clients.length,
    messages: 0,
    answered: 0,
    lost: 0,
    duplicatesDropped: 0,
    duplicateAccepts: 0,
    resends: 0,
    reconnects: 0,
  };

  for (const client of clients) {
    const key = client.sessionKey;
    const say = (what: string) => problems.push(`${key}: ${what}`);
    const events = await db.query<EventRow>(
      "select seq, type, request_id, payload->>'text' as text from sessiond.events where session_key = $1 order by seq",
      [key],
    );
    const effects = await db.query<EffectRow>(
      "select seq, event_seq, type, payload from sessiond.effects where session_key = $1 order by seq",
      [key],
    );
    const [cursor] = await db.query<{ last_seq: number; processed_seq: number; effect_seq: number }>(
      "select last_seq, processed_seq, effect_seq from sessiond.sessions where session_key = $1",
      [key],
    );
    const sent = [...client.sent.values()];
    stats.messages += sent.length;
    stats.duplicatesDropped += client.duplicatesDropped;
    stats.reconnects += Math.max(0, client.connects - 1);
    for (const message of sent) {
      stats.duplicateAccepts += message.duplicateAccepts;
      stats.resends += Math.max(0, message.sends - 1);
    }
    if (!cursor) {
      if (sent.length > 0) say(`no session row, yet ${sent.length} message(s) were sent`);
      stats.lost += sent.length;
      continue;
    }
    if (cursor.processed_seq !== cursor.last_seq) {
      say(`processed ${cursor.processed_seq} of ${cursor.last_seq} events`);
    }

    const eventByRequest = new Map(events.map((e) => [e.request_id, e]));
    const sentIds = new Set(sent.map((m) => m.requestId));
    for (const event of events) {
      if (event.type !== "user_message") say(`event ${event.seq} has type ${event.type}`);
      if (!sentIds.has(event.request_id ?? "")) say(`event ${event.seq} (${event.request_id}) was never sent`);
    }

    for (const message of sent) {
      const event = eventByRequest.get(message.requestId);
      const replies = client.replies.get(message.requestId) ?? [];
      let ok = true;
      if (!event) {
        say(`${message.requestId} was never stored`);
        ok = false;
      } else {
        if (message.eventSeq !== event.seq) {
          say(`${message.requestId}: accepted as ${message.eventSeq}, stored as ${event.seq}`);
          ok = false;
        }
        if (event.text !== message.text) say(`${message.requestId}: stored text ${JSON.stringify(event.text)}`);
        const expected = expectedReply(message.text, event.seq);
        const finals = effects.filter(
          (f) =>
            f.event_seq === event.seq &&
            (f.type === "error" || f.type === "interrupt" || (f.type === "send_message" && f.payload.final !== false)),
        );
        if (finals.length !== 1 || finals[0]?.type !== "send_message") {
          say(`event ${event.seq} has final replies ${JSON.stringify(finals.map((f) => [f.seq, f.type]))}`);
          ok = false;
        } else if (finals[0].payload.content !== expected) {
          say(`event ${event.seq} was answered ${JSON.stringify(finals[0].payload.content)}; expected ${expected}`);
          ok = false;
        }
        if (replies.length !== 1) {
          say(`${message.requestId} reached the client ${replies.length} times after dedupe`);
          ok = false;
        } else if (replies[0]?.type !== "message" || replies[0].content !== expected) {
          say(`${message.requestId}: the client got ${JSON.stringify(replies[0])}`);
          ok = false;
        }
      }
      if (ok) stats.answered += 1;
      else stats.lost += 1;
    }

    for (const gap of client.gaps) say(`gap: ${gap}`);
    const kept = client.durable.map((f) => f.seq);
    const wanted = Array.from({ length: cursor.effect_seq }, (_, i) => i + 1);
    if (JSON.stringify(kept) !== JSON.stringify(wanted)) {
      say(
        `the client kept seqs ${JSON.stringify(kept.slice(0, 20))}… (${kept.length}); effect_seq is ${cursor.effect_seq}`,
      );
    }

    // The checkpoint: each user message once, in order, each answered once.
    const tuple = await checkpointer.getTuple({ configurable: { thread_id: key, checkpoint_ns: "" } });
    const messages = ((tuple?.checkpoint.channel_values as { messages?: BaseMessage[] } | undefined)?.messages ??
      []) as BaseMessage[];
    const humans = messages.filter((m) => m.getType() === "human").map(textOf);
    const ais = messages.filter((m) => m.getType() === "ai").map(textOf);
    const storedTexts = events.map((e) => e.text ?? "");
    if (JSON.stringify(humans) !== JSON.stringify(storedTexts)) {
      say(`checkpoint holds ${humans.length} user message(s), the session ${storedTexts.length}, or not in order`);
    }
    const wantedReplies = events.map((e) => expectedReply(e.text ?? "", e.seq));
    if (JSON.stringify(ais) !== JSON.stringify(wantedReplies)) {
      say(`checkpoint holds ${ais.length} repl(ies) for ${events.length} message(s), or not the expected ones`);
    }
    const [inputs] = await db.query<{ n: number }>(
      "select count(*)::int as n from sessiond.checkpoints where thread_id = $1 and checkpoint_ns = '' and metadata->>'source' = 'input'",
      [key],
    );
    if (inputs?.n !== events.length) say(`${inputs?.n} input checkpoints for ${events.length} message(s)`);
  }
  return { problems, stats };
}
