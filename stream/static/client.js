// The callstream WebSocket protocol for a page: config, session, audio, and resume after a drop.
//
// Audio is kept from the frame the server last confirmed, so that after a dropped connection the
// client reconnects with its session id and resends from the offset the server reports; the
// server skips what it already has and the open utterance goes on unbroken.

const RETRY_MS = [250, 500, 1000, 2000, 4000];
// Characters allowed in a Sec-WebSocket-Protocol value (an HTTP token); other tokens go in the query.
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export class CaptionClient {
  /**
   * @param {object} options
   * @param {string} options.url        ws:// or wss:// URL of the server
   * @param {string} [options.token]    access token, if the server has one
   * @param {object} options.config     the config message's fields (sample_rate, encoding, channels, ...)
   * @param {(event: object) => void} options.onEvent   every server message, parsed
   * @param {(status: object) => void} options.onStatus {state, sessionId, resumes, attempt, message}
   */
  constructor({ url, token = "", config, onEvent, onStatus }) {
    Object.assign(this, { url, token, config, onEvent, onStatus });
    this.channels = config.channels ?? 1;
    this.frames = 0; // sample frames pushed so far: the stream position of the next audio
    this.chunks = []; // [{start, data}] audio kept for a resend, data interleaved Int16Array
    this.pushTimes = []; // [frame after the chunk, performance.now() when it was pushed]
    this.keepFrames = 60 * config.sample_rate;
    this.sessionId = null;
    this.graceS = 0; // how long the server holds the session after a drop
    this.resumes = 0;
    this.attempt = 0;
    this.live = false; // the current socket has its session event: audio goes out as it comes
    this.ending = false;
    this.done = false;
    this.droppedAt = null;
    this.lastError = null;
    this.ws = null;
  }

  start() {
    this._status("connecting");
    this._connect();
  }

  /** Interleaved PCM16 frames, in stream order. */
  pushAudio(data) {
    this.chunks.push({ start: this.frames, data });
    this.frames += data.length / this.channels;
    this.pushTimes.push([this.frames, performance.now()]);
    while (this.chunks.length > 1 && this.frames - this.chunks[1].start > this.keepFrames) this.chunks.shift();
    while (this.pushTimes.length > 1 && this.frames - this.pushTimes[0][0] > this.keepFrames) this.pushTimes.shift();
    if (this.live) this.ws.send(data);
  }

  /** When (performance.now()) the audio at stream time ``seconds`` was pushed. */
  pushTime(seconds) {
    const frame = seconds * this.config.sample_rate;
    const hit = this.pushTimes.find(([end]) => end >= frame);
    return (hit ?? this.pushTimes[this.pushTimes.length - 1] ?? [0, performance.now()])[1];
  }

  /** Ends the current utterance now; the stream stays open. */
  finalize() {
    if (this.live) this.ws.send(JSON.stringify({ type: "finalize" }));
  }

  /** Flushes and ends the stream; after a drop, once the session is resumed. */
  end() {
    this.ending = true;
    if (this.live) this.ws.send(JSON.stringify({ type: "end" }));
  }

  /** Gives up at once, without waiting for the last finals. */
  abort() {
    this.done = true;
    this.ws?.close(1000, "client abort");
  }

  _connect() {
    const protocols = ["callstream"];
    let url = this.url;
    if (this.token && HTTP_TOKEN.test(this.token)) protocols.push(`token.${this.token}`);
    else if (this.token) url += `${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(this.token)}`;
    const ws = new WebSocket(url, protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.live = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      const resume = this.sessionId ? { session_id: this.sessionId } : {};
      ws.send(JSON.stringify({ type: "config", ...this.config, ...resume }));
    };
    ws.onmessage = (m) => { if (ws === this.ws) this._message(JSON.parse(m.data)); };
    ws.onclose = (e) => { if (ws === this.ws) this._closed(e, opened); };
  }

  _message(msg) {
    if (msg.type === "session") {
      const resumed = msg.resumed;
      this.sessionId = msg.session_id;
      this.graceS = msg.grace_s;
      this.keepFrames = (Math.max(msg.grace_s, 0) + 10) * this.config.sample_rate;
      this.droppedAt = null;
      this.attempt = 0;
      if (resumed) this.resumes += 1;
      this.live = true;
      for (const { start, data } of this.chunks) {
        const end = start + data.length / this.channels;
        if (end > msg.offset) this.ws.send(data.subarray(Math.max(0, msg.offset - start) * this.channels));
      }
      if (this.ending) this.ws.send(JSON.stringify({ type: "end" }));
      this._status("connected");
    } else if (msg.type === "error") {
      this.lastError = msg;
    } else if (msg.type === "end") {
      this.done = true;
    }
    this.onEvent(msg);
  }

  _closed(event, opened) {
    this.live = false;
    if (this.done) {
      this._status("ended");
      return;
    }
    if (this.lastError?.fatal) {
      this._status("failed", this.lastError.message);
      return;
    }
    if (!this.sessionId) {
      this._status("failed", opened
        ? `the server closed the connection (${event.code} ${event.reason})`
        : "could not connect: the server is down, the token is wrong, or this page's origin is not allowed");
      return;
    }
    this.droppedAt ??= performance.now();
    if (performance.now() - this.droppedAt > this.graceS * 1000) {
      this._status("failed", `the connection was lost for longer than the server holds a session (${this.graceS} s)`);
      return;
    }
    this.attempt += 1;
    this._status("reconnecting");
    setTimeout(() => { if (!this.done) this._connect(); }, RETRY_MS[Math.min(this.attempt, RETRY_MS.length) - 1]);
  }

  _status(state, message = "") {
    this.onStatus({ state, sessionId: this.sessionId, resumes: this.resumes, attempt: this.attempt, message });
  }
}
