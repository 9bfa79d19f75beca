"""Fuzz target: audio bytes of any format through the front end a stream runs
(``AudioDecoder`` -> per-channel ``Resampler`` -> ``dither``), in chunks of any size,
now and then one as large as a WebSocket frame may be.

What comes out must be finite float32 frames of the stream's channel count.
"""

import atheris
import numpy as np

with atheris.instrument_imports(include=["operators.audio"]):
    from operators.audio import ENCODINGS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioDecoder, AudioFormat, Resampler, dither
    from stream.errors import InputError
    from stream.websocket import ServerConfig

from tests.fuzz.harness import fuzz

MODEL_RATE = 16000
HUGE_BYTES = ServerConfig().max_frame_bytes
# The decoder's bound on f32 samples (it refuses values beyond it).
F32_LIMIT = 64.0


def _check(frames: np.ndarray, fmt: AudioFormat) -> None:
    if frames.dtype != np.float32 or frames.ndim != 2 or frames.shape[1] != fmt.channels:
        raise AssertionError(f"expected float32 (N, {fmt.channels}), got {frames.dtype} {frames.shape}")
    bound = F32_LIMIT if fmt.encoding == "f32" else 1.0
    if not np.isfinite(frames).all() or (frames.size and np.abs(frames).max() > bound):
        raise AssertionError(f"{fmt.encoding} decoded to values that are not finite or beyond {bound}")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    encoding = fdp.PickValueInList([*ENCODINGS, "", "PCM16", "opus", "f32\x00"])
    rate = fdp.PickValueInList([8000, 16000, 44100, 48000, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE - 1,
                                MAX_SAMPLE_RATE + 1, 0, -16000, 1 << 63, True, 16000.0,
                                fdp.ConsumeIntInRange(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)])
    channels = fdp.PickValueInList([1, 2, fdp.ConsumeIntInRange(-1, 10), True])
    try:
        fmt = AudioFormat(encoding=encoding, sample_rate=rate, channels=channels)
    except InputError:
        return
    decoder, resampler = AudioDecoder(fmt), Resampler(fmt.sample_rate, MODEL_RATE)
    state = decoder.new_state()
    streams = [resampler.new_state() for _ in range(fmt.channels)]
    positions = [0] * fmt.channels
    huge = fdp.ConsumeIntInRange(0, 15) == 0
    while fdp.remaining_bytes():
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
        if huge and payload:
            payload = (payload * (HUGE_BYTES // len(payload) + 1))[:HUGE_BYTES]
            huge = False
        try:
            frames = decoder.feed(state, payload)
        except InputError:
            continue
        _check(frames, fmt)
        for i, rs in enumerate(streams):
            out = dither(resampler.feed(rs, np.ascontiguousarray(frames[:, i])), positions[i])
            positions[i] += out.size
            if not np.isfinite(out).all():
                raise AssertionError("resampled audio is not finite")
    for rs in streams:
        if not np.isfinite(resampler.flush(rs)).all():
            raise AssertionError("the resampler's tail is not finite")


def main() -> None:
    fuzz("audio", TestOneInput)


if __name__ == "__main__":
    main()
