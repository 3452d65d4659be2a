# One command per thing a user does. Run from the repository root.
PY      ?= .venv/bin/python
TASK    ?= elemnet
PROFILE ?=
ARGS    ?=
PORT    ?= 5000
TASKS   := $(basename $(notdir $(wildcard configs/tasks/*.yaml)))
DEVICES ?=
NODES   ?= 1
# the task's config files, assembled by cli/configs.py as for the search, the reproductions and the tests
TASK_CONFIGS = $(shell $(PY) -m cli.configs $(TASK) $(if $(PROFILE),--profile $(PROFILE)) $(if $(DEVICES),--with ddp)) \
               $(if $(DEVICES),--trainer.devices=$(DEVICES) --trainer.num_nodes=$(NODES))
# Runs log to $MLFLOW_TRACKING_URI when set (e.g. a `make server`), else to mlruns/mlflow.db (cli/__init__.py).
export PYTHONUNBUFFERED = 1

.PHONY: help setup postgresql chromium data lock test test-fast train predict baseline bench ui server clean check-task search search-dashboard screen bench-screen bench-mve cv bench-crystal bench-ebsd bench-xrd reproduce analyze reconstruct design active-learn

help:
	@echo "make setup                        create .venv, install pinned dependencies, fetch + verify datasets"
	@echo "make test                         run the whole test suite (what CI runs)"
	@echo "make test-fast                    unit tests and one short run per task family (minutes)"
	@echo "make train TASK=<task> [PROFILE=paper] [DEVICES=n [NODES=m]] [ARGS='--trainer.max_epochs=3 ...']"
	@echo "make predict TASK=<task> CKPT=<ckpt or runs:/id/model> INPUT=formulas.csv [OUTPUT=preds.csv]"
	@echo "make baseline TASK=<task>         Random Forest on the same split and inputs, logged to MLflow"
	@echo "make cv TASK=<task> [FOLDS=5] [LEARNER=rf]  k-fold cross-validation: one parent MLflow run, a nested run per fold"
	@echo "make bench                        ElemNet inference/training throughput vs this machine's matmul rate"
	@echo "make ui                           MLflow UI on http://127.0.0.1:5000"
	@echo "make server [BACKEND=postgresql://...]  MLflow tracking server (runs log to it via MLFLOW_TRACKING_URI)"
	@echo "make search TASK=<task> TRIALS=N [WORKERS=k] [STORAGE=url] [DEVICES=n] [MAX_PARAMS=task] [REFERENCE=1]   Optuna architecture search (DDP trials with DEVICES; REFERENCE: the task's own net as one trial)"
	@echo "make search-dashboard [STORAGE=url] [DASHBOARD_PORT=8080]   watch a study in optuna-dashboard on loopback"
	@echo "make screen CKPT=<ckpt> [ELEMENTS=Li,Na,O] [MAX_ARITY=3] [MAX_SUM=10] [THRESHOLD=0.2] [OUTPUT=x.parquet]"
	@echo "                                  new stable compounds below the training hull (MAX_ARITY=4: the paper's 447M)"
	@echo "make bench-screen [CKPT=<ckpt>]   screening speed: enumeration, scoring, hull, vs the GEMM rate"
	@echo "make bench-crystal                crystal graphs: construction, batching, CGCNN training/inference (structures/s)"
	@echo "make bench-ebsd [CKPT=<ckpt>]     OMNet vs dictionary indexing: disorientation, patterns/s; disorientation loss pairs/s"
	@echo "make bench-xrd                    2048^2 diffraction frames/s: MF/CS background removal (scipy, torch), PADNet inference, simulator"
	@echo "make reproduce TABLE=padnet [TASK=padnet_nist] [FOLDS=10] [OPTS='--filters frozen'] [ARGS=...]"
	@echo "make reproduce TABLE=search [TASK=irnet] [OPTS='--seeds 0 1 2']   the task's net vs its study's best trial"
	@echo "make reproduce TABLE=crabnet [PROFILE=paper|cpu] [OPTS='--tasks elemnet irnet roost']   composition nets on the CrabNet split"
	@echo "make reproduce TABLE=precision [TASK=irnet] [OPTS='--seeds 0 1 2']   float32 vs bf16-mixed: test MAE, minutes, validation curves"
	@echo "make analyze TASK=elemnet CKPT=a.ckpt[,transfer=b.ckpt] [ARGS='--layers 1,4,16 --samples 4000']   what the layers learned"
	@echo "make active-learn TASK=elemnet [ROUNDS=5] [BATCH=1000] [INITIAL=1000] [ACQ=std|cluster|typical|lcmd|random] ARGS=--model.init_args.uncertainty=ensemble   active learning: rounds of acquired rows"
	@echo "make reconstruct INPUT=image.npy|.png [METHOD=descriptor|gram] [ARGS=--steps 300]   statistically equivalent microstructures"
	@echo "make design [CKPT=<microstructure_gan checkpoint>] [TRIALS=60] [SEEDS=3] [ARGS='--sampler tpe']   Bayesian optimisation in a GAN's latent space"
	@echo "make reproduce TABLE=sweep [FOLDS=10] [OPTS='--fractions 0.1 0.5 1']   Fig. 5.3: scratch vs transfer by training size"
	@echo "make reproduce TABLE=transfer [FOLDS=10] [OPTS='--tasks elemnet_transfer']   Table 5.2 on SSUB: scratch / applied / transfer"
	@echo "make reproduce TABLE=learning-curve TASK=localization [PROFILE=cpu] [OPTS='--fractions 0.25 0.5 1']   a microstructure CNN against its training elements"
	@echo "                                  a published table as Markdown + MLflow (padnet: Fig. 7.7, train x test input x filters)"
	@echo "make bench-mve                    elasticity solver: 51^3 elements/s at contrast 50, CG iterations (CPU, GPU)"
	@echo "tasks: $(TASKS)"

setup:
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e . --config-settings editable_mode=compat
	$(PY) -m pip check
	$(MAKE) postgresql
	$(MAKE) chromium
	$(MAKE) data

# Debian's PostgreSQL: the tests start a throwaway server from it (MLflow and Optuna backends).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Debian's Chromium: the tests look at the MLflow UI's runs table in it, headless
chromium:
	@if command -v chromium >/dev/null 2>&1; then echo "Chromium present"; else \
	  echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium; fi

postgresql:
	@if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  echo "PostgreSQL present"; else \
	  echo "installing Debian's postgresql"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends postgresql; fi

data:
	$(PY) -m cli.fetch_data

lock:
	(echo "# Generated by 'make lock' from a clean 'make setup'; every package the project installs, pinned."; \
	 $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//') > requirements-lock.txt

test:
	$(PY) -m pytest -q tests

# the edit-test loop: unit tests and one short run per task family (tests marked slow are left to make test)
test-fast:
	$(PY) -m pytest -q -m "not slow" tests

check-task:
	@if [ ! -f configs/tasks/$(TASK).yaml ]; then \
	  echo "unknown TASK '$(TASK)'. Known tasks: $(TASKS)"; exit 2; fi
	@if [ -n "$(PROFILE)" ] && [ ! -f configs/profiles/$(PROFILE)/$(TASK).yaml ]; then \
	  echo "no profile '$(PROFILE)' for $(TASK): configs/profiles/$(PROFILE)/$(TASK).yaml"; exit 2; fi

train: check-task
	$(PY) -m cli.train $(TASK_CONFIGS) $(ARGS)

predict: check-task
	$(PY) -m cli.predict --task "$(TASK)" --model "$(or $(CKPT),$(MODEL))" --input "$(INPUT)" $(if $(OUTPUT),--output "$(OUTPUT)") $(ARGS)

baseline: check-task
	$(PY) -m cli.baseline $(TASK_CONFIGS) $(ARGS)

FOLDS   ?= 5
LEARNER ?= net
cv: check-task
	$(PY) -m cli.cv --task $(TASK) --folds $(FOLDS) --learner $(LEARNER) -- $(TASK_CONFIGS) $(ARGS)

active-learn: check-task
	$(PY) -m cli.active_learn --task $(TASK) --rounds $(or $(ROUNDS),5) --batch $(or $(BATCH),1000) \
	  --initial $(or $(INITIAL),1000) --acquisition $(or $(ACQ),std) -- $(TASK_CONFIGS) $(ARGS)

bench:
	$(PY) -m cli.bench.models $(ARGS)

ui:
	$(PY) -m cli.ui --port $(PORT)

# A tracking server for many processes or machines: a database backend and an
# artifact root it serves; point runs at it with MLFLOW_TRACKING_URI=http://127.0.0.1:$(PORT).
BACKEND ?= sqlite:///mlruns/server.db
server:
	$(PY) -m cli.ui --backend "$(BACKEND)" --artifacts mlruns/server-artifacts --port $(PORT)

clean:
	rm -rf outputs lightning_logs .pytest_cache

search: TRIALS ?= 20
WORKERS ?= 1
STORAGE ?= sqlite:///mlruns/optuna.db
search: check-task
	$(PY) -m cli.search --task $(TASK) --trials $(TRIALS) --workers $(WORKERS) --storage "$(STORAGE)" \
	  --devices $(or $(DEVICES),1) $(if $(MAX_PARAMS),--max_params $(MAX_PARAMS)) $(if $(REFERENCE),--reference) \
	  --args "$(ARGS)"

# Watch a study while it runs: optuna-dashboard on loopback (history, importances, every trial's parameters).
DASHBOARD_PORT ?= 8080
search-dashboard:
	@s="$(STORAGE)"; case "$$s" in sqlite:///*) f="$${s#sqlite:///}"; test -f "$$f" || { \
	  echo "no study to show: $$f does not exist yet (make search TASK=<task> first, or STORAGE=<url>)"; exit 2; };; esac
	@echo "optuna-dashboard for $(STORAGE): http://127.0.0.1:$(DASHBOARD_PORT)  (Ctrl-C stops it)"
	$(dir $(PY))optuna-dashboard "$(STORAGE)" --host 127.0.0.1 --port $(DASHBOARD_PORT) --quiet

# Combinatorial screening (diss. 3.3.9). MAX_ARITY=3 finishes on a laptop CPU; the paper's
# A_w B_x C_y D_z space is MAX_ARITY=4 (446,597,140 compositions: a GPU job). Rerun to resume.
ELEMENTS  ?=
MAX_ARITY ?= 3
MAX_SUM   ?= 10
THRESHOLD ?= 0.2
screen:
	@test -n "$(CKPT)" || { echo "CKPT=<checkpoint> is required, e.g. CKPT=outputs/elemnet/<run>/checkpoints/last.ckpt (make train TASK=elemnet)"; exit 2; }
	$(PY) -m cli.screen --ckpt "$(CKPT)" --elements "$(ELEMENTS)" --max_arity $(MAX_ARITY) --max_sum $(MAX_SUM) \
	  --threshold $(THRESHOLD) $(if $(OUTPUT),--output "$(OUTPUT)") $(ARGS)

bench-screen:
	$(PY) -m cli.bench.screen $(if $(CKPT),--ckpt "$(CKPT)") $(ARGS)

bench-mve:
	$(PY) -m cli.bench.mve $(ARGS)

bench-crystal:
	$(PY) -m cli.bench.crystal $(ARGS)

bench-ebsd:
	$(PY) -m cli.bench.ebsd $(if $(CKPT),--ckpt "$(CKPT)") $(ARGS)

bench-xrd:
	$(PY) -m cli.bench.xrd $(ARGS)

# make analyze TASK=elemnet CKPT=a.ckpt[,transfer=b.ckpt]: PCA of hidden activations, metal AUC per layer
analyze:
	$(PY) -m cli.analyze --task $(or $(TASK),elemnet) --model "$(CKPT)" $(ARGS)

reconstruct:
	$(PY) -m cli.reconstruct --input "$(INPUT)" --methods $(or $(METHOD),descriptor) $(ARGS)

design: TRIALS ?= 60
design:
	$(PY) -m cli.design --ckpt "$(or $(CKPT),latest)" --target $(or $(TARGET),c11) --trials $(TRIALS) --seeds $(or $(SEEDS),3) $(ARGS)

# make reproduce TABLE=<name>: cli/reproduce.py's registry. TASK and FOLDS pass through only when given.
TABLE ?= padnet
OPTS  ?=
reproduce:
	$(PY) -m cli.reproduce $(TABLE) $(if $(filter command line,$(origin TASK)),--task $(TASK)) \
	  $(if $(filter command line,$(origin FOLDS)),--folds $(FOLDS)) $(if $(PROFILE),--profile $(PROFILE)) $(OPTS) -- $(ARGS)
