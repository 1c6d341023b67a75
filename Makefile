# kubeloop — `make demo` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= .kubeloop-demo
ROWS   ?= 10000
# torch first, pinned to the CPU build that lies on these machines' disk (see README).
TORCH  ?= torch==2.13.0

.PHONY: venv demo test lint typecheck golden bench images clean

$(BIN)/kubeloop: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/kubeloop

# The whole loop live: needs prometheus and prometheus-alertmanager on PATH (README).
demo: venv
	$(BIN)/kubeloop demo --rows $(ROWS) --out $(DEMO)

test: venv lint typecheck
	$(BIN)/pytest -q -n 2 --dist loadgroup

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable import hook, so it checks the package through a
# link named `kubeloop` that points at this folder.
typecheck: venv
	@mkdir -p build/typecheck && ln -sfn $(CURDIR) build/typecheck/kubeloop
	cd build/typecheck && MYPYPATH=. $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p kubeloop

# Re-generate the golden compiled IR after an intended pipeline change.
golden: venv
	$(BIN)/python -m tests.pipelines.golden

bench: venv
	$(BIN)/python tests/benchmarks/bench_pipeline.py
	$(BIN)/python tests/benchmarks/bench_train.py

# The component and serving images, offline (k8s/images/README.md): needs a running Docker
# daemon (`dockerd >/tmp/dockerd.log 2>&1 &`); BASE_IMAGE, TORCH_INDEX_URL, VARIANT pass through.
images: venv
	PYTHON=$(CURDIR)/$(BIN)/python k8s/images/build.sh

clean:
	rm -rf build $(DEMO) .kubeloop .mypy_cache .ruff_cache .pytest_cache
