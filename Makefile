# Two targets a newcomer runs on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing; torch==2.13.0 goes in first so that no CUDA build is pulled.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sxtquant-installed
PYTEST_ARGS ?=

.PHONY: demo test lint model model-regions figures evaluate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,dask]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sxtquant demo -o demo_output

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The exact recipe of the shipped default model (sxtquant/models/default): data seed,
# preset, schedule (MODEL_EPOCHS epochs at lr 2e-3, then --resume up to MODEL_EPOCHS_TOTAL
# at 5e-4); the same recipe on the labelled data alone is the ablation the model card
# compares with. Takes about an hour and a half on 2 CPU cores.
MODEL_WORK ?= build/model
MODEL_EPOCHS ?= 12
MODEL_EPOCHS_TOTAL ?= 30
MODEL_OPTIONS := --preset tiny --steps-per-epoch 50 --batch-size 8 --crop 128 \
	--bn-momentum 0.1 --membrane-weight 3 --patience 0 --seed 0 --quiet
MODEL_LR := 2e-3
MODEL_TUNE_LR := 5e-4
MODEL_TRAIN := $(MODEL_OPTIONS) --epochs $(MODEL_EPOCHS) --lr $(MODEL_LR)
MODEL_TUNE := $(MODEL_OPTIONS) --epochs $(MODEL_EPOCHS_TOTAL) --lr $(MODEL_TUNE_LR) --resume
MODEL_SCHEDULE := epochs 1-$(MODEL_EPOCHS) at lr $(MODEL_LR), then \
	$(shell echo $$(($(MODEL_EPOCHS) + 1)))-$(MODEL_EPOCHS_TOTAL) at lr $(MODEL_TUNE_LR) (--resume)
model: $(STAMP)
	rm -rf $(MODEL_WORK)
	$(BIN)/sxtquant simulate --dataset $(MODEL_WORK)/data --labeled-tomograms 3 \
		--unlabeled-tomograms 15 --test-tomograms 3 --seed 2026 --quiet
	$(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/run $(MODEL_TRAIN)
	$(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/run $(MODEL_TUNE)
	$(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/supervised-only $(MODEL_TRAIN) \
		--supervised-only
	$(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/supervised-only $(MODEL_TUNE) \
		--supervised-only
	$(BIN)/python tools/ship_model.py --run $(MODEL_WORK)/run --data $(MODEL_WORK)/data \
		--ablation $(MODEL_WORK)/supervised-only --out sxtquant/models/default --checkpoint last \
		--random-forest --otsu \
		--schedule "$(MODEL_SCHEDULE)"

# The candidate of #16 (not shipped yet: `make model-regions`, into build/regions): a region-aware
# 2.5D network (5 input slices; membrane, cell-interior and organelle-interior heads)
# trained on 40 fully labelled simulated tomograms under broad acquisition conditions
# (40 % of them cells cut by the field of view) plus 10 unlabelled ones; schedule
# MODEL_EPOCHS epochs at lr 2e-3, then --resume up to MODEL_EPOCHS_TOTAL at 5e-4. The same
# recipe on the labelled data alone (--supervised-only) is the ablation of the model
# card; the previous shipped model (2D, membrane only) is compared when MODEL_PREVIOUS
# names it; it writes the card into $(RMODEL_WORK)/shipped. The two runs were trained side by side with one thread each (about 50 min
# and 25 min of 2 CPU cores).
RMODEL_WORK ?= build/regions
RMODEL_EPOCHS ?= 20
RMODEL_EPOCHS_TOTAL ?= 26
RMODEL_PREVIOUS ?=
RMODEL_DATA := --dataset $(RMODEL_WORK)/data --stacks --labeled-tomograms 40 \
	--unlabeled-tomograms 10 --test-tomograms 8 --labeled-conditions broad \
	--field-of-view 0.4 --seed 1606 --quiet
RMODEL_OPTIONS := --preset tiny --in-slices 5 --regions --dice-weight 1 --steps-per-epoch 50 \
	--batch-size 8 --crop 128 --bn-momentum 0.1 --membrane-weight 3 --patience 0 --seed 0 --quiet
RMODEL_LR := 2e-3
RMODEL_TUNE_LR := 5e-4
RMODEL_TRAIN := $(RMODEL_OPTIONS) --epochs $(RMODEL_EPOCHS) --lr $(RMODEL_LR)
RMODEL_TUNE := $(RMODEL_OPTIONS) --epochs $(RMODEL_EPOCHS_TOTAL) --lr $(RMODEL_TUNE_LR) --resume
RMODEL_SCHEDULE := epochs 1-$(RMODEL_EPOCHS) at lr $(RMODEL_LR), then \
	$(shell echo $$(($(RMODEL_EPOCHS) + 1)))-$(RMODEL_EPOCHS_TOTAL) at lr $(RMODEL_TUNE_LR) (--resume)
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
model-regions: $(STAMP)
	rm -rf $(RMODEL_WORK)
	$(BIN)/sxtquant simulate $(RMODEL_DATA)
	$(ONE_THREAD) $(BIN)/sxtquant train $(RMODEL_WORK)/data -o $(RMODEL_WORK)/run $(RMODEL_TRAIN) & \
	$(ONE_THREAD) $(BIN)/sxtquant train $(RMODEL_WORK)/data -o $(RMODEL_WORK)/supervised-only \
		$(RMODEL_TRAIN) --supervised-only & wait
	$(ONE_THREAD) $(BIN)/sxtquant train $(RMODEL_WORK)/data -o $(RMODEL_WORK)/run $(RMODEL_TUNE) & \
	$(ONE_THREAD) $(BIN)/sxtquant train $(RMODEL_WORK)/data -o $(RMODEL_WORK)/supervised-only \
		$(RMODEL_TUNE) --supervised-only & wait
	$(BIN)/python tools/ship_model.py --run $(RMODEL_WORK)/run --data $(RMODEL_WORK)/data \
		--ablation $(RMODEL_WORK)/supervised-only --out $(RMODEL_WORK)/shipped --checkpoint last \
		--schedule "$(RMODEL_SCHEDULE)" $(if $(RMODEL_PREVIOUS),--compare previous=$(RMODEL_PREVIOUS))

figures: $(STAMP)
	$(BIN)/python -m paper_figures

# The claims run (3 training seeds per method, ~13 min on 2 cores) into evaluation/results,
# then the evaluation suite, which asserts each claim's interval on the same (cached) run.
evaluate: $(STAMP)
	$(BIN)/python -m evaluation run --simulated --preset tiny --quick --threads 1
	$(BIN)/python -m pytest evaluation/

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
