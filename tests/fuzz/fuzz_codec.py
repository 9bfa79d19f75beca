"""Fuzz target: JSON messages through the codec, client and server side, and stream configs
through the validation the server applies before a stream opens (``Pipeline.open``).

A decoded message must encode again, as the Kafka agents re-encode the finals they read.
"""

import sys

import atheris

with atheris.instrument_imports(include=["stream", "operators"]):
    from stream import codec
    from stream.app import DecodingConfig, build_pipeline
    from stream.errors import InputError, ModelError
    from stream.events import StreamConfig

from tests.fuzz.harness import fuzz

try:
    # Beam search without LMs: hotwords are validated; the model runs never (open only).
    PIPELINE = build_pipeline(decoding=DecodingConfig(lm=None, general_lm=None, second_pass=False, beam_width=4))
except ModelError as exc:
    PIPELINE = None
    print(f"fuzz_codec: configs are decoded but not opened: {exc}", file=sys.stderr)


def TestOneInput(data: bytes) -> None:
    for decode, encode in ((codec.decode_client, codec.encode_client), (codec.decode, codec.encode)):
        try:
            message = decode(data)
        except InputError:
            continue
        encode(message)
        if isinstance(message, StreamConfig) and PIPELINE is not None:
            try:
                PIPELINE.create_stream("fuzz", message)
            except InputError:
                pass


def main() -> None:
    fuzz("codec", TestOneInput)


if __name__ == "__main__":
    main()
