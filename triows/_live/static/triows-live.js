/*
 * triows-live.js: the client of triows' live protocol (docs/protocol.md).
 *
 * One file, no dependencies, no build step: load it with
 *   <script src="/live/triows-live.js"></script>
 * (it defines the global `TriowsLive`), or require() it under Node (pass
 * `{WebSocket}` where there is no global one).
 *
 * What it guarantees: it reconnects after any drop (exponential backoff with
 * jitter; a server's 1012 "Service Restart" or 1001 "Going Away" included),
 * resumes every topic from the last position it received (the server replays
 * what was missed, or says `recovered: false`: a gap), and keeps publishes
 * made while offline in an outbox, sent once reconnected.  A publish stays in
 * the outbox until the server acknowledges it; one resent after a reconnect
 * carries the same id, and the server publishes it only once.
 */
(function (root, factory) {
  "use strict";
  const TriowsLive = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = TriowsLive;
  } else {
    root.TriowsLive = TriowsLive;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  // Close codes that say "do not come back": the server refused this client or
  // its messages, and a reconnection would only be refused again.
  const FINAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010]);
  // How long a publish refused with "unavailable" (the hub's engine is down)
  // waits before it is sent again on the same connection, in ms.
  const UNAVAILABLE_RETRY = 1000;

  function randomId() {
    const bytes = new Uint8Array(9);
    globalThis.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function resolveUrl(url) {
    if (/^wss?:\/\//.test(url)) return url;
    const location = globalThis.location;
    if (!location) throw new Error(`TriowsLive: "${url}" needs a ws:// or wss:// URL here`);
    const absolute = new URL(url, location.href);
    absolute.protocol = absolute.protocol === "https:" ? "wss:" : "ws:";
    return absolute.href;
  }

  function decodeData(frame) {
    if (frame.encoding !== "base64") return frame.data;
    const text = globalThis.atob(frame.data);
    return Uint8Array.from(text, (c) => c.charCodeAt(0));
  }

  /** One followed topic: its last position, its members, its callbacks. */
  class Topic {
    constructor(client, name, options) {
      this.client = client;
      this.name = name;
      /** The position of the last message received (resume from here). */
      this.position = options.since ?? null;
      /** Presence: {key: info} of the topic's members (with `presence: true`). */
      this.members = {};
      this.presence = Boolean(options.presence);
      this.options = options;
      this.active = true;
      // Until the server first confirms the subscription, a topic without a
      // position asks for its `last` newest messages (once: later subscribes resume).
      this.confirmed = false;
    }

    unsubscribe() {
      this.client._unsubscribe(this);
    }

    _call(name, ...args) {
      const callback = this.options[name];
      if (callback) {
        try {
          callback(...args);
        } catch (error) {
          this.client._emit("error", { code: "callback", message: String(error), error });
        }
      }
    }
  }

  class TriowsLive {
    /**
     * `url`: the live route (a path such as "/live" resolves against the page).
     * Options: `minDelay`/`maxDelay` (ms, the reconnection backoff),
     * `WebSocket` (a constructor, for Node), `connect: false` (call connect()).
     */
    constructor(url, options = {}) {
      this.url = resolveUrl(url);
      this.minDelay = options.minDelay ?? 250;
      this.maxDelay = options.maxDelay ?? 10000;
      this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
      /** "connecting", "open", "reconnecting" or "closed". */
      this.state = "closed";
      /** What the server's identify hook said of this client ({key, info} or null). */
      this.identity = null;
      this.topics = new Map();
      this._outbox = [];
      this._listeners = new Map();
      this._socket = null;
      this._timer = null;
      this._attempt = 0;
      this._stopped = false;
      this._prefix = randomId();
      this._counter = 0;
      // Back online: do not wait out the backoff.
      this._online = () => {
        if (this.state === "reconnecting") this._connectNow();
      };
      if (options.connect !== false) this.connect();
    }

    /** Listen to "state" (state, detail) and "error" (error frame) events. */
    on(event, callback) {
      if (!this._listeners.has(event)) this._listeners.set(event, []);
      this._listeners.get(event).push(callback);
      return this;
    }

    off(event, callback) {
      const list = this._listeners.get(event) || [];
      const index = list.indexOf(callback);
      if (index >= 0) list.splice(index, 1);
      return this;
    }

    /**
     * Follow `topic`.  Options: `since` (a position to resume from),
     * `last` (without `since`: first receive the topic's newest messages, at
     * most `last` and what the server's history holds; a new page's recent
     * messages), `presence` (join the member list and follow it), and callbacks
     * `onMessage(data, {topic, position})`, `onSubscribed({position, recovered})`,
     * `onGap({position, reason})`, `onPresence(members, {joined, left})`,
     * `onError(error)`.
     */
    subscribe(topic, options = {}) {
      if (this.topics.has(topic)) {
        throw new Error(`TriowsLive.subscribe: "${topic}" is followed already; unsubscribe first`);
      }
      const followed = new Topic(this, topic, options);
      this.topics.set(topic, followed);
      if (this.state === "open") this._sendSubscribe(followed);
      return followed;
    }

    /**
     * Publish `data` (any JSON value) to `topic`.  Resolves with
     * {position, duplicate} once the server published it; rejects with the
     * server's error frame if it refused (forbidden, invalid data).  Offline, the
     * publish waits in the outbox and is sent once connected.
     */
    publish(topic, data) {
      return new Promise((resolve, reject) => {
        this._counter += 1;
        const entry = { id: `${this._prefix}-${this._counter}`, topic, data, resolve, reject };
        this._outbox.push(entry);
        if (this.state === "open") this._sendPublish(entry);
      });
    }

    /** How many publishes wait for the server's acknowledgement. */
    get pending() {
      return this._outbox.length;
    }

    connect() {
      this._stopped = false;
      if (typeof globalThis.addEventListener === "function") {
        globalThis.removeEventListener("online", this._online);
        globalThis.addEventListener("online", this._online);
      }
      if (this._socket === null && this._timer === null) this._connectNow();
    }

    /** Close for good: no reconnection; queued publishes stay queued. */
    close() {
      this._stopped = true;
      if (typeof globalThis.removeEventListener === "function") {
        globalThis.removeEventListener("online", this._online);
      }
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
      const socket = this._socket;
      this._socket = null;
      if (socket) socket.close(1000);
      this._setState("closed", { code: 1000, reason: "closed by the client" });
    }

    // -- the connection ------------------------------------------------------------

    _emit(event, ...args) {
      for (const callback of this._listeners.get(event) || []) {
        try {
          callback(...args);
        } catch (error) {
          if (event !== "error") this._emit("error", { code: "callback", message: String(error), error });
        }
      }
    }

    _setState(state, detail = {}) {
      if (this.state === state && state !== "reconnecting") return;
      this.state = state;
      this._emit("state", state, detail);
    }

    _connectNow() {
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
      this._setState("connecting", { attempt: this._attempt });
      let socket;
      try {
        socket = new this.WebSocket(this.url);
      } catch (error) {
        this._emit("error", { code: "connect", message: String(error), error });
        this._retry({ code: 1006, reason: String(error) });
        return;
      }
      this._socket = socket;
      socket.onmessage = (event) => {
        if (socket === this._socket) this._receive(event.data);
      };
      socket.onclose = (event) => {
        if (socket !== this._socket) return;
        this._socket = null;
        this._retry({ code: event.code, reason: event.reason });
      };
      socket.onerror = () => {};
    }

    _retry(detail) {
      if (this._stopped) return;
      if (FINAL_CLOSE_CODES.has(detail.code)) {
        this._stopped = true;
        this._setState("closed", detail);
        return;
      }
      // Exponential backoff with jitter: half the delay fixed, half random, so
      // clients dropped together (a deploy) do not come back together.
      const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this._attempt);
      const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
      this._attempt += 1;
      this._setState("reconnecting", { ...detail, attempt: this._attempt, delay });
      this._timer = setTimeout(() => {
        this._timer = null;
        this._connectNow();
      }, delay);
    }

    _send(frame) {
      this._socket.send(JSON.stringify(frame));
    }

    _sendSubscribe(topic) {
      const frame = { type: "subscribe", topic: topic.name, since: topic.position };
      if (topic.position === null && !topic.confirmed && topic.options.last) {
        frame.last = topic.options.last;
      }
      if (topic.presence) frame.presence = true;
      this._send(frame);
    }

    _sendPublish(entry) {
      this._send({ type: "publish", topic: entry.topic, id: entry.id, data: entry.data });
    }

    _unsubscribe(topic) {
      if (this.topics.get(topic.name) !== topic) return;
      this.topics.delete(topic.name);
      topic.active = false;
      if (this.state === "open") this._send({ type: "unsubscribe", topic: topic.name });
    }

    _opened(frame) {
      this._attempt = 0;
      this.identity = frame.identity;
      this._setState("open", { identity: frame.identity });
      // Every topic resumes where it stopped, then the outbox goes out in order.
      for (const topic of this.topics.values()) this._sendSubscribe(topic);
      for (const entry of this._outbox) this._sendPublish(entry);
    }

    _receive(data) {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch (error) {
        this._emit("error", { code: "bad_frame", message: `not JSON: ${String(data).slice(0, 100)}` });
        return;
      }
      const topic = frame.topic === undefined ? undefined : this.topics.get(frame.topic);
      switch (frame.type) {
        case "message":
          if (topic) {
            topic.position = frame.position;
            topic._call("onMessage", decodeData(frame), { topic: frame.topic, position: frame.position });
          }
          break;
        case "welcome":
          this._opened(frame);
          break;
        case "subscribed":
          if (topic) {
            const resumed = topic.position !== null;
            topic.position = frame.position;
            topic.confirmed = true;
            topic._call("onSubscribed", { position: frame.position, recovered: frame.recovered });
            if (resumed && frame.recovered === false) {
              topic._call("onGap", { position: frame.position, reason: "history" });
            }
          }
          break;
        case "gap":
          if (topic) {
            topic.position = frame.position;
            topic._call("onGap", { position: frame.position, reason: frame.reason || "overflow" });
          }
          break;
        case "presence":
          if (topic) {
            topic.members = { ...frame.members };
            topic._call("onPresence", topic.members, { joined: frame.members, left: {} });
          }
          break;
        case "presence_change":
          if (topic) {
            for (const key of Object.keys(frame.left)) delete topic.members[key];
            Object.assign(topic.members, frame.joined);
            topic._call("onPresence", topic.members, { joined: frame.joined, left: frame.left });
          }
          break;
        case "ack":
          this._acknowledged(frame);
          break;
        case "error":
          this._refused(frame, topic);
          break;
        default:
          break; // a newer server's frame: ignored
      }
    }

    _acknowledged(frame) {
      const index = this._outbox.findIndex((entry) => entry.id === frame.id);
      if (index < 0) return;
      const [entry] = this._outbox.splice(index, 1);
      entry.resolve({ position: frame.position, duplicate: Boolean(frame.duplicate) });
    }

    _refused(frame, topic) {
      this._emit("error", frame);
      if (frame.id !== undefined) {
        const entry = this._outbox.find((e) => e.id === frame.id);
        if (!entry) return;
        if (frame.code === "unavailable") {
          const socket = this._socket;
          setTimeout(() => {
            if (socket === this._socket && this.state === "open" && this._outbox.includes(entry)) {
              this._sendPublish(entry);
            }
          }, UNAVAILABLE_RETRY);
          return;
        }
        this._outbox.splice(this._outbox.indexOf(entry), 1);
        entry.reject(frame);
        return;
      }
      if (topic && frame.action === "subscribe") {
        if (frame.code === "unavailable") {
          const socket = this._socket;
          setTimeout(() => {
            if (socket === this._socket && topic.active) this._sendSubscribe(topic);
          }, UNAVAILABLE_RETRY);
          return;
        }
        if (frame.code === "invalid_position") {
          // A position this server cannot read: follow from now, and say so.
          topic.position = null;
          topic.confirmed = true; // from now: no `last` replay after a gap
          topic._call("onGap", { position: null, reason: "invalid_position" });
          this._sendSubscribe(topic);
          return;
        }
        this.topics.delete(topic.name);
        topic.active = false;
        topic._call("onError", frame);
      }
    }
  }

  TriowsLive.Topic = Topic;
  return TriowsLive;
});
