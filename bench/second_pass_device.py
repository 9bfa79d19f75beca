"""The second pass's time per final on CPU and on a GPU: the same decoder, its graphs run by torch.

The served second pass (``models.second_pass``) calls two graphs, Whisper's
encoder and one decoder step with its cache, from numpy beam search. The
serving image runs them with onnxruntime (the CUDA provider where
``onnxruntime-gpu`` is installed). Where that provider cannot be installed,
this bench runs the very modules the ONNX files were exported from
(``models.train.export_whisper.SecondPassGraphs``) with torch, behind the same
``run()`` call: the search, the host-device copies of every step's cache and
the tokenizer stay as served, so the figure is the decoder's as the CUDA
provider without I/O binding would run it.

Two steps, because the finals' inputs come from the recogniser on the dev
data, which the GPU machine does not have:

    python -m bench.second_pass_device --record runs/gpu/mels.npz      # here: the finals' log-mels
    python -m bench.second_pass_device --mels runs/gpu/mels.npz [--device cuda] [--model tiny.en] [--whisper-dir DIR]

The second prints, for each backend (onnxruntime float32 and int8, the served graphs, on one
CPU thread when the built graphs are present, torch on one CPU thread, torch on the device), the
second pass's time per final at batch 1 with beam 4 and greedy (p50, p99), and
the time for a batch of finals from that many streams at once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import percentile, table
from models.runtime import SECOND_PASS_MODELS

__all__ = ["TorchGraph", "main", "record"]


class TorchGraph:
    """A torch module behind onnxruntime's ``run(None, feeds)``: numpy in, numpy out, on ``device``."""

    def __init__(self, module: Any, inputs: list[str], device: str) -> None:
        import torch

        self.module, self.inputs, self.device, self._torch = module.to(device), inputs, device, torch

    def run(self, _output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self.device) for k in self.inputs]
            return [out.cpu().numpy() for out in self.module(*args)]


def record(out: Path, per_set: int) -> int:
    """Run the dev utterances of ``bench.asr_dev`` through the recogniser and keep the log-mels
    its second pass gets (finals whose speech lasts a second or more)."""
    from bench.asr_dev import sets
    from bench.common import load_audio
    from stream.app import build_pipeline
    from stream.events import StreamConfig

    pipe = build_pipeline(enrich=False)
    served = pipe.second_pass
    assert served is not None, "the recogniser has no second pass"
    mels: list[np.ndarray] = []

    def keep(batch: list[np.ndarray], prompts: list[str]) -> list[str]:
        mels.extend(m.astype(np.float16) for m in batch)
        return served(batch, prompts)

    pipe.second_pass = keep
    for name, items in sets(per_set).items():
        for u, _ in items:
            state = pipe.create_stream(name, StreamConfig(sample_rate=16000))
            pipe.accept_waveform(state, load_audio(u.path)[:, None], 16000)
            pipe.finish(state)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **{f"m{i:04d}": m for i, m in enumerate(mels)})
    seconds = sum(m.shape[0] for m in mels) / 100
    print(f"{len(mels)} finals' log-mels ({seconds:.0f} s of audio) -> {out}")
    return 0


def _measure(second_pass: Any, mels: list[np.ndarray], batch: int) -> dict[str, Any]:
    """Per-final seconds at batch 1 (each final once, after one warm-up), then ``batch`` finals
    at once; and the batch-1 texts."""
    second_pass.transcribe(mels[:1])
    one, texts = [], []
    for m in mels:
        t0 = time.perf_counter()
        texts += second_pass.transcribe([m])
        one.append(time.perf_counter() - t0)
    group = mels[:batch]
    second_pass.transcribe(group)
    many = []
    for _ in range(3):
        t0 = time.perf_counter()
        second_pass.transcribe(group)
        many.append(time.perf_counter() - t0)
    return {"p50_ms": 1000 * percentile(one, 50), "p99_ms": 1000 * percentile(one, 99),
            "batch_ms": 1000 * float(np.median(many)), "texts": texts}


def run(mels_path: Path, device: str, model: str, whisper_dir: Path | None, batch: int) -> dict:
    import torch

    from models.runtime import SessionOptions, default_second_pass_dir
    from models.second_pass import SecondPass, SecondPassConfig
    from models.train.export_whisper import SecondPassGraphs, write_second_pass_meta
    from models.whisper_weights import whisper_dir as model_dir
    from stream.errors import ModelError

    with np.load(mels_path) as z:
        mels = [z[k].astype(np.float32) for k in sorted(z.files)]
    graphs = SecondPassGraphs(whisper_dir or model_dir(model))
    backends: list[tuple[str, Any]] = [("torch, 1 CPU thread", "cpu")]
    if device != "cpu":
        backends.append((f"torch, {torch.cuda.get_device_name() if device.startswith('cuda') else device}", device))
    results: dict[str, dict] = {}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_second_pass_meta(graphs, folder)
        for beam in (4, 1):
            config = SecondPassConfig(beam=beam, max_batch=batch)
            rows: dict[str, dict] = {}
            for quantized, precision in ((False, "float32"), (True, "int8 (served)")):
                try:
                    served = SecondPass(default_second_pass_dir(model), replace(config, quantized=quantized),
                                        SessionOptions(intra_op_threads=1))
                except ModelError as exc:  # no built graphs on this machine: the torch rows stand alone
                    print(f"onnxruntime graphs not measured: {exc}")
                    break
                rows[f"onnxruntime {precision}, 1 CPU thread"] = _measure(served, mels, batch)
            for label, dev in backends:
                ran = SecondPass(folder, config, graphs=(TorchGraph(graphs.encode, ["mel"], dev), TorchGraph(
                    graphs.step, graphs.step_inputs, dev)))
                rows[label] = _measure(ran, mels, batch)
            first = next(iter(rows.values()))["texts"]
            for v in rows.values():
                v["same_text"] = sum(a == b for a, b in zip(v.pop("texts"), first)) / len(first)
            results[f"beam {beam}"] = rows
    return {"finals": len(mels), "audio_s": sum(m.shape[0] for m in mels) / 100, "batch": batch,
            "results": results}


def _report(r: dict) -> str:
    rows = [(beam, label, v["p50_ms"], v["p99_ms"], v["batch_ms"], f"{v['same_text']:.0%}")
            for beam, by in r["results"].items() for label, v in by.items()]
    return table(f"Second pass per final, {r['finals']} dev finals ({r['audio_s']:.0f} s of speech); "
                 f"batch: {r['batch']} finals at once; same text: as the first row's",
                 ["decoder", "backend", "p50 ms", "p99 ms", f"batch of {r['batch']} ms", "same text"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.second_pass_device", description=__doc__.splitlines()[0])
    p.add_argument("--record", type=Path, metavar="NPZ", help="write the dev finals' log-mels here, and stop")
    p.add_argument("--per-set", type=int, default=20, help="--record: utterances per dev set")
    p.add_argument("--mels", type=Path, metavar="NPZ", help="the finals' log-mels (from --record)")
    p.add_argument("--device", default="cuda", help="the torch device besides one CPU thread (cpu: none)")
    p.add_argument("--model", choices=SECOND_PASS_MODELS, default=SECOND_PASS_MODELS[0], help="the Whisper model")
    p.add_argument("--whisper-dir", type=Path, help="its CTranslate2 folder (default: from its wheels)")
    p.add_argument("--batch", type=int, default=36, help="finals decoded at once for the batch column")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.record:
        return record(args.record, args.per_set)
    if not args.mels:
        p.error("give --record NPZ or --mels NPZ")
    r = run(args.mels, args.device, args.model, args.whisper_dir, args.batch)
    print(_report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
