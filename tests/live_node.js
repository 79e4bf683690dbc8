// The shipped JS client under Node (20+, --experimental-websocket): driven by
// tests/test_live_node.py.  Prints one JSON line per event on stdout.
"use strict";
const TriowsLive = require(process.argv[2]);
const [url, countText] = process.argv.slice(3);
const count = Number(countText);

function say(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const live = new TriowsLive(url, { minDelay: 20, maxDelay: 100 });
const received = [];
const gaps = [];
live.on("state", (state, detail) => say({ state, code: detail.code ?? null }));
live.subscribe("seq", {
  onSubscribed: (info) => say({ subscribed: info.recovered }),
  onGap: (gap) => gaps.push(gap),
  onMessage: (data) => {
    received.push(data);
    if (received.length === count) {
      say({ done: received, gaps });
      live.close();
    }
  },
});
// Published once, acknowledged once, however many reconnections happen meanwhile.
live.publish("from-node", { hello: "node" }).then((ack) => say({ ack }));
