"""Long fuzzing runs: ``python -m bench.fuzz --minutes M`` splits M minutes over the targets of
``tests/fuzz`` and prints, per target, the inputs run, the crashes and the time.

A crash (an exception outside the documented ones, a hang past ``--timeout-s``, memory past
``--rss-limit-mb``) leaves its input under ``--out``/<target>/crashes; the target then starts
again for the rest of its time, so two crashing inputs may be one bug. New inputs that found
coverage go to ``--out``/<target>/corpus, and later runs start from them. Exit status 1 if any
target crashed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, table
from tests.fuzz.harness import CORPUS, TARGETS

__all__ = ["fuzz_target", "main"]


def fuzz_target(target: str, seconds: float, out: Path, *, seed: int = 1, timeout_s: int = 20,
                rss_limit_mb: int = 2048) -> dict[str, object]:
    """Fuzz ``target`` for ``seconds``: {executions, crashes, seconds, kinds (one line per crash)}.

    ``crashes`` counts distinct crashing inputs. A restart that crashes on an input already
    saved (one of the seeds, most likely) ends the target's run: the bug is still there.
    """
    corpus, crashes_dir = out / target / "corpus", out / target / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes_dir.mkdir(parents=True, exist_ok=True)
    executions, kinds = 0, []
    start = time.monotonic()
    while (left := seconds - (time.monotonic() - start)) >= 1:
        before = set(crashes_dir.iterdir())
        cmd = [sys.executable, "-m", f"tests.fuzz.fuzz_{target}", f"-max_total_time={int(left)}",
               f"-seed={seed + len(kinds)}", f"-timeout={timeout_s}", f"-rss_limit_mb={rss_limit_mb}",
               "-print_final_stats=1", f"-artifact_prefix={crashes_dir}/", str(corpus), str(CORPUS / target)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=left + 300)
        done = re.search(r"stat::number_of_executed_units: (\d+)", proc.stderr)
        executions += int(done.group(1)) if done else 0
        if proc.returncode == 0:
            break
        # atheris prints the Python exception on stdout, libFuzzer its own errors on stderr.
        error = re.search(r"=== Uncaught Python exception: ===\n(.+)", proc.stdout) or re.search(
            r"ERROR: libFuzzer: (.+)", proc.stderr)
        new = sorted(set(crashes_dir.iterdir()) - before)
        if not new:
            break
        kinds.append(f"{error.group(1).strip()[:100] if error else f'exit status {proc.returncode}'} ({new[0].name})")
    return {"executions": executions, "crashes": len(kinds), "seconds": round(time.monotonic() - start, 1),
            "kinds": kinds}

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="in all, split evenly over the targets")
    p.add_argument("--target", choices=TARGETS, action="append", help="only these targets (repeatable)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "fuzz")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout-s", type=int, default=20, help="an input running longer is a hang")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="memory past this is a crash")
    args = p.parse_args(argv)
    targets = args.target or list(TARGETS)
    rows, kinds = [], []
    for target in targets:
        r = fuzz_target(target, args.minutes * 60 / len(targets), args.out, seed=args.seed,
                        timeout_s=args.timeout_s, rss_limit_mb=args.rss_limit_mb)
        rows.append([target, r["executions"], r["crashes"], r["seconds"], round(r["executions"] / max(r["seconds"], 1e-9))])
        kinds += [f"{target}: {k}" for k in r["kinds"]]
        print(f"{target}: {r['executions']} inputs, {r['crashes']} crash(es) in {r['seconds']} s", flush=True)
    print(table(f"fuzzing, {args.minutes:g} min ({args.out})", ["target", "executions", "crashes", "time s", "exec/s"],
                rows) + "".join(f"  {k}\n" for k in kinds))
    return 1 if kinds else 0


if __name__ == "__main__":
    raise SystemExit(main())
