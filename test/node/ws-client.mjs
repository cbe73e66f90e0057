// A herald WebSocket client written against docs/protocol.md with the npm
// `ws` package, driven by internal/server/ws_node_test.go:
//
//   node ws-client.mjs ws://127.0.0.1:PORT/v1/ws TOPIC
//
// It prints one JSON line per step on stdout, and reads one line on stdin
// when it waits for the test. The steps:
//
//  1. connect; check the welcome; a bad command gets an error frame with
//     its id; subscribe to TOPIC (and see its own join: presence is on);
//  2. publish events 1..5 over the WebSocket, each acknowledged, each
//     received once as an event carrying topic, offset, epoch, type, data
//     and cursor; print {"step":"published"};
//  3. the test shuts the server down: the connection closes with 1001
//     shutting_down; print {"step":"closed"}; the test starts a new server
//     on the same port with events 6..8 already in history;
//  4. reconnect (with backoff) and subscribe with the cursor of the last
//     event received: 6..8 come from history;
//  5. publish 9 and 10 over the WebSocket, then an event of type "done";
//     when it arrives the list is final: print {"step":"result",...} with
//     every event's data, in order.
import WebSocket from "ws";
import { createInterface } from "node:readline";

const [url, topic] = process.argv.slice(2);
const problems = [];
const received = []; // data of every event, in arrival order
let lastCursor = "";
let client = "";

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (msg) => {
  problems.push(msg);
  print({ step: "result", ok: false, problems, received });
  process.exit(1);
};
setTimeout(() => fail("timed out"), 60_000).unref();

const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => waiting.shift()?.(l));
const nextLine = () => new Promise((resolve) => waiting.push(resolve));

// connect opens a connection and resolves with a small message queue.
function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const queue = [];
    const takers = [];
    let closed = null;
    ws.on("message", (data, isBinary) => {
      if (isBinary) return fail("a binary message from the server");
      let m;
      try {
        m = JSON.parse(data.toString("utf8"));
      } catch (e) {
        return fail("a message that is not JSON: " + data);
      }
      if (takers.length) takers.shift()(m);
      else queue.push(m);
    });
    ws.on("close", (code, reason) => {
      closed = { code, reason: reason.toString() };
      while (takers.length) takers.shift()(null);
    });
    ws.on("error", (err) => reject(err));
    ws.on("open", () => {
      const next = () =>
        new Promise((res) => (queue.length ? res(queue.shift()) : closed ? res(null) : takers.push(res)));
      resolve({ ws, next, closedInfo: () => closed });
    });
  });
}

// expectOp reads messages until one with op (events are recorded on the
// way, presence notices skipped).
async function expectOp(c, op) {
  for (;;) {
    const m = await c.next();
    if (m === null) return fail(`connection closed waiting for ${op}: ${JSON.stringify(c.closedInfo())}`);
    if (m.op === op) return m;
    if (m.op === "event") record(m);
    else if (m.op !== "join" && m.op !== "leave") return fail(`got ${JSON.stringify(m)} waiting for ${op}`);
  }
}

function record(m) {
  for (const f of ["topic", "offset", "epoch", "time", "encoding", "cursor"]) {
    if (m[f] === undefined || m[f] === "") fail(`event without ${f}: ${JSON.stringify(m)}`);
  }
  if (m.topic !== topic) fail(`event of topic ${m.topic}`);
  lastCursor = m.cursor;
  received.push({ data: m.data, offset: m.offset, type: m.type ?? "" });
}

let nextId = 100;
function send(c, cmd) {
  const id = nextId++;
  c.ws.send(JSON.stringify({ ...cmd, id }));
  return id;
}

async function publish(c, data, type) {
  const id = send(c, { op: "publish", topic, text: data, ...(type ? { type } : {}) });
  const ack = await expectOp(c, "ack");
  if (ack.id !== id || ack.topic !== topic || !ack.cursor || typeof ack.offset !== "number") {
    fail(`ack ${JSON.stringify(ack)} for publish ${id}`);
  }
  return ack;
}

// 1. Connect, welcome, an error frame, subscribe.
let c = await connect();
const welcome = await c.next();
if (welcome?.op !== "welcome" || !welcome.client || welcome.protocol !== 1) fail(`welcome ${JSON.stringify(welcome)}`);
client = welcome.client;
const badId = send(c, { op: "subscribe", topics: ["a..b"] });
const err = await expectOp(c, "error");
if (err.id !== badId || err.code !== "bad_topic" || !err.message) fail(`error ${JSON.stringify(err)}`);
const subId = send(c, { op: "subscribe", topics: [topic], presence: { name: "node" } });
const sub = await expectOp(c, "subscribed");
if (sub.id !== subId || sub.topics?.[0]?.topic !== topic || !sub.cursor) fail(`subscribed ${JSON.stringify(sub)}`);
lastCursor = sub.cursor;
const join = await expectOp(c, "join");
if (join.client !== client || join.info?.name !== "node") fail(`join ${JSON.stringify(join)}`);

// 2. Publish 1..5 over the WebSocket.
for (let i = 1; i <= 5; i++) await publish(c, String(i));
while (received.length < 5) {
  const m = await c.next();
  if (m === null) fail("closed before events 1..5 arrived");
  if (m.op === "event") record(m);
}
print({ step: "published", client });

// 3. The test shuts the server down.
{
  const m = await c.next();
  if (m !== null) fail(`got ${JSON.stringify(m)} waiting for the close`);
  const { code, reason } = c.closedInfo();
  if (code !== 1001 || !reason.startsWith("shutting_down: ")) fail(`closed with ${code} ${reason}`);
  print({ step: "closed", code, reason });
}
await nextLine(); // the new server listens

// 4. Reconnect and resume from the last event's cursor.
for (let attempt = 0; ; attempt++) {
  try {
    c = await connect();
    break;
  } catch (e) {
    if (attempt > 50) fail("could not reconnect: " + e);
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
  }
}
await expectOp(c, "welcome");
const resumeId = send(c, { op: "subscribe", topics: [topic], cursors: [lastCursor] });
const resumed = await expectOp(c, "subscribed");
if (resumed.id !== resumeId || resumed.topics?.[0]?.offset !== 5) fail(`resume reply ${JSON.stringify(resumed)}`);

// 5. 9, 10 and done over the WebSocket; wait for done.
await publish(c, "9");
await publish(c, "10");
await publish(c, "end", "done");
while (!received.some((e) => e.type === "done")) {
  const m = await c.next();
  if (m === null) fail("closed before the done event");
  if (m.op === "event") record(m);
}
c.ws.close(1000, "bye");
const data = received.filter((e) => e.type !== "done").map((e) => e.data);
const offsets = received.map((e) => e.offset);
print({ step: "result", ok: problems.length === 0, problems, data, offsets });
process.exit(0);
