# Thin wrappers: scripts/test.sh is the one place that says how skiff is
# built and checked, so CI, `make` and the README agree.
.PHONY: build test check race bench fmt vet

build:
	go build -o bin/ ./cmd/...

test:
	scripts/test.sh unit

race:
	scripts/test.sh race

bench:
	scripts/test.sh bench

fmt:
	scripts/test.sh fmt

vet:
	scripts/test.sh vet

# Everything CI runs.
check:
	scripts/test.sh
