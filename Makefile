# msewatch: the two quick-start targets are `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DEMO    ?= tests/data/corpus/mse_rc4_libtorrent_transmission.pcap

.PHONY: demo test setup system-deps bench lint zeek-test fuzz plugin clean

# Two stamps: `make demo` needs only the package and its runtime dependencies (.venv/.base);
# `make setup` / `make test` add the test extra (pytest, btest, playwright ...: .venv/.test).
# Debian's python3 needs python3-venv for `-m venv`; setup-system.sh installs it when root.
# The C packet path (setup.py, bridge/msewatch/_fastpath.c) needs gcc and the Python headers;
# without them the install still succeeds with the pure-Python path, and the last line says so.
$(VENV)/.base: pyproject.toml setup.py bridge/msewatch/_fastpath.c bridge/msewatch/_decide.c bridge/msewatch/_wire.c
	$(PY) -m venv $(VENV) || (rm -rf $(VENV) && tools/setup-system.sh venv && $(PY) -m venv $(VENV))
	@tools/setup-system.sh build $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@$(BIN)/python -c 'from msewatch.fastpath import status; print(status())'
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.test

# Suricata 7 (bookworm-backports), ndpiReader, jq, tcpdump: needed by the Suricata tests and
# benchmarks. Installs when run as root on Debian; otherwise says what is missing.
system-deps:
	@tools/setup-system.sh

demo: $(VENV)/.base
	$(BIN)/msewatch analyze $(DEMO) -o demo-verdicts.jsonl
	@echo "verdicts written to demo-verdicts.jsonl"

# The Zeek tests (tests/test_zeek_real.py: the btest suite, end-to-end parity, the Zeek
# benchmark's smoke run, zkg) run when a zeek is on PATH or at /opt/zeek/bin/zeek (what
# ../shared/zeek/build.sh installs); otherwise one line says they were skipped.
ZEEK_BIN := $(shell command -v zeek 2>/dev/null || { test -x /opt/zeek/bin/zeek && echo /opt/zeek/bin/zeek; })

test: setup system-deps
ifeq ($(strip $(ZEEK_BIN)),)
	@echo "Zeek tests skipped: no Zeek installed (no zeek on PATH or at /opt/zeek/bin/zeek)"
	$(BIN)/pytest -q --ignore=tests/test_zeek_real.py
else
	@$(MAKE) --no-print-directory plugin
	PATH="$(dir $(ZEEK_BIN)):$$PATH" $(BIN)/pytest -q
endif

# The native evidence recorder (plugin/, a Zeek plugin) in ./build, where the tests, the
# benchmark and zkg find it. With a C++ compiler, cmake and the headers Zeek's include
# (libpcap, OpenSSL; `make system-deps` installs them when a Zeek is there) a failed build is
# an error; without them one line says so and the Zeek tests run the script recorder only.
plugin:
ifeq ($(strip $(ZEEK_BIN)),)
	@echo "native recorder not built: no Zeek installed"
else
	@PATH="$(dir $(ZEEK_BIN)):$$PATH" MSEWATCH_PLUGIN=strict plugin/build.sh
endif

bench: setup system-deps
	@$(MAKE) --no-print-directory plugin
	$(BIN)/python benchmarks/run_all.py

zeek-test: setup
	PATH="$(if $(strip $(ZEEK_BIN)),$(dir $(ZEEK_BIN)):)$$PATH" tests/zeek/run

# The long fuzz run (pcap reader, evidence decoder, annotate, config); `make test` runs a
# bounded smoke of the same targets. FUZZ_MINUTES=60 make fuzz for longer (docs/failure-modes.md).
FUZZ_MINUTES ?= 10
fuzz: setup
	$(BIN)/python -m tests.fuzz --minutes $(FUZZ_MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info demo-verdicts.jsonl .pytest_cache
