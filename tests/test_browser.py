"""The caption page in a real browser: Debian's headless Chromium, driven by Playwright.

The server runs in-process (``WebSocketServer`` on port 0, its own event loop in
a thread, the bundled recogniser with enrichment) and serves the page at ``/``.
Chromium's fake microphone plays a WAV made from the bundled sample call, so
the audio goes through getUserMedia, the AudioWorklet, the WebSocket protocol,
the recogniser and back into the page's captions.

Chromium and Playwright are part of set-up (``make setup``: the Debian package
``chromium``, the ``[dev]`` extra); where either is missing these tests fail
with that message instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from models.metrics import ErrorCounter
from models.runtime import ASSETS
from stream.events import (
    ContentFlags, EndOfStream, Enriched, Final, IntentResult, Partial, RedactedSpan, SessionInfo, Word,
)
from stream.websocket import ServerConfig, WebSocketServer

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]
# What the agent says in the first 5.5 s of the sample call (a synthetic voice; README, "What the demo prints").
AGENT = "thank you for calling acme bank my name is sarah how can i help you today"


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    "(`make setup` installs it, or `apt-get install chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need playwright (the [dev] extra: `pip install -e '.[dev]'`)")
    with sync_playwright() as p:
        yield p.chromium


@pytest.fixture(scope="module")
def pipeline():
    from stream.app import build_pipeline

    return build_pipeline(enrich=True)


class ServedPage:
    """``callstream serve`` in-process: the server on its own event loop in a thread."""

    def __init__(self, pipeline, **config) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = WebSocketServer(pipeline, ServerConfig(port=0, **config))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServedPage:
        self.thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/"

    def drop_connections(self) -> int:
        """Cut every session's connection the way a network failure does (no close handshake)."""

        async def drop() -> int:
            conns = [link.conn for link in self.server._links.values() if link.conn is not None]
            for conn in conns:
                conn.transport.abort()
            return len(conns)

        return self.call(drop())


@pytest.fixture(scope="module")
def served(pipeline):
    with ServedPage(pipeline) as page:
        yield page


def _sample_call(seconds: float) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    return audio[: int(seconds * rate)], rate


@pytest.fixture(scope="module")
def agent_wav(tmp_path_factory) -> Path:
    """The agent's first sentence, 16 kHz mono PCM16, with quiet before (the page starting) and after (the endpoint)."""
    audio, rate = _sample_call(5.5)
    speech = soxr.resample(audio[:, 0], rate, 16000)
    quiet = lambda s: np.zeros(int(s * 16000), np.float32)  # noqa: E731
    path = tmp_path_factory.mktemp("audio") / "agent.wav"
    sf.write(path, np.concatenate([quiet(1.0), speech, quiet(2.5)]), 16000, subtype="PCM_16")
    return path


def _browser(chromium, tmp_path: Path, microphone: Path | None = None):
    """A fresh profile; the fake microphone plays ``microphone`` once, then silence."""
    args = [*LAUNCH_ARGS, *([f"--use-file-for-fake-audio-capture={microphone}%noloop"] if microphone else [])]
    return chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                              headless=True, args=args, accept_downloads=True)


def _wait(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _wer(ref: str, hyp: str) -> float:
    counter = ErrorCounter()
    counter.add(ref, hyp)
    return counter.wer


CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[.,](\d{3}) --> (\d\d):(\d\d):(\d\d)[.,](\d{3})")


def _cues(text: str, vtt: bool) -> list[tuple[float, float, str]]:
    """Parse cue blocks strictly: index line, timing line, one text line."""
    if vtt:
        head, _, text = text.partition("\n\n")
        assert head == "WEBVTT"
    cues = []
    for i, block in enumerate(text.strip("\n").split("\n\n"), start=1):
        index, timing, body = block.split("\n")
        m = CUE.fullmatch(timing)
        assert index == str(i) and m, f"bad cue {block!r}"
        t = [int(g) for g in m.groups()]
        start, end = t[0] * 3600 + t[1] * 60 + t[2] + t[3] / 1000, t[4] * 3600 + t[5] * 60 + t[6] + t[7] / 1000
        assert 0 <= start < end, f"cue {i} ends before it starts: {timing}"
        cues.append((start, end, body))
    assert [c[0] for c in cues] == sorted(c[0] for c in cues), "cues out of order"
    return cues


@contextlib.contextmanager
def _foreign_site():
    """Another origin on this machine: an HTTP server on its own port that serves one empty page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page) as site:
        thread = threading.Thread(target=site.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{site.server_address[1]}/"
        finally:
            site.shutdown()
            thread.join(5)


def _download(page, button: str) -> str:
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    return Path(info.value.path()).read_text()


def _partials(page) -> list[tuple[int, str]]:
    return page.eval_on_selector_all(
        "#partials .partial", "ps => ps.map(p => [Number(p.dataset.stable), p.textContent.trim()])")


def _finals(page) -> list[str]:
    return page.eval_on_selector_all("#finals .final .text", "els => els.map(e => e.textContent)")


def test_microphone_captions_status_and_vtt_in_chromium(chromium, served, agent_wav, tmp_path):
    started = time.monotonic()
    with _browser(chromium, tmp_path, agent_wav) as browser:
        page = browser.new_page()
        page.goto(served.url)
        assert page.locator("#conn-status").text_content() == "idle"
        page.get_by_role("button", name="Start microphone").click()
        _wait(lambda: page.locator("#conn-status").text_content() == "connected", 15, "the connected status")
        session = page.locator("#session-id").text_content()
        assert re.fullmatch(r"ws-[0-9a-f]{12}", session), session

        seen = []  # every distinct partial line, in order
        def first_final():
            p = _partials(page)
            if p and p[0] != (seen[-1] if seen else None):
                seen.append(p[0])
            return _finals(page)
        final = _wait(first_final, 30, "a final")[0]
        page.get_by_role("button", name="Stop").click()
        _wait(lambda: page.locator("#conn-status").text_content() == "ended", 15, "the ended status")

        # Partials grew word by word; the stable words of one never changed in a later one.
        assert len(seen) >= 3, seen
        lengths = [len(text.split()) for _, text in seen]
        assert max(lengths) >= 5 and lengths.index(max(lengths)) > 0, seen
        for (s1, t1), (s2, t2) in zip(seen, seen[1:]):
            if s2 >= s1 and s1:
                assert t2.split()[:s1] == t1.split()[:s1], (t1, t2)
        assert _wer(AGENT, final) < 0.4, final
        latency = page.locator(".final .latency").first.text_content()
        assert re.fullmatch(r"first partial \d+\.\d\d s · final \d+\.\d\d s", latency), latency
        assert page.locator("#session-id").text_content() == session

        cues = _cues(_download(page, "WebVTT (.vtt)"), vtt=True)
        assert " ".join(c[2] for c in cues) == " ".join(_finals(page))
        # The speech lies 1.0-6.5 s into the WAV, which starts playing a little before the stream.
        assert cues[0][0] >= 0.3 and cues[-1][1] <= 7.0
    assert time.monotonic() - started < 60


def test_a_dropped_connection_resumes_the_session_without_losing_words(chromium, served, agent_wav, tmp_path):
    with _browser(chromium, tmp_path, agent_wav) as browser:
        page = browser.new_page()
        page.goto(served.url)
        page.get_by_role("button", name="Start microphone").click()
        _wait(lambda: len(_partials(page)) and len(_partials(page)[0][1].split()) >= 3, 20, "a partial of 3 words")
        session = page.locator("#session-id").text_content()
        assert served.drop_connections() == 1
        _wait(lambda: page.locator("#conn-status").text_content() == "connected (resumed 1×)", 15, "the resume")
        final = _wait(lambda: _finals(page), 30, "a final")[0]
        page.get_by_role("button", name="Stop").click()
        _wait(lambda: page.locator("#conn-status").text_content() == "ended", 15, "the ended status")
        # The same session went on: the open utterance was not cut, and the audio sent while
        # reconnecting was not lost.
        assert page.locator("#session-id").text_content() == session
        assert len(_finals(page)) == 1 and _wer(AGENT, final) < 0.4, _finals(page)


def test_a_stereo_file_streams_at_real_time_with_channel_labels_and_enrichment(chromium, served, tmp_path):
    """The file picker: an 8 kHz stereo WAV, decoded and resampled to 16 kHz in the page, two channels."""
    audio, rate = _sample_call(9.45)  # the agent's greeting, then the customer's lost card
    wav = tmp_path / "call.wav"
    sf.write(wav, audio, rate, subtype="PCM_16")
    started = time.monotonic()
    with _browser(chromium, tmp_path) as browser:
        page = browser.new_page()
        page.goto(served.url)
        page.get_by_label("Stream an audio file at real time").set_input_files(wav)
        _wait(lambda: page.locator("#conn-status").text_content() == "ended", 30, "the end of the file")
        elapsed = time.monotonic() - started
        assert "call.wav, stereo" in page.locator("#audio-status").text_content()
        finals = page.eval_on_selector_all(
            "#finals .final", "els => els.map(e => [e.dataset.channel, e.querySelector('.channel').textContent,"
                              " e.querySelector('.text').textContent, e.querySelector('.badges').textContent])")
        assert all(label == channel for channel, label, _, _ in finals), finals
        said = {c: " ".join(text for channel, _, text, _ in finals if channel == c) for c in ("agent", "customer")}
        assert _wer(AGENT, said["agent"]) < 0.4, finals
        assert _wer("i lost my card yesterday and i need to block it", said["customer"]) < 0.4, finals
        assert any(c == "customer" and "intent: lost_or_stolen_card" in b for c, _, _, b in finals), finals
        srt = _cues(_download(page, "SubRip (.srt)"), vtt=False)
        assert {text.split(": ", 1)[0] for _, _, text in srt} == {"agent", "customer"}
    assert 9.45 <= elapsed < 30.0  # real time: not faster than the audio


def test_a_wrong_token_or_a_foreign_origin_is_refused(chromium, pipeline, tmp_path):
    with ServedPage(pipeline, token="s3cret") as served, _browser(chromium, tmp_path) as browser:
        page = browser.new_page()
        page.goto(served.url)
        page.get_by_text("Settings", exact=True).press("Enter")  # the keyboard opens the settings
        page.get_by_label("Access token").fill("wrong")
        page.get_by_role("button", name="Start microphone").click()
        _wait(lambda: page.locator("#conn-status").text_content() == "failed", 15, "the refusal")
        assert "could not connect" in page.locator("#message").text_content()

        page = browser.new_page()
        page.goto(f"{served.url}#token=s3cret")  # the right token, sent as the subprotocol token.s3cret
        page.get_by_role("button", name="Start microphone").click()
        _wait(lambda: page.locator("#conn-status").text_content() == "connected", 15, "the connected status")
        page.get_by_role("button", name="Stop").click()
        _wait(lambda: page.locator("#conn-status").text_content() == "ended", 15, "the ended status")

        # Another site's page (a server on another port) opening a WebSocket with the right token: 403.
        # It is a real loopback server: Chromium's local-network checks would block a public page first.
        page = browser.new_page()
        with _foreign_site() as foreign:
            page.goto(foreign)
        outcome = page.evaluate("""url => new Promise(done => {
            const ws = new WebSocket(url, ["callstream", "token.s3cret"]);
            ws.onopen = () => done("open");
            ws.onclose = (e) => done(`closed ${e.code}`);
        })""", f"ws://127.0.0.1:{served.server.port}/")
        assert outcome == "closed 1006"
        refused = served.server.metrics.refused
        assert refused.labels(reason="origin")._value.get() == 1 and refused.labels(reason="auth")._value.get() == 1


@contextlib.contextmanager
def _scripted_server(events):
    """The page's files, and a WebSocket that answers any config with ``events``: the page's rendering alone."""
    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    from stream import codec
    from stream.web import StaticFiles, select_subprotocol

    files = StaticFiles()
    loop = asyncio.new_event_loop()

    def page(connection, request):
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        f = files.get(request.path)
        return Response(200, "OK", Headers([("Content-Type", f.content_type), ("Content-Length", str(len(f.body)))]),
                        f.body) if f else connection.respond(404, "")

    async def script(ws):
        await ws.recv()
        for event in events:
            await ws.send(codec.encode(event).decode())
        async for message in ws:
            if message == '{"type":"end"}':
                await ws.send(codec.encode(EndOfStream(stream_id="scripted")).decode())
                return

    async def start():
        return await serve(script, "127.0.0.1", 0, process_request=page,
                           select_subprotocol=lambda _conn, offered: select_subprotocol(offered))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _timed(text, start, step=0.5):
    return tuple(Word(w, start + i * step, start + i * step + 0.4, 0.9) for i, w in enumerate(text.split()))


def test_flags_channels_and_caption_files_render_from_the_events(chromium, tmp_path):
    """Scripted events (no recogniser): redacted PII and masked profanity, partial stability, exact files."""
    card = "my card is four one one one"
    words = _timed(card, 1.0)
    final = Final(stream_id="s", channel="customer", utterance_id="s/customer/0", utterance_index=0, text=card,
                  words=words, start=0.8, end=4.2)
    swear = Final(stream_id="s", channel="agent", utterance_id="s/agent/0", utterance_index=0,
                  text="well damn that is a long sentence that goes on past one caption line of text",
                  words=_timed("well damn that is a long sentence that goes on past one caption line of text", 5.0, 0.3),
                  start=5.0, end=9.6)
    events = [
        SessionInfo(stream_id="scripted-1", session_id="scripted-1", grace_s=30.0),
        Partial(stream_id="s", channel="customer", utterance_id="s/customer/0", utterance_index=0,
                text="my car", words=_timed("my car", 1.0), stable=1, start=0.8, end=1.9),
        Partial(stream_id="s", channel="customer", utterance_id="s/customer/0", utterance_index=0,
                text="my card is for", words=_timed("my card is for", 1.0), stable=3, start=0.8, end=2.9),
        final,
        Enriched(transcript=final, intent=IntentResult("card_info", 0.9),
                 flags=ContentFlags(flagged=("card",), spans=(RedactedSpan("card", 3, 6, 2.5, 4.4),)),
                 redacted_text="my card is #### ### ### ###"),
        swear,
        Enriched(transcript=swear, flags=ContentFlags(profanity=1.0, flagged=("profanity",),
                                                      spans=(RedactedSpan("profanity", 1, 1, 5.3, 5.7),)),
                 redacted_text="well d*** that is a long sentence that goes on past one caption line of text"),
    ]
    stereo = tmp_path / "quiet.wav"  # two channels, so the captions name them
    sf.write(stereo, np.zeros((2 * 8000, 2), np.float32), 8000, subtype="PCM_16")
    with _scripted_server(events) as url, _browser(chromium, tmp_path) as browser:
        page = browser.new_page()
        page.goto(url)
        # Keyboard order: settings, microphone, file picker, the captions (Stop and downloads are disabled).
        order = []
        for _ in range(4):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        assert order == ["SUMMARY", "mic-start", "file-input", "caption-box"]
        page.get_by_label("Stream an audio file at real time").set_input_files(stereo)
        _wait(lambda: page.locator("#conn-status").text_content() == "ended", 15, "the end of the file")
        assert page.locator("#session-id").text_content() == "scripted-1"
        customer = page.locator('.final[data-channel="customer"]')
        assert customer.locator(".text").text_content() == "my card is #### ### ### ###"
        assert customer.locator(".word.pii").all_text_contents() == ["####", "###", "###", "###"]
        assert customer.locator(".word.pii").first.get_attribute("title") == "redacted card"
        assert customer.locator(".badges").text_content() == "card redactedintent: card_info"
        assert customer.locator(".meta").text_content() == "00:00.8–00:04.2 customer"
        agent = page.locator('.final[data-channel="agent"]')
        assert agent.locator(".word.profanity").text_content() == "d***"
        assert agent.locator(".badges").text_content() == "profanity masked"
        assert page.locator("#partials .partial").count() == 0  # the final replaced its partial

        vtt = _download(page, "WebVTT (.vtt)")
        assert vtt == (
            "WEBVTT\n\n"
            "1\n00:00:01.000 --> 00:00:04.400\n<v customer>my card is #### ### ### ###\n\n"
            "2\n00:00:05.000 --> 00:00:07.500\n<v agent>well d*** that is a long sentence that\n\n"
            "3\n00:00:07.400 --> 00:00:09.900\n<v agent>goes on past one caption line of text\n"
        )
        srt = _download(page, "SubRip (.srt)")
        assert srt.startswith("1\n00:00:01,000 --> 00:00:04,400\ncustomer: my card is #### ### ### ###\n\n2\n")
        assert len(_cues(srt, vtt=False)) == 3
        assert _download(page, "Text (.txt)") == (
            "[00:00.8-00:04.2] customer: my card is #### ### ### ###\n"
            "[00:05.0-00:09.6] agent: well d*** that is a long sentence that goes on past one caption line of text\n"
        )
