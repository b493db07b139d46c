# The two commands of the README:  `make run`  and  `make test`.
# Both create the virtual environment on first use (.venv, or VENV=...).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.jsdlib-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900

DEBS   := .cache/debs
export JSDLIB_DEBS := $(abspath $(DEBS))
NPM    := .cache/npm
export JSDLIB_NPM := $(abspath $(NPM))
NPM_ARCHIVES := emoji-datasource-twitter@16.0.0 openmoji@17.0.0 fluentui-emoji@1.3.0

.PHONY: setup run fidelity cmc-fidelity test test-kernels test-fast notebooks standin debs npm emoji-styles

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e ".[dev]" > $(VENV)/pip-install.log 2>&1 \
	  || { grep -v "is ignored: it is neither" $(VENV)/pip-install.log | tail -40; exit 1; }
	$(BIN)/python -c "import jsdlib, torch, open_clip, nbval"
	touch $(STAMP)

setup: $(STAMP)

## The main job on the bundled default: every experiment of the CPU course -> results/report.md, results.json
## (83 minutes for the committed run on a 2-core machine from an empty cache, two lanes of one thread;
## resumable: a second run reuses every finished step).
run: setup
	$(BIN)/jsdlib reproduce --preset cpu --out results

## Opt-in: the JSD table as the authors ran it (real D2S at matched FLOPs, their teacher and integrated score;
## docs/fidelity.md). Shares its JSD runs with `make run` in the same folder; its own budget (see README).
fidelity: setup
	$(BIN)/jsdlib reproduce --preset cpu --out results --only jsd_fidelity

## Opt-in: CMC as the authors ran it (every WordNet mention, their selection, CMC-final over the top-64, their CE
## head) and the paper's reranker comparison (poly-encoder, sum-of-max) in one run; docs/fidelity.md, README.
cmc-fidelity: setup
	$(BIN)/jsdlib reproduce --preset cpu --out results --only cmc_fidelity

## The Debian packages the emoji and WordNet sets are built from (for the rebuild tests); best effort off Debian.
debs:
	@mkdir -p $(DEBS)
	@ls $(DEBS)/fonts-noto-color-emoji_*.deb $(DEBS)/unicode-cldr-core_*.deb >/dev/null 2>&1 \
	  || (cd $(DEBS) && apt-get download fonts-noto-color-emoji unicode-cldr-core) \
	  || echo "note: could not download the Debian packages; the emoji rebuild test will be skipped"
	@ls $(DEBS)/wordnet-base_*.deb >/dev/null 2>&1 \
	  || (cd $(DEBS) && apt-get download wordnet-base) \
	  || echo "note: could not download wordnet-base; the WordNet rebuild test will be skipped"

## The pinned npm archives the multi-style emoji set is built from (for its rebuild test; about 90 MB);
## best effort: without npm or a network the rebuild test is skipped.
npm:
	@mkdir -p $(NPM)
	@for spec in $(NPM_ARCHIVES); do \
	  f=$$(echo "$$spec" | sed 's/@/-/').tgz; test -f $(NPM)/$$f \
	  || (cd $(NPM) && npm pack --silent "$$spec" >/dev/null) \
	  || echo "note: could not fetch $$spec with npm pack; the emoji-styles rebuild test will be skipped"; \
	done

## Rebuild data/emoji_styles/ (Noto + Twemoji + Fluent flat/modern + OpenMoji) from the archives.
emoji-styles: setup debs npm
	$(BIN)/python -m jsdlib.data.emoji_styles --npm $(NPM) --debs $(DEBS) --out data/emoji_styles

## The whole test suite: unit tests + every notebook under nbval.
test: setup debs npm
	$(BIN)/python -m pytest $(NBVAL_FLAGS) --durations=15 tests notebooks

## The notebooks a second time under other CPU kernels (.ci/kernels2.py: AVX2 kernels on an AVX512/AMX machine,
## ATen's scalar kernels on an AVX2 one), with a fresh jsdlib cache so that every feature is recomputed under
## them too: committed outputs must hold on any CPU, not only on the one that made them.
KERNELS2_CACHE := $(abspath .cache/jsdlib-kernels2)
test-kernels: setup
	$(BIN)/python .ci/kernels2.py show
	rm -rf $(KERNELS2_CACHE)
	k2=$$($(BIN)/python .ci/kernels2.py env) && echo "second notebook pass under $$k2" \
	  && env JSDLIB_CACHE=$(KERNELS2_CACHE) $$k2 $(BIN)/python -m pytest $(NBVAL_FLAGS) --durations=5 notebooks

test-fast: setup
	$(BIN)/python -m pytest -q tests

## Re-execute every notebook in place (default CPU mode), outputs and execution counts kept.
notebooks: setup
	$(BIN)/python -m jsdlib.experiments.notebooks

## Retrain the stand-in VLP and overwrite the committed checkpoint.
standin: setup
	$(BIN)/jsdlib vlp train-standin --out jsdlib/assets/standin_styles.safetensors
