"""Coverage-guided fuzz targets (atheris), one module per target.

Each module has ``TestOneInput(data: bytes)`` and ``main()``; run one with
``python -m tests.fuzz.fuzz_codec [libFuzzer flags] [corpus dirs]``. The
contract every target checks: any input either works or raises a documented
error (``stream.errors.InputError`` and its subclasses); any other exception,
a hang (libFuzzer ``-timeout``) or runaway memory (``-rss_limit_mb``) is a
crash. Seed corpora live in ``tests/fuzz/corpus/<target>/`` and include every
input that once crashed a target. ``tests/test_fuzz.py`` runs each target for a
fixed number of inputs; ``python -m bench.fuzz --minutes M`` runs them long.
"""
