# The two commands: `make demo` (the embedded synthetic experiment) and `make test`.
# Both create .venv on first use from requirements*.txt and constraints.txt.
# `make test-course-env` runs the course-path tests in the course's own environment
# (Python 3.8 and torch 1.10.0, requirements-course.txt) as well.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(abspath $(VENV))/bin/python
# Python 3.8 from this machine: python3.8 on PATH, else pyenv's.
COURSE_PYTHON ?= $(shell for p in python3.8 $$(pyenv root 2>/dev/null)/versions/3.8*/bin/python3.8; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 8)' 2>/dev/null && { echo "$$p"; break; }; done)
COURSE_VENV := .venv-course

.PHONY: demo test test-course-env bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt
	touch $@

demo: venv
	cd src && PYTHON=$(PY) ./run.sh demo

test: venv
	$(PY) -m pytest -q -rs tests --ignore=tests/test_course_env.py
	cd src && $(PY) grader.py

$(COURSE_VENV)/.installed: requirements-course.txt
	test -x $(COURSE_VENV)/bin/python || $(COURSE_PYTHON) -m venv $(COURSE_VENV)
	$(COURSE_VENV)/bin/python -m pip install -q -r requirements-course.txt
	touch $@

ifeq ($(COURSE_PYTHON),)
test-course-env:
	@if [ "$$CI" = true ]; then echo "error: CI needs Python 3.8 for the course-environment tests" >&2; exit 1; fi
	@echo "skipped: no Python 3.8 here (pyenv install 3.8, or conda create -n py38 python=3.8, then make test-course-env)"
else
test-course-env: venv $(COURSE_VENV)/.installed
	OTHER_PYTHON=$(PY) $(COURSE_VENV)/bin/python -m pytest -q -rs tests/test_course_env.py
endif

bench: venv
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) $(COURSE_VENV) runs src/reports
