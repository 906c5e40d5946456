# Set-up, demo, tests and benchmarks. Every target creates what it needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ADDRESS ?= 127.0.0.1:19877

# Debian packages whose binaries the tests run: prometheus and promtool, Alertmanager,
# docker-compose, which validates Compose files without a Docker engine, and chromium,
# which loads the status page in the headless browser test.
DEBIAN_PACKAGES := prometheus prometheus-alertmanager docker-compose chromium
REQUIRED_BINARIES := prometheus promtool prometheus-alertmanager amtool docker-compose chromium

.PHONY: all venv tools test demo bench soak clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

venv: $(STAMP)

tools:
	@missing=""; for binary in $(REQUIRED_BINARIES); do \
		command -v $$binary >/dev/null 2>&1 || missing="$$missing $$binary"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "Installing$$missing from Debian packages: $(DEBIAN_PACKAGES)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES); \
	else \
		echo "Missing:$$missing. Install them, then run make test again:"; \
		echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $(DEBIAN_PACKAGES)"; \
		exit 1; \
	fi

test: venv tools
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/opensrs-migration-exporter --demo --discovery --poll.interval 5s --web.listen-address $(DEMO_ADDRESS)

bench: venv
	$(BIN)/python bench/run.py --output docs/benchmarks.md

soak: venv
	$(BIN)/python soak/run.py --output docs/benchmarks.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
