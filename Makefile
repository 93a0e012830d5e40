# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests drive for real: Redis and Sentinel, ffmpeg, the GStreamer RTSP server,
# a browser, an MQTT broker.
TEST_DEBS := redis-server redis-sentinel ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools chromium mosquitto

.PHONY: run test check screenshots lint format system-deps clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/lumos serve

system-deps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(VENV)/.installed system-deps lint
	$(BIN)/pytest -q

# The fast tier: lint, then every test not marked system, browser, deploy or gpu (pyproject.toml).
check: $(VENV)/.installed system-deps lint
	$(BIN)/pytest -q -m "not system and not browser and not deploy and not gpu"

# The console's screenshots for the README (docs/images/); no other target rewrites them.
screenshots: $(VENV)/.installed system-deps
	LUMOS_SCREENSHOTS=docs/images $(BIN)/pytest -q tests/console

clean:
	rm -rf $(VENV)

# Deployment (docs/deploy.md): a Docker engine here (Debian's dockerd, host networking only, and
# Compose v2 from PyPI), then lumos:cpu, lumos-camera:latest and the local base and stand-in images.
.PHONY: docker-engine images
docker-engine: $(VENV)/.installed
	docker/engine.sh $(BIN)

images: docker-engine
	$(BIN)/python docker/images.py
