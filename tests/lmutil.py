"""A tiny ARPA bigram writer for tests (KenLM reads ARPA directly; no lmplz needed)."""

import math
from collections import Counter
from pathlib import Path


def write_arpa(sentences: list[str], path: Path) -> Path:
    uni: Counter[str] = Counter()
    bi: Counter[tuple[str, str]] = Counter()
    for s in sentences:
        words = ["<s>", *s.split(), "</s>"]
        uni.update(words)
        bi.update(zip(words, words[1:]))
    uni["<unk>"] += 1
    total = sum(uni.values())
    lines = ["\\data\\", f"ngram 1={len(uni)}", f"ngram 2={len(bi)}", "", "\\1-grams:"]
    for w, c in sorted(uni.items()):
        p = -99.0 if w == "<s>" else math.log10(c / total)
        lines.append(f"{p:.4f}\t{w}\t-0.3000")
    lines += ["", "\\2-grams:"]
    for (a, b), c in sorted(bi.items()):
        lines.append(f"{math.log10(0.8 * c / uni[a]):.4f}\t{a} {b}")
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path
