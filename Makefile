# Two commands for a fresh machine (Rust toolchain + python3):
#   make run    set up, then run the daemon on the bundled examples with embedded Milvus Lite
#   make test   set up, then run the whole suite against a real Milvus server
.PHONY: setup build run test bench lint plugins bench-plugin milvus-start milvus-stop clean-state

setup:
	bash scripts/setup.sh

build: setup
	cargo build --release

run: build
	./target/release/vecdrop run --config examples/vecdrop.toml

test: setup
	bash scripts/test.sh

# Full-mode throughput bench (release build; starts the test Milvus unless MILVUS_URI is set).
bench: setup
	bash scripts/bench.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# WASM format plugins (examples + the sandbox tests' hostile ones); `make setup` builds them too.
plugins:
	bash scripts/build-plugins.sh

bench-plugin:
	bash scripts/bench-plugin.sh

milvus-start: setup
	bash scripts/milvus-test-server.sh start

milvus-stop:
	bash scripts/milvus-test-server.sh stop

clean-state:
	rm -rf data state
