# The two commands: `make demo` (the embedded synthetic experiment) and `make test`.
# Both create .venv on first use from requirements*.txt and constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(abspath $(VENV))/bin/python

.PHONY: demo test bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt
	touch $@

demo: venv
	cd src && PYTHON=$(PY) ./run.sh demo

test: venv
	$(PY) -m pytest -q -rs tests
	cd src && $(PY) grader.py

bench: venv
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) runs src/reports
