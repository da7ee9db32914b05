// A Foxglove client driven by the Rust tests: Foxglove's own client library
// (@foxglove/ws-protocol 0.8.0) over the `ws` WebSocket, on Node.
//
//   node client.cjs URL [ORIGIN]
//
// Reads commands from stdin, one JSON object a line; writes what happens to stdout, one
// JSON object a line. Exits when stdin ends (the test is gone) or on {"cmd":"exit"}.
//
// Commands: subscribe {topics}, unsubscribe {topics}, get {names, id}, set {id},
// raw {text} (sent as it is), binary (a client message data frame), exit.
// Events: open, serverInfo, advertise, unadvertise, status, parameterValues,
// subscribed {topic, subscription}, message {subscription, topic, timestamp, data},
// error {message}, close {code}.
"use strict";

const { FoxgloveClient } = require("@foxglove/ws-protocol");
const WebSocket = require("ws");
const readline = require("readline");

const [url, origin] = process.argv.slice(2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const ws = new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL], origin ? { origin } : {});
const client = new FoxgloveClient({ ws });
const channels = new Map(); // topic -> channel
const topics = new Map(); // channel id -> topic
const subscriptions = new Map(); // topic -> subscription id
const subscribed = new Map(); // subscription id -> topic
const decoder = new TextDecoder();

client.on("open", () => emit({ event: "open", protocol: ws.protocol }));
client.on("error", (error) => emit({ event: "error", message: String(error && error.message) }));
client.on("close", (event) => {
  emit({ event: "close", code: event.code });
});
client.on("serverInfo", (info) => emit({ event: "serverInfo", info }));
client.on("status", (status) => emit({ event: "status", status }));
client.on("advertise", (list) => {
  for (const channel of list) {
    channels.set(channel.topic, channel);
    topics.set(channel.id, channel.topic);
  }
  emit({ event: "advertise", channels: list });
});
client.on("unadvertise", (ids) => emit({ event: "unadvertise", ids }));
client.on("parameterValues", (values) => emit({ event: "parameterValues", values }));
client.on("message", ({ subscriptionId, timestamp, data }) => {
  const text = decoder.decode(data);
  emit({
    event: "message",
    subscription: subscriptionId,
    topic: subscribed.get(subscriptionId) ?? null,
    timestamp: timestamp.toString(),
    data: JSON.parse(text),
  });
});

function run(command) {
  switch (command.cmd) {
    case "subscribe":
      for (const topic of command.topics) {
        const channel = channels.get(topic);
        if (!channel) {
          emit({ event: "error", message: `no channel ${topic}` });
          continue;
        }
        const id = client.subscribe(channel.id);
        subscriptions.set(topic, id);
        subscribed.set(id, topic);
        emit({ event: "subscribed", topic, subscription: id });
      }
      break;
    case "unsubscribe":
      for (const topic of command.topics) {
        const id = subscriptions.get(topic);
        client.unsubscribe(id);
        subscriptions.delete(topic);
        emit({ event: "unsubscribed", topic, subscription: id });
      }
      break;
    case "get":
      client.getParameters(command.names, command.id);
      break;
    case "set":
      client.setParameters([{ name: "sine", value: 1.5 }], command.id);
      break;
    case "raw":
      ws.send(command.text);
      break;
    case "binary":
      client.sendMessage(1, new Uint8Array([1, 2, 3]));
      break;
    case "exit":
      process.exit(0);
      break;
    default:
      emit({ event: "error", message: `unknown command ${command.cmd}` });
  }
}

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  try {
    run(JSON.parse(line));
  } catch (error) {
    emit({ event: "error", message: String(error && error.message) });
  }
});
input.on("close", () => process.exit(0));
