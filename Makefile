# airflow-mlops: the two commands of the README are `make demo` and `make test`.
# Both install what they need: a virtualenv with Airflow and this provider, the host tools
# for root-filesystem runtimes, and the TFX, serving and drift runtimes (cached outside the repository).

PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
CNCF_K8S_VERSION ?= 10.25.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: most of the suite waits on servers, schedulers and runtime steps, so more
# workers than cores; a file's tests stay together on one worker, slowest files first (tests/conftest.py).
TEST_WORKERS ?= 3

.PHONY: demo test unit lint venv host-tools browser-tools container-tools runtimes images up clean

demo: venv host-tools runtimes
	$(PY) scripts/demo.py

test: venv host-tools browser-tools runtimes images lint
	$(PY) -m pytest -v -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

unit: venv lint
	$(PY) -m pytest -v -m "not integration" $(PYTEST_ARGS)

# ruff: pyflakes, and the process boundary (pyproject.toml: the Airflow side never imports runtime-side code);
# mypy: the whole Airflow side of the package ([tool.mypy]: airflow_mlops/ but runtime_side/)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "apache-airflow==$(AIRFLOW_VERSION)" \
		"apache-airflow-providers-cncf-kubernetes==$(CNCF_K8S_VERSION)" -e ".[test]"
	touch $@

host-tools:
	@scripts/host-tools.sh

# Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser).
browser-tools:
	@scripts/browser-tools.sh

# podman, buildah, runc and debootstrap for the container tests (they skip, saying why, where these cannot run).
container-tools:
	@scripts/container-tools.sh

# docker/'s images, built with podman from local base images, cached by their inputs (tests/containers/images.py);
# the runtime images from the runtimes built above. Nothing is built where containers cannot run.
images: venv runtimes container-tools
	$(PY) -m tests.containers.images

runtimes: venv
	$(VENV)/bin/airflow-mlops runtime build tfx
	$(VENV)/bin/airflow-mlops runtime build serving
	$(VENV)/bin/airflow-mlops runtime build drift
	$(VENV)/bin/airflow-mlops runtime list

# Airflow's UI with the template DAGs, for triggering runs by hand (http://127.0.0.1:8080).
up: venv host-tools runtimes
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH AIRFLOW_HOME=$(CURDIR)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=2 \
	AIRFLOW__API__WORKERS=1 AIRFLOW__SCHEDULER__PARSING_PROCESSES=1 \
	$(VENV)/bin/airflow standalone

clean:
	rm -rf $(VENV) .airflow .pytest_cache
