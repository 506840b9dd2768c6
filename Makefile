# Two commands: `make run` (set up, then train and evaluate the default experiment) and
# `make test` (set up, then run the tests). Set-up is a .venv in the repo, made once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned so that pip takes a local or CUDA build of exactly this version, and the package's
# own `torch>=2.6` is then already satisfied (an unpinned torch pulls several GB of CUDA wheels).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test bench bench-end-to-end bench-presets clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup  ## train and evaluate the default experiment; pass overrides as ARGS="z_dim=20 ..."
	$(BIN)/python -m inference.train $(ARGS)

test: setup  ## the linter, then the whole test suite; pass pytest options as ARGS="-k estimators" (ARGS="-m 'not slow'": the fast subset)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

bench: setup  ## the benchmarks of BENCHMARKS.md
	$(BIN)/python -m bench.train_step
	$(BIN)/python -m bench.estimator

bench-end-to-end: setup  ## iwae_mnist_1layer, 10 epochs and K=5000 on the test set, beside hand-written PyTorch (needs $$VAE_DATA; about half an hour)
	$(BIN)/python -m bench.end_to_end

bench-presets: setup  ## the paper presets on a 10-minute CPU budget each, beside hand-written PyTorch (over an hour)
	$(BIN)/python -m bench.presets

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
