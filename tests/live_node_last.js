// The shipped JS client under Node asking for a topic's newest messages
// (`last`), then resuming across drops: driven by tests/test_live_last.py.
// Prints one JSON line per event on stdout.
"use strict";
const TriowsLive = require(process.argv[2]);
const [url, topic, lastText, countText] = process.argv.slice(3);
const count = Number(countText);

function say(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const live = new TriowsLive(url, { minDelay: 20, maxDelay: 100 });
const received = [];
const gaps = [];
live.subscribe(topic, {
  last: Number(lastText),
  onSubscribed: (info) => say({ subscribed: info.recovered, position: info.position }),
  onGap: (gap) => gaps.push(gap),
  onMessage: (data) => {
    received.push(data);
    say({ received: data });
    if (received.length === count) {
      say({ done: received, gaps });
      live.close();
    }
  },
});
