/**
 * Found by the hostile-input chaos suite (test/chaos/fuzz.e2e.test.ts), each
 * answered `internal` (HTTP 500) or leaked an internal before its fix:
 *
 * - a NUL character in a requestId or a text: Postgres text cannot hold one
 *   (22021) and jsonb refuses `\u0000` (22P05); now `bad_frame`;
 * - an answer whose value nests thousands of levels deep overflowed the
 *   serialiser's stack on the way to the database; now refused at the edge
 *   (`bad_frame`, at most 64 levels);
 * - a failed run told the client the error's class and text (e.g.
 *   "EmptyInputError: Received empty Command input", or a driver message
 *   naming the database); the failure frame now says what happened in plain
 *   words, and the detail stays in event_outcomes.error for operators.
 */
import { expect, it } from "vitest";
import { useServers } from "../server/fixture.js";
import { leak } from "../support/chaos/hostile.js";
import { describeEachDb } from "../support/db.js";
import { uniqueKey } from "../support/sessions.js";
import { eventually } from "../support/wait.js";

const deep = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;

describeEachDb("hostile frames found by the fuzzer", (t) => {
  const s = useServers(t);

  it("NUL characters and deep values are bad frames, over WebSocket and HTTP", async () => {
    const server = await s.start();
    const key = uniqueKey("nul");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "a\u0000b", text: "hi" });
    client.send({ type: "message", requestId: "n2", text: "x\u0000y" });
    client.send({ type: "answer", requestId: "n3", value: { note: "\u0000" } });
    client.send(`{"type":"answer","requestId":"n4","value":${deep(65)}}`);
    client.send(`{"type":"answer","requestId":"n5","value":${deep(20_000)}}`);
    client.send({ type: "answer", requestId: "n6", value: JSON.parse(deep(64)) });
    await client.waitFor((f) => f.requestId === "n6", { what: "the answer to the last frame" });
    // Schema refusals answer at once, database refusals after the frames before them: compare unordered.
    const answers = client.frames.filter((f) => f.type === "error" || f.type === "accepted");
    const outcomes = answers.map((f) => `${f.requestId ?? "-"} ${f.type === "error" ? f.code : f.type}`).sort();
    expect(outcomes).toEqual([
      "- bad_frame",
      "- bad_frame",
      "a\u0000b bad_frame",
      "n2 bad_frame",
      "n3 bad_frame",
      "n6 accepted",
    ]);
    expect(answers.filter((f) => String(f.message).includes("value nests deeper than 64 levels"))).toHaveLength(2);

    const post = async (path: string, body: string) => {
      const response = await fetch(`${server.url}/v1/sessions/${key}/${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${server.mintToken(key)}`, "content-type": "application/json" },
        body,
      });
      return { status: response.status, body: (await response.json()) as { code?: string } };
    };
    expect(await post("messages", JSON.stringify({ requestId: "h\u0000", text: "x" }))).toMatchObject({
      status: 400,
      body: { code: "bad_frame" },
    });
    expect(await post("messages", JSON.stringify({ requestId: "h2", text: "\u0000" }))).toMatchObject({
      status: 400,
      body: { code: "bad_frame" },
    });
    expect(await post("answers", `{"requestId":"h3","value":${deep(30_000)}}`)).toMatchObject({
      status: 400,
      body: { code: "bad_frame" },
    });
    // Nothing of it was stored but the one valid answer.
    const events = await t.db.query<{ request_id: string }>(
      "select request_id from sessiond.events where session_key = $1",
      [key],
    );
    expect(events.map((e) => e.request_id)).toEqual(["n6"]);
  });

  it("a failed run's failure frame names no internals; operators keep the detail", async () => {
    const server = await s.start();
    const key = uniqueKey("empty-answer");
    const client = await s.connect(server, key);
    // An answer with nothing to resume: LangGraph refuses the empty Command.
    client.send({ type: "answer", requestId: "a1", value: null });
    const failure = await client.waitForType("failure", "a1");
    expect(failure).toMatchObject({ code: "run_failed", message: "the agent could not answer this message" });
    expect(leak(JSON.stringify(failure))).toBeUndefined();
    const [outcome] = await eventually(() =>
      t.db.query<{ error: string }>("select error from sessiond.event_outcomes where session_key = $1", [key]),
    );
    expect(outcome?.error).toMatch(/EmptyInputError/);
  });
});
