"""The HTTP rules of ``callstream serve`` without a server: static files, origin, token, subprotocol."""

import pytest

from stream.web import STATIC_DIR, StaticFiles, normalize_origin, origin_allowed, select_subprotocol, token_matches


@pytest.mark.parametrize(
    "origin,host,allowed,ok",
    [
        (None, "127.0.0.1:8765", (), True),  # not a browser
        ("http://127.0.0.1:8765", "127.0.0.1:8765", (), True),  # the server's own page
        ("http://LOCALHOST:8765", "localhost:8765", (), True),
        ("https://captions.example.com", "captions.example.com", (), True),  # default ports on both sides
        ("https://captions.example.com:443", "captions.example.com", (), True),
        ("http://captions.example.com", "captions.example.com:80", (), True),
        ("http://[::1]:8765", "[::1]:8765", (), True),
        ("http://127.0.0.1:8766", "127.0.0.1:8765", (), False),  # another port is another origin
        ("http://evil.test", "127.0.0.1:8765", (), False),
        ("https://captions.example.com", "captions.example.com:8765", (), False),
        ("http://evil.test", None, (), False),
        ("null", "127.0.0.1:8765", (), False),  # sandboxed frames, file:// pages
        ("http://127.0.0.1:8765/path", "127.0.0.1:8765", (), False),  # not an origin
        ("javascript://127.0.0.1:8765", "127.0.0.1:8765", (), False),
        ("http://127.0.0.1:99999", "127.0.0.1:99999", (), False),
        ("https://app.example.com", "api.example.com", ("https://app.example.com",), True),
        ("https://app.example.com:443", "api.example.com", ("https://APP.example.com/",), True),
        ("http://app.example.com", "api.example.com", ("https://app.example.com",), False),  # scheme matters
        ("https://app.example.com:8443", "api.example.com", ("https://app.example.com",), False),
        ("https://evil.app.example.com", "api.example.com", ("https://app.example.com",), False),
    ],
)
def test_origin_rule(origin, host, allowed, ok):
    assert origin_allowed(origin, host, allowed) is ok


def test_normalize_origin_fills_default_ports_and_refuses_non_origins():
    assert normalize_origin("HTTPS://Example.COM") == ("https", "example.com", 443)
    assert normalize_origin("ws://example.com:81") == ("ws", "example.com", 81)
    assert normalize_origin("example.com") is None
    assert normalize_origin("https://user@example.com") is None
    assert normalize_origin("https://example.com/?q=1") is None


@pytest.mark.parametrize(
    "authorization,protocols,target,ok",
    [
        ("Bearer s3cret", (), "/", True),
        (None, ("callstream", "token.s3cret"), "/", True),
        (None, ("callstream",), "/?token=s3cret", True),
        (None, ("callstream",), "/?a=1&token=s3%63ret", True),  # percent-encoded in the query
        ("Bearer wrong", ("token.wrong",), "/?token=s3cret", True),  # any one carrier is enough
        (None, (), "/", False),
        ("Bearer s3cre", (), "/", False),
        ("s3cret", (), "/", False),  # without the scheme
        ("Basic s3cret", (), "/", False),
        (None, ("callstream", "token.s3cret2"), "/", False),
        (None, ("s3cret",), "/", False),  # a bare subprotocol is not a token
        (None, (), "/?token=", False),
        (None, (), "/?tok=s3cret", False),
        ("Bearer sécret", (), "/", False),  # non-ASCII compares as bytes, no TypeError
    ],
)
def test_token_rule(authorization, protocols, target, ok):
    assert token_matches("s3cret", authorization=authorization, protocols=protocols, target=target) is ok


def test_token_comparison_is_constant_time(monkeypatch):
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    token_matches("s3cret", authorization="Bearer x", protocols=["token.y"], target="/?token=z")
    assert compared == [(b"x", b"s3cret"), (b"y", b"s3cret"), (b"z", b"s3cret")]


def test_subprotocol_is_answered_only_when_offered():
    assert select_subprotocol(["callstream", "token.abc"]) == "callstream"
    assert select_subprotocol(["token.abc", "callstream"]) == "callstream"
    assert select_subprotocol([]) is None
    assert select_subprotocol(["token.abc"]) is None  # never echo a token


def test_static_files_are_the_page_folder_and_nothing_else(tmp_path):
    files = StaticFiles()
    assert files.get("/").body == (STATIC_DIR / "index.html").read_bytes()
    assert files.get("/?token=x").content_type.startswith("text/html")
    assert files.get("/app.js").content_type == "text/javascript; charset=utf-8"
    assert files.get("/pcm-worklet.js") is not None and files.get("/style.css").content_type.startswith("text/css")
    for target in ["/../web.py", "/..%2fweb.py", "/%2e%2e/web.py", "//etc/passwd", "/static/app.js", "/APP.JS",
                   "/app.js/", "/index.html/..", "\\app.js", "/nope.js"]:
        assert files.get(target) is None, target
    # Only known types, one level deep: a stray file or folder is not served.
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "notes.txt").write_text("private")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.js").write_text("")
    assert sorted(StaticFiles(tmp_path).files) == ["/", "/index.html"]
