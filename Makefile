# The two commands of the README: `make run` (set up and serve) and `make test` (every test).
CARGO ?= cargo
LIKENESS = target/release/likeness

.PHONY: run setup test bench

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
## components themselves). Fetches the face models and the tiny pack's Python tools first.
test:
	rustup target add wasm32-wasip2
	python3 -m pip install --quiet -r tools/tiny-pack/requirements.txt
	$(CARGO) run --quiet -p likeness-host -- models fetch --models models
	$(CARGO) test --workspace

## Runs the benchmarks (release builds).
bench:
	$(CARGO) bench -p likeness-host
