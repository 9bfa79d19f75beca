"""Fuzz target: Kafka audio records (key, value, headers) through the ASR worker's record handler.

``AsrWorker._handle`` runs as in production, with the real pipeline (the bundled
model, no LM, no second pass) and a producer that records what it is given. A
record must never raise out of the handler: bad ones go to the dead-letter
topic (``stream.codec.audio_from_record`` raises ``InputError`` for them). Some
inputs first forge a record of the state topic, read as ``AsrWorker.load_state``
reads it (``resume_point``).
"""

import asyncio
import logging
from dataclasses import dataclass

import atheris

with atheris.instrument_imports(include=["stream", "operators"]):
    from stream.app import DecodingConfig, build_pipeline
    from stream.kafka import AsrWorker, KafkaConfig, resume_point

from tests.fuzz.harness import fuzz

# Per header, values it takes; any header may also get GARBAGE or any bytes.
HEADERS = {
    "cs-encoding": [b"pcm16", b"f32", b"mulaw", b"alaw"],
    "cs-sample-rate": [b"8000", b"16000", b"44100", b"4000", b"192000"],
    "cs-channels": [b"1", b"2", b"8"],
    "cs-seq": [b"0", b"1", b"7"],
    "cs-sample-offset": [b"0", b"160", b"8000", b"9007199254740991"],
    "cs-v": [b"1"],
    "cs-end": [b"1"],
    "cs-finalize": [b"1"],
}
STATES = [b'{"offset": 0, "next": {"mono": 3}}', b'{"offset": 2, "next": {}}', b'[1]', b'{"offset": "5", "next": {}}',
          b'{"offset": 0, "next": {"mono": "x"}}', b'{"offset": -1, "next": {"agent": true}}']
GARBAGE = [b"", b"0", b"-1", b"9" * 400, b"1e3", b" 8000 ", b"\xff", b"nan", b"opus", b"2"]


@dataclass(frozen=True)
class Record:
    """The fields of an aiokafka ``ConsumerRecord`` the worker reads."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    offset: int
    topic: str = "callstream.audio"
    partition: int = 0


class Producer:
    """Stands in for ``AIOKafkaProducer``: keeps what the worker sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic, value=None, key=None, headers=None):
        self.sent.append((topic, key, value))

    async def send_and_wait(self, topic, value=None, key=None, headers=None):
        self.sent.append((topic, key, value))

    async def flush(self):
        pass


logging.getLogger("stream.kafka").setLevel(logging.ERROR)  # one warning per dead-lettered record otherwise
PIPELINE = build_pipeline(decoding=DecodingConfig(lm=None, general_lm=None, second_pass=False, beam_width=4))
WORKER = AsrWorker(PIPELINE, KafkaConfig())
WORKER._producer = Producer()
LOOP = asyncio.new_event_loop()


def _bytes(fdp: atheris.FuzzedDataProvider, known: list[bytes], most: int) -> bytes | None:
    """One of ``known`` (most often: it takes whole, valid records to reach the pipeline), None,
    garbage, or any bytes."""
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind <= 5:
        return fdp.PickValueInList(known)
    if kind == 6:
        return None
    if kind == 7:
        return fdp.PickValueInList(GARBAGE)
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, most))


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    records = []
    for offset in range(fdp.ConsumeIntInRange(1, 4)):
        key = _bytes(fdp, [b"call-1", b"call-2", b""], 16)
        # The five headers every audio record needs are there 7 times in 8, the others once in 8.
        headers = [(name, _bytes(fdp, known, 24)) for i, (name, known) in enumerate(HEADERS.items())
                   if fdp.ConsumeIntInRange(0, 7) < (7 if i < 5 else 1)]
        for _ in range(fdp.ConsumeIntInRange(0, 1)):
            headers.insert(fdp.ConsumeIntInRange(0, len(headers)),
                           (fdp.ConsumeUnicodeNoSurrogates(8), _bytes(fdp, GARBAGE, 24)))
        records.append(Record(key, _bytes(fdp, [b"", b"\x00\x00" * 160], 1024), tuple(headers), offset))
    WORKER.calls.clear()
    WORKER._resume.clear()
    if fdp.ConsumeIntInRange(0, 3) == 0:
        call, state = fdp.PickValueInList(["call-1", "call-2"]), _bytes(fdp, STATES, 64)
        if state is not None and (point := resume_point(state)) is not None:
            WORKER._resume[call] = point

    async def handle() -> None:
        for record in records:
            await WORKER._handle(record.partition, record)

    LOOP.run_until_complete(handle())


def main() -> None:
    fuzz("kafka", TestOneInput)


if __name__ == "__main__":
    main()
