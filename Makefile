# Two targets a newcomer runs on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing; torch==2.13.0 goes in first so that no CUDA build is pulled.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sxtquant-installed
PYTEST_ARGS ?=

.PHONY: demo test lint model model-2d figures evaluate clean

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

# The exact recipe of the shipped default model (sxtquant/models/default, issue #16): a
# region-aware 2.5D network (tiny preset, 5 input slices; membrane, cell-interior and
# organelle-interior heads, Dice beside the cross-entropy) trained on 40 fully labelled
# simulated tomograms under broad acquisition conditions (40 % of them cells cut by the
# field of view) plus 10 unlabelled ones; schedule MODEL_EPOCHS epochs at lr 2e-3, then
# --resume up to MODEL_EPOCHS_TOTAL at 5e-4; then a second run starts from that model
# (--init; a new optimiser state) for MODEL_LONG_EPOCHS epochs at 5e-4 and --resume up to
# MODEL_LONG_TOTAL at 1.5e-4 (52 epochs in all). The same recipe on the labelled data alone
# (--supervised-only) is the ablation of the model card; the 26-epoch model of the first
# run, and the previous shipped model (2D, membrane only; `make model-2d`), shipped as
# membrane-2d (MODEL_PREVIOUS; empty: none), are compared. The runs train side by side, two
# at a time, with one thread each: about 100 min of 2 CPU cores, then 15 min of scoring.
MODEL_WORK ?= build/regions
MODEL_OUT ?= sxtquant/models/default
MODEL_EPOCHS ?= 20
MODEL_EPOCHS_TOTAL ?= 26
MODEL_LONG_EPOCHS ?= 20
MODEL_LONG_TOTAL ?= 26
MODEL_PREVIOUS ?= membrane-2d
MODEL_DATA := --dataset $(MODEL_WORK)/data --stacks --labeled-tomograms 40 \
	--unlabeled-tomograms 10 --test-tomograms 8 --labeled-conditions broad \
	--field-of-view 0.4 --seed 1606 --quiet
MODEL_OPTIONS := --preset tiny --in-slices 5 --regions --dice-weight 1 --steps-per-epoch 50 \
	--batch-size 8 --crop 128 --bn-momentum 0.1 --membrane-weight 3 --patience 0 --seed 0 --quiet
MODEL_LR := 2e-3
MODEL_TUNE_LR := 5e-4
MODEL_LONG_LR := 5e-4
MODEL_LONG_TUNE_LR := 1.5e-4
MODEL_TRAIN := $(MODEL_OPTIONS) --epochs $(MODEL_EPOCHS) --lr $(MODEL_LR)
MODEL_TUNE := $(MODEL_OPTIONS) --epochs $(MODEL_EPOCHS_TOTAL) --lr $(MODEL_TUNE_LR) --resume
MODEL_LONG := $(MODEL_OPTIONS) --epochs $(MODEL_LONG_EPOCHS) --lr $(MODEL_LONG_LR)
MODEL_LONG_TUNE := $(MODEL_OPTIONS) --epochs $(MODEL_LONG_TOTAL) --lr $(MODEL_LONG_TUNE_LR) --resume
add = $(shell echo $$(($(1) + $(2))))
MODEL_SCHEDULE := epochs 1-$(MODEL_EPOCHS) at lr $(MODEL_LR), then \
	$(call add,$(MODEL_EPOCHS),1)-$(MODEL_EPOCHS_TOTAL) at lr $(MODEL_TUNE_LR) (--resume); \
	a second run started from that model (--init, a new optimiser state) trained epochs \
	$(call add,$(MODEL_EPOCHS_TOTAL),1)-$(call add,$(MODEL_EPOCHS_TOTAL),$(MODEL_LONG_EPOCHS)) \
	at lr $(MODEL_LONG_LR), then \
	$(call add,$(MODEL_EPOCHS_TOTAL),$(MODEL_LONG_EPOCHS) + 1)-$(call add,$(MODEL_EPOCHS_TOTAL),$(MODEL_LONG_TOTAL)) \
	at lr $(MODEL_LONG_TUNE_LR) (--resume)
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
model: $(STAMP)
	rm -rf $(MODEL_WORK)
	$(BIN)/sxtquant simulate $(MODEL_DATA)
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/run $(MODEL_TRAIN) & \
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/supervised-only \
		$(MODEL_TRAIN) --supervised-only & wait
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/run $(MODEL_TUNE) & \
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/supervised-only \
		$(MODEL_TUNE) --supervised-only & wait
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/long $(MODEL_LONG) \
		--init $(MODEL_WORK)/run/last & \
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/supervised-only-long \
		$(MODEL_LONG) --supervised-only --init $(MODEL_WORK)/supervised-only/last & wait
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/long $(MODEL_LONG_TUNE) & \
	$(ONE_THREAD) $(BIN)/sxtquant train $(MODEL_WORK)/data -o $(MODEL_WORK)/supervised-only-long \
		$(MODEL_LONG_TUNE) --supervised-only & wait
	$(BIN)/python tools/ship_model.py --run $(MODEL_WORK)/long --data $(MODEL_WORK)/data \
		--ablation $(MODEL_WORK)/supervised-only-long --out $(MODEL_OUT) --checkpoint last \
		--epochs-before $(MODEL_EPOCHS_TOTAL) --random-forest --otsu --schedule "$(MODEL_SCHEDULE)" \
		--compare $(MODEL_EPOCHS_TOTAL)-epochs=$(MODEL_WORK)/run/last \
		$(if $(MODEL_PREVIOUS),--compare previous=$(MODEL_PREVIOUS))

# The recipe of the shipped model membrane-2d (sxtquant/models/membrane-2d; the default
# before issue #16): 2D, membrane only, the paper's few-label protocol on 3 labelled and 15
# unlabelled tomograms; the start for fine-tuning on membrane labels of single slices, and
# the model `make model` compares with. About an hour and a half on 2 CPU cores.
MODEL2D_WORK ?= build/model-2d
MODEL2D_OPTIONS := --preset tiny --steps-per-epoch 50 --batch-size 8 --crop 128 \
	--bn-momentum 0.1 --membrane-weight 3 --patience 0 --seed 0 --quiet
MODEL2D_TRAIN := $(MODEL2D_OPTIONS) --epochs 12 --lr 2e-3
MODEL2D_TUNE := $(MODEL2D_OPTIONS) --epochs 30 --lr 5e-4 --resume
model-2d: $(STAMP)
	rm -rf $(MODEL2D_WORK)
	$(BIN)/sxtquant simulate --dataset $(MODEL2D_WORK)/data --labeled-tomograms 3 \
		--unlabeled-tomograms 15 --test-tomograms 3 --seed 2026 --quiet
	$(BIN)/sxtquant train $(MODEL2D_WORK)/data -o $(MODEL2D_WORK)/run $(MODEL2D_TRAIN)
	$(BIN)/sxtquant train $(MODEL2D_WORK)/data -o $(MODEL2D_WORK)/run $(MODEL2D_TUNE)
	$(BIN)/sxtquant train $(MODEL2D_WORK)/data -o $(MODEL2D_WORK)/supervised-only \
		$(MODEL2D_TRAIN) --supervised-only
	$(BIN)/sxtquant train $(MODEL2D_WORK)/data -o $(MODEL2D_WORK)/supervised-only \
		$(MODEL2D_TUNE) --supervised-only
	$(BIN)/python tools/ship_model.py --run $(MODEL2D_WORK)/run --data $(MODEL2D_WORK)/data \
		--ablation $(MODEL2D_WORK)/supervised-only --out sxtquant/models/membrane-2d \
		--checkpoint last --random-forest --otsu --recipe "make model-2d" \
		--schedule "epochs 1-12 at lr 2e-3, then 13-30 at lr 5e-4 (--resume)"

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
