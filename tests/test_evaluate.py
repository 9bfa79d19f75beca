"""`callstream transcribe` and `eval-asr` on files: formats, rates, and clear errors on bad files."""

import json
import re

import numpy as np
import pytest
import soundfile as sf
import soxr

from models.evaluate import read_audio
from models.runtime import ASSETS
from stream.cli import main
from stream.errors import AudioFileError, InputError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The agent's first 6 s of the bundled call in several containers, plus two bad files."""
    d = tmp_path_factory.mktemp("audio")
    x, rate = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    agent = x[: 6 * rate, 0]
    sf.write(d / "pcm24.wav", agent, rate, subtype="PCM_24")
    sf.write(d / "float.wav", agent, rate, subtype="FLOAT")
    up = soxr.resample(agent, rate, 44100)
    sf.write(d / "stereo44k.flac", np.stack([up, up], axis=1), 44100)
    (d / "notes.wav").write_text("not audio\n")
    return d


def _transcript(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["transcribe", "--no-lm", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_any_container_and_rate_is_transcribed(files, capsys):
    rc24, t24, _ = _transcript(capsys, files / "pcm24.wav")
    rcf, tf, _ = _transcript(capsys, files / "float.wav")
    rc44, t44, _ = _transcript(capsys, files / "stereo44k.flac")
    assert rc24 == rcf == rc44 == 0
    assert t24 == tf and len(t24.split()) >= 3
    assert len(t44.split()) >= 3


def test_bad_files_are_named_and_the_good_ones_still_transcribed(files, capsys):
    rc, out, err = _transcript(capsys, files / "missing.wav", files / "notes.wav", files / "float.wav", files)
    assert rc == 1
    assert f"{files / 'missing.wav'}: no such file" in err
    assert f"{files / 'notes.wav'}: not audio that libsndfile can read" in err
    assert f"{files}: not a file" in err
    assert "Traceback" not in err
    good = [line for line in out.splitlines() if line.startswith(str(files / "float.wav"))]
    assert len(good) == 1 and len(good[0].split("\t")[1].split()) >= 3


def test_read_audio_raises_the_input_error():
    with pytest.raises(AudioFileError, match="no such file"):
        read_audio(ASSETS / "absent.wav")


def test_eval_asr_scores_a_manifest_and_refuses_missing_files(files, capsys, tmp_path):
    rc, text, _ = _transcript(capsys, files / "float.wav")
    manifest = files / "m.tsv"
    manifest.write_text(f"path\ttext\nfloat.wav\t{text.strip()}\npcm24.wav\t{text.strip()}\n")
    hyps = tmp_path / "h.tsv"
    assert main(["eval-asr", "--manifest", str(manifest), "--no-lm", "--json", "--hyps", str(hyps)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["utterances"] == 2 and result["wer"] == 0.0 and result["cer"] == 0.0 and result["rtf"] > 0
    assert hyps.read_text().splitlines()[0] == "path\thypothesis"

    broken = files / "broken.tsv"
    broken.write_text("path\ttext\nfloat.wav\tx\nabsent.wav\ty\n")
    assert main(["eval-asr", "--manifest", str(broken), "--no-lm"]) == 2
    assert re.match(r"callstream eval-asr: error: .*broken\.tsv: 1 of 2 audio files not found .* absent\.wav\n$",
                    capsys.readouterr().err)


def test_a_missing_model_or_lm_is_one_line_and_exit_2(files, capsys, tmp_path):
    assert main(["transcribe", "--lm", str(tmp_path), str(files / "float.wav")]) == 2
    assert capsys.readouterr().err == f"callstream transcribe: error: no lm.bin or lm.arpa in {tmp_path}\n"
    assert main(["transcribe", "--model", str(tmp_path / "absent.onnx"), str(files / "float.wav")]) == 2
    assert capsys.readouterr().err.startswith("callstream transcribe: error: model file")


def test_slot_recall_counts_values_said_word_for_word():
    from models.evaluate import slot_hits

    slots = '{"coffeeDrink": "iced mocha", "size": "12 ounce", "roast": "light roast"}'
    assert slot_hits(slots, "an iced mocha twelve ounce please") == (2, 3)
    assert slot_hits(slots, "a mocha") == (0, 3)  # "iced mocha" is one value: both words or none
    assert slot_hits("{}", "anything") == (0, 0)
    with pytest.raises(InputError, match="not JSON"):
        slot_hits("{size", "x")


def test_transcribe_writes_captions_and_events_timed_by_the_words(files, capsys, tmp_path):
    from stream import codec

    rc, text, _ = _transcript(capsys, files / "float.wav")
    assert rc == 0
    rc, vtt, _ = _transcript(capsys, "--format", "vtt", files / "float.wav")
    assert rc == 0 and vtt.startswith("WEBVTT\n\n")
    rc, srt, _ = _transcript(capsys, "--format", "srt", files / "float.wav")
    rc, lines, _ = _transcript(capsys, "--format", "json", files / "float.wav")
    finals = [codec.decode(line) for line in lines.splitlines()]
    assert " ".join(f.text for f in finals) == text.strip()
    assert finals[0].stream_id == "float" and finals[0].utterance_id == "float/mono/0"
    times = re.findall(r"^(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})$", vtt, re.M)
    assert times and times == [(a.replace(",", "."), b.replace(",", "."))
                               for a, b in re.findall(r"^(\S+) --> (\S+)$", srt, re.M)]
    first_word, first_cue = finals[0].words[0], vtt.split("\n\n")[1].splitlines()
    assert first_cue[0].startswith(f"00:00:{first_word.start:06.3f} --> ")
    assert first_cue[1].split()[0] == first_word.text

    rc, _, err = _transcript(capsys, "--format", "srt", files / "float.wav", files / "pcm24.wav")
    assert rc == 2 and err == "callstream transcribe: error: --format srt of several files needs --output-dir: " \
                              "one caption file each\n"
    rc, out, _ = _transcript(capsys, "--format", "srt", "--output-dir", tmp_path, files / "float.wav",
                             files / "pcm24.wav")
    assert rc == 0 and (tmp_path / "float.srt").read_text() == srt == (tmp_path / "pcm24.srt").read_text()
    assert out.splitlines() == [f"{files / 'float.wav'} -> {tmp_path / 'float.srt'}",
                                f"{files / 'pcm24.wav'} -> {tmp_path / 'pcm24.srt'}"]


def test_a_file_whose_header_claims_more_frames_than_it_holds_costs_no_memory(tmp_path):
    """A 156-byte FLAC whose STREAMINFO claims 2**36 - 1 frames: sf.read allocated 512 GiB for the
    claim and raised MemoryError; read in blocks, it is a clear AudioFileError."""
    import io

    buf = io.BytesIO()
    sf.write(buf, np.zeros((64, 2), np.float32), 8000, format="FLAC")
    data = bytearray(buf.getvalue())
    total = 8 + 13  # "fLaC", the block header, then STREAMINFO's 36-bit sample count from byte 13
    data[total] |= 0x0F
    data[total + 1 : total + 5] = b"\xff\xff\xff\xff"
    path = tmp_path / "claims.flac"
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == 2**36 - 1
    with pytest.raises(AudioFileError, match="not audio that libsndfile can read"):
        read_audio(path)
