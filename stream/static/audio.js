// Audio sources for the page: the microphone (AudioWorklet) and a local file (Web Audio decoding),
// both as interleaved PCM16 frames at 16 kHz, pushed in 20 ms pieces.

export const SAMPLE_RATE = 16000; // Hz: the recogniser's rate, so the server need not resample
const FRAME_S = 0.02;

function toPcm16(floats) {
  const out = new Int16Array(floats.length);
  for (let i = 0; i < floats.length; i++) {
    const s = Math.max(-1, Math.min(1, floats[i]));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return out;
}

/**
 * Opens the microphone and calls ``push(Int16Array)`` every 20 ms with mono PCM16 frames.
 * Resolves to {sampleRate, channels, stop()}. The AudioContext runs at 16 kHz, so the browser
 * resamples the device's audio; where it cannot, the device rate is sent and the server resamples.
 */
export async function openMicrophone(push) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("this page needs a secure context for the microphone: open it on localhost or over https");
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  let context;
  let source;
  try {
    context = new AudioContext({ sampleRate: SAMPLE_RATE });
    source = context.createMediaStreamSource(stream);
  } catch {
    await context?.close();
    context = new AudioContext();
    source = context.createMediaStreamSource(stream);
  }
  await context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
  const node = new AudioWorkletNode(context, "pcm16-frames", {
    numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit",
    channelInterpretation: "speakers", processorOptions: { frameSamples: Math.round(context.sampleRate * FRAME_S) },
  });
  node.port.onmessage = (m) => push(m.data);
  // Connected to the destination so the graph pulls the worklet; it outputs silence.
  source.connect(node).connect(context.destination);
  await context.resume();
  return {
    sampleRate: context.sampleRate,
    channels: 1,
    stop: async () => {
      stream.getTracks().forEach((t) => t.stop());
      node.port.onmessage = null;
      source.disconnect();
      node.disconnect();
      await context.close();
    },
  };
}

/**
 * Decodes an audio file the browser can read to interleaved PCM16 at 16 kHz: decodeAudioData of
 * an OfflineAudioContext at 16 kHz resamples as it decodes. Stereo stays two channels (agent,
 * customer); other layouts are mixed to mono. Resolves to {pcm, channels, sampleRate, seconds}.
 */
export async function decodeFile(file) {
  const context = new OfflineAudioContext(1, 1, SAMPLE_RATE);
  const buffer = await context.decodeAudioData(await file.arrayBuffer());
  const channels = buffer.numberOfChannels === 2 ? 2 : 1;
  const n = buffer.length;
  const floats = new Float32Array(n * channels);
  if (channels === 2) {
    const [left, right] = [buffer.getChannelData(0), buffer.getChannelData(1)];
    for (let i = 0; i < n; i++) { floats[2 * i] = left[i]; floats[2 * i + 1] = right[i]; }
  } else {
    for (let c = 0; c < buffer.numberOfChannels; c++) {
      const data = buffer.getChannelData(c);
      for (let i = 0; i < n; i++) floats[i] += data[i] / buffer.numberOfChannels;
    }
  }
  return { pcm: toPcm16(floats), channels, sampleRate: SAMPLE_RATE, seconds: n / SAMPLE_RATE };
}

/**
 * Pushes decoded audio at real time, as a microphone would. Resolves when all is pushed, or
 * early after ``stop()``. A throttled timer (a hidden tab) catches up in one larger push.
 */
export function playAtRealTime({ pcm, channels, sampleRate }, push, onProgress = () => {}) {
  const total = pcm.length / channels;
  const started = performance.now();
  let sent = 0;
  let timer;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * sampleRate));
    if (due > sent) {
      push(pcm.subarray(sent * channels, due * channels));
      sent = due;
      onProgress(sent / sampleRate);
    }
    if (sent >= total) stop();
  };
  const stop = () => { clearInterval(timer); finish(sent / sampleRate); };
  timer = setInterval(tick, FRAME_S * 1000);
  return { done, stop };
}
