# SmartShare Edge: the two commands.
#   make run   - a single-node devnet in ./devnet, producing blocks in the foreground, with its
#                own Mosquitto on MQTT_PORT (TLS: MQTT_TLS_PORT), one simulated device of each
#                kind, and a demo buyer of their services (a live view of the market)
#   make test  - the whole test suite (both implementations)
#   make image - the arm64 SD image (image-build/; not part of make test)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVNET := devnet
# Not 1883: a system Mosquitto (the Debian package starts one) usually holds it.
MQTT_PORT ?= 1884
# Where devices connect, with TLS (not 8883: a system broker may serve TLS there).
MQTT_TLS_PORT ?= 8884
SOURCES := $(wildcard edge/_fast/*.pyx edge/_fast/*.pxd) setup.py pyproject.toml

.PHONY: run test test-pure bench install clean mosquitto systemd-tools image-tools image

run: $(STAMP) mosquitto
	@test -f $(DEVNET)/config.toml || \
	  $(VENV)/bin/smartshare --home $(DEVNET) init --devnet --mqtt-port $(MQTT_PORT) \
	    --mqtt-tls-port $(MQTT_TLS_PORT)
	$(VENV)/bin/smartshare --home $(DEVNET) node run --simulate all --demo

# pytest exits 5 when it collects nothing: that is a failure, never a pass.
PYTEST = $(PY) -m pytest -q -p no:cacheprovider --durations=25
STRICT = rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: $(STAMP) mosquitto systemd-tools image-tools
	$(PYTEST); $(STRICT)
	SMARTSHARE_PURE=1 $(PYTEST) -m "not slow"; $(STRICT)

bench: $(STAMP) mosquitto
	$(PY) bench/fast.py
	$(PY) bench/smt.py
	$(PY) bench/devnet.py
	$(PY) bench/network.py
	$(PY) bench/contracts.py
	$(PY) bench/mqtt.py
	$(PY) bench/wear.py
	$(PY) bench/scale.py
	$(PY) bench/agent.py
	$(PY) bench/light.py

install: $(STAMP)

# Devices talk to a real Mosquitto 2.x: install the Debian package when it is missing.
mosquitto:
	@test -x /usr/sbin/mosquitto || command -v mosquitto >/dev/null || \
	  { apt-get update -q && apt-get install -y -q mosquitto mosquitto-clients; } || \
	  { echo "Mosquitto is missing: apt-get install mosquitto mosquitto-clients" >&2; exit 1; }

# tests/test_units.py checks the units with systemd-analyze (verify, security).
systemd-tools:
	@command -v systemd-analyze >/dev/null || \
	  { apt-get update -q && apt-get install -y -q systemd; } || \
	  { echo "systemd-analyze is missing: apt-get install systemd" >&2; exit 1; }

# The image tests build a root tree (mmdebstrap), boot it (systemd-nspawn), run U-Boot in QEMU
# and sign an update bundle (RAUC). Missing tools are installed; without them (not root, no
# apt) those tests are skipped and say why.
IMAGE_TOOLS := mmdebstrap:mmdebstrap systemd-nspawn:systemd-container ip:iproute2 \
	mkimage:u-boot-tools fw_printenv:u-boot-tools qemu-system-aarch64:qemu-system-arm \
	rauc:rauc mksquashfs:squashfs-tools openssl:openssl
image-tools:
	@missing=""; for pair in $(IMAGE_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	test -e /usr/lib/u-boot/qemu_arm64/u-boot.bin || missing="$$missing u-boot-qemu"; \
	test -z "$$missing" || { apt-get update -q && apt-get install -y -q $$missing; } || \
	  echo "warning: could not install$$missing: the image tests will be skipped" >&2

# make image: the arm64 SD image and a signed update bundle in image-build/out/ (as root; see
# image-build/README.md). Heavy (mmdebstrap and a Cython build under qemu-user): it takes the
# shared machine's lock when there is one. Not part of make test.
HEAVY_LOCK ?= /work/heavy.lock
image:
	$(if $(wildcard $(HEAVY_LOCK)),flock $(HEAVY_LOCK)) image-build/build.sh

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cython
	SMARTSHARE_REQUIRE_EXT=1 $(PY) -m pip install -q --no-build-isolation -e ".[test]"
	$(PY) -c "import edge._fast as f; assert f.compiled_modules(), 'Cython extensions missing'"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info edge/_fast/*.c edge/_fast/*.so
