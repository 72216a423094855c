// A flooding client, run in a worker thread so that its busy loop shares no
// event loop with the client whose latency the test measures. It sends
// `message` frames as fast as its socket takes them (a batch per turn of the
// event loop) or, with `perSecond`, at that rate; reconnects whenever it is
// cut off, and posts its counts back when told to stop. Plain JavaScript: a
// worker does not go through vitest's TypeScript transform.
import { parentPort, workerData } from "node:worker_threads";
import WebSocket from "ws";

const { url, token, perSecond } = workerData;
const started = Date.now();
const stats = { sent: 0, accepted: 0, rateLimited: 0, otherErrors: 0, closes: [] };
let stopped = false;
let ws;

function open() {
  if (stopped) return;
  const socket = new WebSocket(url, ["sessiond.v1"], { headers: { authorization: `Bearer ${token}` } });
  ws = socket;
  socket.on("message", (data) => {
    const frame = JSON.parse(data.toString());
    if (frame.type === "accepted") stats.accepted += 1;
    else if (frame.type === "error" && frame.code === "rate_limited") stats.rateLimited += 1;
    else if (frame.type === "error") stats.otherErrors += 1;
  });
  socket.on("open", () => {
    const pump = () => {
      if (stopped || socket.readyState !== WebSocket.OPEN) return;
      const due = perSecond ? Math.floor(((Date.now() - started) * perSecond) / 1000) - stats.sent : 50;
      for (
        let i = 0;
        i < Math.min(due, 50) && socket.bufferedAmount < 16_384 && socket.readyState === WebSocket.OPEN;
        i++
      ) {
        stats.sent += 1;
        socket.send(JSON.stringify({ type: "message", requestId: `flood-${stats.sent}`, text: `flood ${stats.sent}` }));
      }
      if (perSecond) setTimeout(pump, 5);
      else setImmediate(pump);
    };
    pump();
  });
  socket.on("error", () => {});
  socket.on("close", (code) => {
    if (!stopped) stats.closes.push(code);
    setTimeout(open, 20);
  });
}

parentPort.on("message", (message) => {
  if (message !== "stop") return;
  stopped = true;
  ws?.terminate();
  parentPort.postMessage(stats);
});
open();
