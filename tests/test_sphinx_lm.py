"""models.train.sphinx_lm: pocketsphinx's binary trie LM read in Python, checked against pocketsphinx itself."""

from pathlib import Path

import numpy as np
import pytest

from models.train.sphinx_lm import LOG10_OF_BASE, NGrams, SphinxLM, read_sphinx_lm, restrict_vocabulary, write_arpa

pocketsphinx = pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the [train] extra")

# pocketsphinx answers in whole units of its log base 1.0001, truncated: 4.3e-5 in log10. The
# n-grams' quantisation is no error here: both sides decode the same 16-bit bins.
TOLERANCE = 1.5 * LOG10_OF_BASE


@pytest.fixture(scope="module")
def en_us() -> tuple[SphinxLM, object]:
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "en-us.lm.bin"
    model = pocketsphinx.NGramModel(pocketsphinx.Config(), pocketsphinx.LogMath(1.0001), str(path))
    return read_sphinx_lm(path), model


def sphinx_log10(model, words: list[str]) -> float:
    """log10 P(words[-1] | words[:-1]) as pocketsphinx computes it (it takes the history newest first)."""
    return model.prob(list(reversed(words))) * LOG10_OF_BASE


def test_every_order_is_read_with_pocketsphinx_scores(en_us):
    lm, model = en_us
    assert [g.words.shape for g in lm.grams] == [(72547, 1), (2051541, 2), (1669625, 3)]
    rng = np.random.default_rng(0)
    for g in lm.grams:
        for i in rng.choice(len(g.prob), 1000, replace=False):
            words = [lm.vocab[w] for w in g.words[i]]
            assert g.prob[i] == pytest.approx(sphinx_log10(model, words), abs=TOLERANCE), words
    # Middle orders carry backoffs; the highest order none.
    assert lm.grams[0].backoff is not None and lm.grams[1].backoff is not None and lm.grams[2].backoff is None
    assert np.isfinite(lm.grams[1].backoff).all() and (lm.grams[1].prob <= 0).all()


def test_the_arpa_file_scores_like_pocketsphinx_with_backoff(en_us, tmp_path):
    """Written as ARPA and read back by KenLM: stored n-grams and backed-off ones alike."""
    import kenlm

    lm, model = en_us
    kept = restrict_vocabulary(lm, lambda w: w in ("<s>", "</s>") or w.replace("'", "").isalpha())
    arpa = write_arpa(kept, tmp_path / "en-us.arpa")
    k = kenlm.Model(str(arpa))
    assert k.order == 3
    rng = np.random.default_rng(1)
    plain = np.array([w for w in kept.vocab if w not in ("<s>", "</s>")])

    def sample(n: int, count: int) -> list[list[str]]:
        g = kept.grams[n - 1]
        return [[kept.vocab[w] for w in g.words[i]] for i in rng.choice(len(g.prob), count, replace=False)]

    cases = sample(2, 500) + sample(3, 500)
    cases += [[str(w) for w in rng.choice(plain, 3)] for _ in range(500)]  # mostly backed off twice
    cases += [c[:2] + [str(rng.choice(plain))] for c in sample(3, 500)]  # a known context, then back-off
    for words in cases:
        if "</s>" in words[:-1]:
            continue
        bos = words[0] == "<s>"
        text = " ".join(words[1:] if bos else words)
        *_, (ours, _length, _oov) = k.full_scores(text, bos=bos, eos=False)
        assert ours == pytest.approx(sphinx_log10(model, words), abs=TOLERANCE), words


def tiny_lm() -> SphinxLM:
    vocab = ["<s>", "</s>", "The", "the", "cat", "c.", "sat"]
    ids = {w: i for i, w in enumerate(vocab)}

    def grams(rows: list[tuple[list[str], float, float | None]]) -> NGrams:
        words = np.array([[ids[w] for w in ws] for ws, _, _ in rows], dtype=np.int32)
        backoff = None if rows[0][2] is None else np.array([b for _, _, b in rows])
        return NGrams(words=words, prob=np.array([p for _, p, _ in rows]), backoff=backoff)

    return SphinxLM(vocab=vocab, grams=[
        grams([([w], -1.0 - i / 10, -0.5) for i, w in enumerate(vocab)]),
        grams([(["The", "cat"], -0.3, -0.2), (["cat", "sat"], -0.4, -0.1), (["c.", "sat"], -0.5, 0.0),
               (["sat", "</s>"], -0.6, 0.0)]),
        grams([(["The", "cat", "sat"], -0.05, None), (["c.", "sat", "</s>"], -0.07, None),
               (["cat", "sat", "</s>"], -0.08, None),
               (["<s>", "cat", "sat"], -0.09, None)]),  # its context "<s> cat" is not in the model
    ])


def test_restricting_the_vocabulary_keeps_a_consistent_model(tmp_path):
    lm = restrict_vocabulary(tiny_lm(), lambda w: w in ("<s>", "</s>") or w.isalpha())
    # Lower-cased; "the" is the first "The"; "c." goes with its n-grams.
    assert lm.vocab == ["<s>", "</s>", "the", "cat", "sat"]
    text = [[" ".join(lm.vocab[w] for w in row) for row in g.words] for g in lm.grams]
    assert text[1] == ["the cat", "cat sat", "sat </s>"]
    assert text[2] == ["the cat sat", "cat sat </s>"]  # not the one without its context
    assert lm.grams[0].prob.tolist() == [-1.0, -1.1, -1.2, -1.4, -1.6]

    arpa = write_arpa(lm, tmp_path / "tiny.arpa").read_text()
    assert arpa.startswith("\\data\\\nngram 1=5\nngram 2=3\nngram 3=2\n\n\\1-grams:\n-1.000000\t<s>\t-0.500000\n")
    assert "\n\\2-grams:\n-0.300000\tthe cat\t-0.200000\n" in arpa
    assert arpa.endswith("\n\\3-grams:\n-0.050000\tthe cat sat\n-0.080000\tcat sat </s>\n\n\\end\\\n")


def test_a_file_in_another_format_or_cut_short_is_refused(en_us, tmp_path):
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "en-us.lm.bin"
    short = tmp_path / "short.lm.bin"
    short.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="ends early"):
        read_sphinx_lm(short)
    other = tmp_path / "other.lm.bin"
    other.write_bytes(b"Darpa Trigram LM" + bytes(64))
    with pytest.raises(ValueError, match="not a pocketsphinx trie LM"):
        read_sphinx_lm(other)
