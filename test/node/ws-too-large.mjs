// Sends one message over the server's ws.max_message_bytes on each of
// ROUNDS connections and prints the close code each connection saw, as
// one JSON line: {"codes":[1009,...],"reasons":["too_large: ...",...]}.
// Driven by internal/server/edges_node_test.go:
//
//   node ws-too-large.mjs ws://127.0.0.1:PORT/v1/ws BYTES ROUNDS
//
// A server that closes the socket while the message is still arriving
// resets the connection, and the client sees 1006 (no close frame)
// instead of the 1009 too_large the protocol promises.
import WebSocket from "ws";

const [url, bytes, rounds] = process.argv.slice(2);
const payload = "x".repeat(Number(bytes));
setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: "timed out" }) + "\n");
  process.exit(1);
}, 120_000).unref();

function once() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on("error", () => {}); // the close event reports the outcome
    ws.on("message", () => {
      // The welcome: now send the oversized message.
      ws.send(JSON.stringify({ op: "publish", id: 1, topic: "big", text: payload }));
    });
    ws.on("close", (code, reason) => resolve([code, reason.toString()]));
  });
}

const codes = [];
const reasons = [];
for (let i = 0; i < Number(rounds); i++) {
  const [code, reason] = await once();
  codes.push(code);
  reasons.push(reason);
}
process.stdout.write(JSON.stringify({ codes, reasons }) + "\n");
