# The targets CI and people run. `make test` and `make demo` set everything up on a fresh Debian/Ubuntu
# machine with Python 3.11 and make: a virtualenv in .venv, the package and, for the tests, mosquitto.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT    := DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0

.PHONY: install test check format demo bench clean system-deps vendor

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "facmon needs Python 3.11 or newer; found $$($(PYTHON) --version 2>&1)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv"; rm -rf $(VENV); \
	    $(APT) update && $(APT) install -y python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "cannot create a virtualenv: install python3-venv"; exit 1; fi; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# mosquitto and influxd for the integration tests, Debian's chromium for the browser tests; without root or apt
# the tests fall back to the embedded broker and skip InfluxDB and the browser. The tests start their own influxd on free ports: the package's service is stopped and disabled,
# so no influxd of the system holds port 8086.
system-deps:
	@if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mosquitto"; $(APT) update && $(APT) install -y mosquitto mosquitto-clients >/dev/null; \
	else echo "mosquitto is not installed and this is not root: the tests use the embedded broker"; fi
	@if [ -x /usr/bin/influxd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing influxdb"; $(APT) update && $(APT) install -y influxdb >/dev/null && \
	  if [ -d /run/systemd/system ]; then systemctl disable --now influxdb >/dev/null 2>&1 || true; \
	  else /etc/init.d/influxdb stop >/dev/null 2>&1; update-rc.d influxdb disable >/dev/null 2>&1 || true; fi; \
	else echo "influxd is not installed and this is not root: the InfluxDB tests are skipped"; fi
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium for the browser tests"; $(APT) update && \
	  $(APT) install -y chromium fonts-noto-cjk >/dev/null; \
	else echo "chromium is not installed and this is not root: the browser tests are skipped"; fi

test: install system-deps
	$(BIN)/python -m pytest

check: install
	$(BIN)/ruff check facmon tests bench
	$(BIN)/ruff format --check facmon tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix facmon tests bench
	$(BIN)/ruff format facmon tests bench

demo: install
	$(BIN)/facmon demo

# Figures, not pass or fail: each benchmark prints one JSON object (see bench/README.md).
bench: install system-deps
	$(BIN)/python bench/alarm_latency.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/cluster.py

# The dashboard's one third-party library, uPlot, as published on the npm registry (needs npm). Its files are
# committed, so neither `make demo` nor `make test` needs npm; this target is how they are updated, never by hand.
UPLOT := 1.6.32
vendor:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent uplot@$(UPLOT) >/dev/null && tar xzf uplot-$(UPLOT).tgz && \
	  cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE \
	    $(CURDIR)/facmon/api/static/vendor/uplot/ && \
	  echo "uPlot $(UPLOT) (MIT), from the npm registry by \`make vendor\`: not edited by hand." \
	    > $(CURDIR)/facmon/api/static/vendor/uplot/VERSION && rm -rf $$tmp

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .facmon-demo test-artifacts
