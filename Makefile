# Two commands: `make run` (set up, then train and evaluate the default experiment) and
# `make test` (set up, then run the tests). Set-up is a .venv in the repo, made once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned so that pip takes a local or CUDA build of exactly this version, and the package's
# own `torch>=2.6` is then already satisfied (an unpinned torch pulls several GB of CUDA wheels).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test docs docs-figures bench bench-end-to-end bench-distributed bench-presets gpu-wheels gpu-site bench-gpu bench-paper clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH) -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup  ## train and evaluate the default experiment; pass overrides as ARGS="z_dim=20 ..."
	$(BIN)/python -m inference.train $(ARGS)

# Test workers (pytest-xdist): one per core, each with one torch thread (tests/conftest.py);
# TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= auto

test: setup  ## the linter, then the whole test suite; pass pytest options as ARGS="-k estimators" (ARGS="-m 'not slow'": the fast subset)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(ARGS)

# The documentation site, strictly: a broken link, a page left out of the navigation or an API
# reference that does not resolve fails the build (as tests/test_docs.py does in make test).
docs: setup  ## build the documentation site into site/ (open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The tutorials' figures, drawn by small runs of the documented commands (each the preset with
# fewer epochs, points and particles) and copied into docs/figures/: never edited by hand.
FIGURE_RUNS := .figure_runs
FIGURES := docs/figures
SMALL := train.progress=false evaluation.max_points=100 evaluation.num_particles=100
docs-figures: setup  ## regenerate docs/figures/ from small runs (about 15 minutes on 2 cores)
	rm -rf $(FIGURE_RUNS) && mkdir -p $(FIGURES)
	$(BIN)/python -m inference.train $(SMALL) hydra.run.dir=$(FIGURE_RUNS)/default
	$(BIN)/python -m inference.train experiment=ss_digits $(SMALL) hydra.run.dir=$(FIGURE_RUNS)/ss_digits
	$(BIN)/python -m inference.train experiment=denoise_digits $(SMALL) hydra.run.dir=$(FIGURE_RUNS)/denoise_digits
	$(BIN)/python -m inference.train experiment=pendulum_sequences $(SMALL) train.epochs=100 evaluation.filter_particles=1000 hydra.run.dir=$(FIGURE_RUNS)/pendulum_sequences
	$(BIN)/python -m inference.train experiment=pendulum_dynamics $(SMALL) train.epochs=100 evaluation.filter_particles=1000 hydra.run.dir=$(FIGURE_RUNS)/pendulum_dynamics
	$(BIN)/python -m inference.train --multirun experiment=compare_guides guide=normal,full_rank,iaf $(SMALL) train.epochs=100 evaluation.gap_points=20 hydra.sweep.dir=$(FIGURE_RUNS)/compare_guides
	$(BIN)/python -m inference.compare $(FIGURE_RUNS)/compare_guides
	for plot in prior_samples reconstructions traversals log_px_against_k training_curve; do cp $(FIGURE_RUNS)/default/plots/$$plot.png $(FIGURES)/default_$$plot.png; done
	for plot in class_analogies latent_by_class; do cp $(FIGURE_RUNS)/ss_digits/plots/$$plot.png $(FIGURES)/ss_digits_$$plot.png; done
	cp $(FIGURE_RUNS)/denoise_digits/plots/denoising.png $(FIGURES)/denoise_digits_denoising.png
	cp $(FIGURE_RUNS)/pendulum_sequences/plots/forecast.png $(FIGURES)/pendulum_sequences_forecast.png
	cp $(FIGURE_RUNS)/pendulum_sequences/plots/forecast.gif $(FIGURES)/pendulum_sequences_forecast.gif
	cp $(FIGURE_RUNS)/pendulum_dynamics/plots/intervention.png $(FIGURES)/pendulum_dynamics_intervention.png
	cp $(FIGURE_RUNS)/pendulum_dynamics/plots/forecast.png $(FIGURES)/pendulum_dynamics_forecast.png
	for plot in compare_bars compare_curves; do cp $(FIGURE_RUNS)/compare_guides/$$plot.png $(FIGURES)/compare_guides_$$plot.png; done

bench: setup  ## the benchmarks of the docs' benchmarks pages
	$(BIN)/python -m bench.train_step
	$(BIN)/python -m bench.estimator
	$(BIN)/python -m bench.ss_step
	$(BIN)/python -m bench.likelihood

bench-end-to-end: setup  ## iwae_mnist_1layer, 10 epochs and K=5000 on the test set, beside hand-written PyTorch (needs $$VAE_DATA; about half an hour)
	$(BIN)/python -m bench.end_to_end

bench-distributed: setup  ## an MNIST run on two processes of one thread against one process of two (needs $$VAE_DATA; about 3 minutes)
	$(BIN)/python -m bench.distributed

bench-presets: setup  ## the paper presets on a 10-minute CPU budget each, beside hand-written PyTorch (over an hour)
	$(BIN)/python -m bench.presets

# A GPU machine of the kind this project is lent has its own python3 with a CUDA build of torch
# and most of the scientific stack, no network, and none of Pyro, Hydra or ArviZ. `make gpu-wheels`
# (here, where the registries are reachable) saves those, at the versions of .venv, to .whl/; carried
# there, `make bench-gpu` installs them into .gpu-site/ without the CPU set-up and runs the CUDA tests
# and the benchmarks on CUDA. BENCH_DEVICE=cpu runs the same commands on the CPU, to check the set-up.
GPU_PYTHON ?= python3
BENCH_DEVICE ?= cuda
GPU_DEPENDENCIES := pyro-ppl|pyro-api|hydra-core|omegaconf|antlr4-python3-runtime|arviz|xarray-einstats|h5netcdf|platformdirs
CUDA_TESTS := tests/inference/test_train.py tests/inference/training/test_loop.py tests/inference/training/test_capture.py tests/inference/runs/test_resume.py tests/inference/estimators/test_memory.py tests/inference/estimators/test_graphs.py
GPU_ENV := PYTHONPATH=$(CURDIR)/.gpu-site:$(CURDIR)
# MNIST for the end-to-end benchmark: a copy of the benchmark data's mnist/ folder in BENCH_DATA/
BENCH_DATA ?= .bench_data

gpu-wheels: setup  ## here: the dependencies the GPU machine lacks, as wheels (an sdist where there is none) in .whl/
	rm -rf .whl && mkdir .whl
	$(BIN)/python -m pip freeze | grep -iE '^($(GPU_DEPENDENCIES))==' | xargs $(BIN)/python -m pip download --quiet --no-deps -d .whl

# The --captured table runs one process per architecture, and a failure does not stop the rest:
# on torch 2.11 the hand-written captured step crashed (illegal memory access) after the suite's
# capture in the IWAE architecture's process (docs/benchmarks/gpu.md).
bench-gpu:  ## there: the CUDA tests, then bench.train_step (times, host reads), bench.estimator, bench.end_to_end and bench.distributed on CUDA (needs .whl/ from make gpu-wheels)
	$(GPU_PYTHON) -c "import sys, torch; print('# torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'); \
		sys.exit('$(BENCH_DEVICE)' == 'cuda' and not torch.cuda.is_available() and 'bench-gpu: no CUDA device here (BENCH_DEVICE=cpu runs it on the CPU)')"
	$(MAKE) --no-print-directory gpu-site
	$(GPU_ENV) $(GPU_PYTHON) -m pytest -p no:cacheprovider -m cuda $(CUDA_TESTS)
	$(GPU_ENV) $(GPU_PYTHON) -m bench.train_step --device $(BENCH_DEVICE) --batch-sizes 20,128,512 --repeats 5 --deferred
	-$(GPU_ENV) $(GPU_PYTHON) -m bench.train_step --device $(BENCH_DEVICE) --only digits --batch-sizes 20,128,512 --repeats 5 --graph $(if $(filter cuda,$(BENCH_DEVICE)),--captured)
	-$(GPU_ENV) $(GPU_PYTHON) -m bench.train_step --device $(BENCH_DEVICE) --only IWAE --batch-sizes 20,128,512 --repeats 5 --graph $(if $(filter cuda,$(BENCH_DEVICE)),--captured)
	$(GPU_ENV) $(GPU_PYTHON) -m bench.train_step --device $(BENCH_DEVICE) --batch-sizes 128 --host-syncs
	$(GPU_ENV) $(GPU_PYTHON) -m bench.estimator --device $(BENCH_DEVICE) --points 100
	if [ -d "$(BENCH_DATA)/mnist" ]; then $(GPU_ENV) $(GPU_PYTHON) -m bench.end_to_end --device $(BENCH_DEVICE) --data $(BENCH_DATA) --no-run; \
	else echo "bench-gpu: end to end skipped: no mnist/ in BENCH_DATA=$(BENCH_DATA) (copy the benchmark data's mnist/ into .bench_data/ and bring it along)"; fi
	if [ -d "$(BENCH_DATA)/mnist" ]; then $(GPU_ENV) $(GPU_PYTHON) -m bench.distributed --device $(BENCH_DEVICE) --data $(BENCH_DATA) --repeats 2; fi

gpu-site:  ## there: the dependencies from .whl/ into .gpu-site/, without the CPU set-up
	test -d .whl || { echo "no .whl/ here; run make gpu-wheels where the package registries are reachable, and bring .whl/ along"; exit 1; }
	rm -rf .gpu-site && $(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-build-isolation --no-cache-dir --target .gpu-site .whl/*

# The IWAE paper's 1-layer protocol (3280 epochs) goes on from runs/iwae_protocol/ for BUDGET
# seconds of wall time, captured step, test log p-hat at each stage end: carry the folder back
# and forth between calls of at most 10 minutes
BUDGET ?= 480
bench-paper: gpu-site  ## there: continue the IWAE paper's protocol from runs/iwae_protocol/ for BUDGET seconds (needs BENCH_DATA/mnist)
	$(GPU_ENV) $(GPU_PYTHON) -m bench.paper_protocol --data $(BENCH_DATA) --budget-seconds $(BUDGET) objective=graph_trace_elbo train.cuda_graphs=true

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .gpu-site site
