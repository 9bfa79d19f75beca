// The transcript of one session: its finals, their enrichment, and the caption files made from them.
// Pure: no DOM, no network.

/** "01:04.7": minutes and seconds with tenths, for the page. */
export function clock(seconds) {
  const tenths = Math.max(0, Math.round(seconds * 10));
  const m = Math.floor(tenths / 600);
  const s = (tenths % 600) / 10;
  return `${String(m).padStart(2, "0")}:${s.toFixed(1).padStart(4, "0")}`;
}

/** "00:01:04.700" (WebVTT) or "00:01:04,700" (SubRip). */
export function cueTime(seconds, separator = ".") {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const h = Math.floor(ms / 3600000);
  const m = Math.floor(ms / 60000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(h)}:${pad(m)}:${pad(s)}${separator}${pad(ms % 1000, 3)}`;
}

export class Transcript {
  constructor() {
    this.byId = new Map(); // utterance_id -> {final, enriched}
  }

  /** Adds a final; false when its utterance was already here (a resumed session may repeat one). */
  addFinal(final) {
    if (this.byId.has(final.utterance_id)) return false;
    this.byId.set(final.utterance_id, { final, enriched: null });
    return true;
  }

  addEnriched(enriched) {
    const entry = this.byId.get(enriched.transcript.utterance_id);
    if (entry) entry.enriched = enriched;
    return entry ?? null;
  }

  /** Finals with words, in the order of their start time. */
  entries() {
    return [...this.byId.values()]
      .filter((e) => e.final.text.trim())
      .sort((a, b) => a.final.start - b.final.start || a.final.channel.localeCompare(b.final.channel));
  }
}

/**
 * The words of an entry as shown: the redacted token of each word once the enrichment is in
 * (``redacted_text`` has one token per word), with the kind of span that covers it.
 */
export function displayWords(entry) {
  const { final, enriched } = entry;
  const words = final.words.length
    ? final.words.map((w) => ({ text: w.text, start: w.start, end: w.end, kind: null }))
    : final.text.split(/\s+/).filter(Boolean).map((text) => ({ text, start: null, end: null, kind: null }));
  if (!enriched) return words;
  const tokens = enriched.redacted_text.split(" ");
  if (tokens.length === words.length) tokens.forEach((t, i) => { words[i].text = t; });
  for (const span of enriched.flags.spans) {
    for (let i = span.first_word; i <= span.last_word && i < words.length; i++) words[i].kind = span.kind;
  }
  return words;
}

/**
 * Caption cues from word timings: a new cue when one would pass ``maxChars`` characters or
 * ``maxSeconds`` seconds. A final without word timings is one cue over its whole span.
 */
export function cues(entries, { maxChars = 42, maxSeconds = 5 } = {}) {
  const out = [];
  for (const entry of entries) {
    const { final } = entry;
    const words = displayWords(entry);
    if (words.some((w) => w.start === null)) {
      out.push({ start: final.start, end: Math.max(final.end, final.start + 0.1), text: words.map((w) => w.text).join(" "),
                 channel: final.channel });
      continue;
    }
    let cue = null;
    for (const w of words) {
      const text = cue ? `${cue.text} ${w.text}` : w.text;
      if (cue && (text.length > maxChars || w.end - cue.start > maxSeconds)) {
        out.push(cue);
        cue = null;
      }
      cue = cue ? { ...cue, end: w.end, text } : { start: w.start, end: w.end, text: w.text, channel: final.channel };
    }
    if (cue) out.push(cue);
  }
  for (const cue of out) cue.end = Math.max(cue.end, cue.start + 0.1);
  return out;
}

const escapeVtt = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** WebVTT; with ``labelChannels`` each cue names its speaker in a voice span (``<v agent>``). */
export function toVtt(entries, { labelChannels = false } = {}) {
  const blocks = cues(entries).map((c, i) => {
    const text = labelChannels ? `<v ${escapeVtt(c.channel)}>${escapeVtt(c.text)}` : escapeVtt(c.text);
    return `${i + 1}\n${cueTime(c.start)} --> ${cueTime(c.end)}\n${text}\n`;
  });
  return ["WEBVTT\n", ...blocks].join("\n");
}

/** SubRip; with ``labelChannels`` each cue starts with "agent: ". */
export function toSrt(entries, { labelChannels = false } = {}) {
  return cues(entries).map((c, i) => {
    const text = labelChannels ? `${c.channel}: ${c.text}` : c.text;
    return `${i + 1}\n${cueTime(c.start, ",")} --> ${cueTime(c.end, ",")}\n${text}\n`;
  }).join("\n");
}

/** One line per final: "[00:00.4-00:04.7] agent: thank you for calling". */
export function toText(entries, { labelChannels = false } = {}) {
  return entries.map(({ final, enriched }) => {
    const words = displayWords({ final, enriched }).map((w) => w.text).join(" ");
    const who = labelChannels ? `${final.channel}: ` : "";
    return `[${clock(final.start)}-${clock(final.end)}] ${who}${words}\n`;
  }).join("");
}
