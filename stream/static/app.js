// The caption page: settings, audio sources, status, rolling captions and downloads.

import { decodeFile, openMicrophone, playAtRealTime } from "./audio.js";
import { CaptionClient } from "./client.js";
import { Transcript, clock, displayWords, toSrt, toText, toVtt } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const ui = {
  micStart: $("mic-start"), stop: $("stop"), file: $("file-input"), message: $("message"),
  conn: $("conn-status"), session: $("session-id"), audio: $("audio-status"), latency: $("latency"),
  box: $("caption-box"), finals: $("finals"), partials: $("partials"),
  hotwords: $("hotwords"), endpoint: $("endpoint-silence"), mask: $("mask-profanity"),
  numbers: $("number-formatting"), token: $("token"),
  downloads: { txt: $("download-txt"), vtt: $("download-vtt"), srt: $("download-srt") },
};

// A token in the page's fragment (#token=...) fills the field; fragments never reach a server log.
const fragmentToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (fragmentToken) ui.token.value = fragmentToken;

let run = null; // {client, source, transcript, channels, utterances}

/** "phrase" or "phrase:weight" per line; weight 0 asks for the server's default boost. */
function parseHotwords(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const m = line.match(/^(.*?):\s*([0-9]*\.?[0-9]+)$/);
    return m ? [m[1].trim(), Number(m[2])] : [line, 0];
  });
}

function streamConfig(sampleRate, channels) {
  const config = {
    sample_rate: sampleRate, encoding: "pcm16", channels, interim_results: true,
    hotwords: parseHotwords(ui.hotwords.value), mask_profanity: ui.mask.checked,
    number_formatting: ui.numbers.checked,
  };
  if (ui.endpoint.value !== "") config.endpoint_silence_s = Number(ui.endpoint.value);
  return config;
}

function serverUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
}

function setStatus({ state, sessionId, resumes, attempt, message }) {
  const label = {
    connecting: "connecting",
    connected: resumes ? `connected (resumed ${resumes}×)` : "connected",
    reconnecting: `reconnecting (attempt ${attempt})`,
    ended: "ended",
    failed: "failed",
  }[state];
  ui.conn.textContent = label;
  ui.conn.dataset.state = state;
  ui.session.textContent = sessionId ?? "none";
  if (message) ui.message.textContent = message;
  if (state === "ended" || state === "failed") finishRun();
}

function resetCaptions() {
  ui.finals.replaceChildren();
  ui.partials.replaceChildren();
  ui.message.textContent = "";
  ui.latency.textContent = "none yet";
  Object.values(ui.downloads).forEach((b) => { b.disabled = true; });
}

function scrollToNewest(update) {
  const box = ui.box;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  update();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

/** The partial line of a channel: the stable words stay in the DOM, only the tail is replaced. */
function showPartial(partial) {
  const channel = partial.channel;
  let line = ui.partials.querySelector(`[data-channel="${CSS.escape(channel)}"]`);
  if (!line || line.dataset.utterance !== partial.utterance_id) {
    line?.remove();
    line = document.createElement("p");
    line.className = "partial";
    line.dataset.channel = channel;
    line.dataset.utterance = partial.utterance_id;
    if (run.channels > 1) line.append(Object.assign(document.createElement("span"), { className: "channel", textContent: channel }));
    line.append(Object.assign(document.createElement("span"), { className: "stable" }), " ",
                Object.assign(document.createElement("span"), { className: "tail" }));
    line.stableWords = [];
    ui.partials.append(line);
  }
  const words = partial.text.split(" ").filter(Boolean);
  const stable = words.slice(0, partial.stable);
  const stableSpan = line.querySelector(".stable");
  const kept = line.stableWords;
  if (stable.length >= kept.length && kept.every((w, i) => w === stable[i])) {
    const added = stable.slice(kept.length);
    if (added.length) stableSpan.append(`${kept.length ? " " : ""}${added.join(" ")}`);
  } else {
    stableSpan.textContent = stable.join(" ");
  }
  line.stableWords = stable;
  line.dataset.stable = String(partial.stable);
  line.querySelector(".tail").textContent = words.slice(partial.stable).join(" ");
}

function utteranceTimes(id) {
  if (!run.utterances.has(id)) run.utterances.set(id, {});
  return run.utterances.get(id);
}

function showLatency(times) {
  const part = (label, ms) => (ms === undefined ? null : `${label} ${(ms / 1000).toFixed(2)} s`);
  return [part("first partial", times.firstPartialMs), part("final", times.finalMs)].filter(Boolean).join(" · ");
}

function renderWords(container, entry) {
  container.replaceChildren();
  displayWords(entry).forEach((w, i) => {
    if (i) container.append(" ");
    const span = Object.assign(document.createElement("span"), { className: "word", textContent: w.text });
    if (w.kind) {
      span.classList.add(w.kind === "profanity" ? "profanity" : "pii");
      span.title = w.kind === "profanity" ? "masked profanity" : `redacted ${w.kind}`;
    }
    container.append(span);
  });
}

function showFinal(final) {
  if (!run.transcript.addFinal(final)) return;
  ui.partials.querySelector(`[data-utterance="${CSS.escape(final.utterance_id)}"]`)?.remove();
  if (!final.text.trim()) return;
  const times = utteranceTimes(final.utterance_id);
  times.finalMs = performance.now() - run.client.pushTime(final.end);
  const item = document.createElement("li");
  item.className = "final";
  item.dataset.utterance = final.utterance_id;
  item.dataset.channel = final.channel;
  const meta = Object.assign(document.createElement("span"), { className: "meta" });
  const time = Object.assign(document.createElement("time"), { textContent: `${clock(final.start)}–${clock(final.end)}` });
  meta.append(time);
  if (run.channels > 1) meta.append(" ", Object.assign(document.createElement("span"), { className: "channel", textContent: final.channel }));
  const text = Object.assign(document.createElement("span"), { className: "text" });
  renderWords(text, { final, enriched: null });
  const badges = Object.assign(document.createElement("span"), { className: "badges" });
  const latency = Object.assign(document.createElement("span"), { className: "latency", textContent: showLatency(times) });
  item.append(meta, text, badges, latency);
  ui.finals.append(item);
  ui.latency.textContent = showLatency(times);
  Object.values(ui.downloads).forEach((b) => { b.disabled = false; });
}

function showEnriched(enriched) {
  const entry = run.transcript.addEnriched(enriched);
  const item = ui.finals.querySelector(`[data-utterance="${CSS.escape(enriched.transcript.utterance_id)}"]`);
  if (!entry || !item) return;
  renderWords(item.querySelector(".text"), entry);
  const badges = item.querySelector(".badges");
  badges.replaceChildren();
  const badge = (text, flag) => Object.assign(document.createElement("span"), { className: flag ? "badge flag" : "badge", textContent: text });
  const kinds = [...new Set(enriched.flags.spans.map((s) => s.kind))];
  for (const kind of kinds) badges.append(badge(kind === "profanity" ? "profanity masked" : `${kind} redacted`, true));
  if (enriched.flags.flagged.includes("toxicity")) badges.append(badge("toxic", true));
  if (enriched.intent && enriched.intent.label !== "out_of_scope") badges.append(badge(`intent: ${enriched.intent.label}`, false));
}

function onEvent(event) {
  if (!run) return;
  scrollToNewest(() => {
    if (event.type === "partial") {
      const times = utteranceTimes(event.utterance_id);
      if (times.firstPartialMs === undefined) {
        const onset = event.words.length ? event.words[0].start : event.start;
        times.firstPartialMs = performance.now() - run.client.pushTime(onset);
        ui.latency.textContent = showLatency(times);
      }
      showPartial(event);
    } else if (event.type === "final") {
      showFinal(event);
    } else if (event.type === "enriched") {
      showEnriched(event);
    } else if (event.type === "error") {
      ui.message.textContent = `${event.code}: ${event.message}`;
    }
  });
}

async function startRun(openSource, describe) {
  resetCaptions();
  ui.micStart.disabled = true;
  ui.file.disabled = true;
  ui.stop.disabled = false;
  const state = { transcript: new Transcript(), utterances: new Map(), client: null, source: null, channels: 1,
                  stopped: false };
  run = state;
  try {
    state.source = await openSource((pcm) => state.client?.pushAudio(pcm));
  } catch (err) {
    ui.message.textContent = err.message;
    finishRun();
    return;
  }
  if (run !== state || state.stopped) { // Stop was pressed while the source was opening
    await state.source.stop();
    if (run === state) finishRun();
    return;
  }
  state.channels = state.source.channels;
  ui.audio.textContent = describe(state.source);
  state.client = new CaptionClient({
    url: serverUrl(), token: ui.token.value.trim(), config: streamConfig(state.source.sampleRate, state.channels),
    onEvent, onStatus: setStatus,
  });
  state.client.start();
}

async function stopSource() {
  const source = run?.source;
  if (source) {
    run.source = null;
    await source.stop();
  }
}

async function stopRun() {
  ui.stop.disabled = true;
  if (run) run.stopped = true;
  await stopSource();
  run?.client?.end();
}

function finishRun() {
  stopSource();
  ui.micStart.disabled = false;
  ui.file.disabled = false;
  ui.stop.disabled = true;
}

ui.micStart.addEventListener("click", () => {
  startRun(openMicrophone, (s) => `microphone, ${s.sampleRate} Hz`);
});

ui.file.addEventListener("change", () => {
  const file = ui.file.files[0];
  if (!file) return;
  const describe = (s) => `${file.name}, ${s.channels === 2 ? "stereo" : "mono"}`;
  startRun(async (push) => {
    const decoded = await decodeFile(file);
    let player = null;
    const source = {
      sampleRate: decoded.sampleRate, channels: decoded.channels,
      stop: async () => { player?.stop(); },
    };
    // The client exists once startRun has the source, so playback starts on the next turn.
    setTimeout(() => {
      if (run?.source !== source) return;
      player = playAtRealTime(decoded, push, (s) => {
        ui.audio.textContent = `${describe(decoded)}: ${clock(s)} of ${clock(decoded.seconds)}`;
      });
      player.done.then(() => { if (run?.source === source) stopRun(); });
    });
    return source;
  }, describe);
  ui.file.value = "";
});

ui.stop.addEventListener("click", stopRun);

function download(kind) {
  const entries = run.transcript.entries();
  const options = { labelChannels: run.channels > 1 };
  const [body, type] = {
    txt: [toText(entries, options), "text/plain"],
    vtt: [toVtt(entries, options), "text/vtt"],
    srt: [toSrt(entries, options), "application/x-subrip"],
  }[kind];
  const url = URL.createObjectURL(new Blob([body], { type: `${type};charset=utf-8` }));
  const link = Object.assign(document.createElement("a"), { href: url, download: `callstream-${run.client?.sessionId ?? "transcript"}.${kind}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

for (const [kind, button] of Object.entries(ui.downloads)) button.addEventListener("click", () => download(kind));
