# The two commands of the README: `make run` (set up and serve) and `make test` (every test).
CARGO ?= cargo
LIKENESS = target/release/likeness

.PHONY: run setup test bench

## Sets up a fresh machine and runs the service on 127.0.0.1:8080.
run: setup
	$(LIKENESS) serve

## Installs the wasm target, builds the host and the first-party styles into styles/.
setup:
	rustup target add wasm32-wasip2
	$(CARGO) build --release -p likeness-host
	$(LIKENESS) styles build

## Runs every test: unit tests, the plugin SDK and styles natively, and the integration tests
## (which build the style components themselves).
test:
	rustup target add wasm32-wasip2
	$(CARGO) test --workspace

## Runs the benchmarks (release builds).
bench:
	$(CARGO) bench -p likeness-host
