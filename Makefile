# Everything a fresh machine needs, from the registries only:
#   make demo   - set up, then the live demo (local Kafka + traffic + audit)
#   make test   - set up, then ruff, mypy and both test tiers (real broker)
#   make unit   - the unit tier alone: no broker, no runner binaries, about a minute and a half
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Must match the apache-beam pin in pyproject.toml.
PRISM_VERSION := 2.77.0
PRISM := .cache/bin/prism
KAFKA_JARS := local/.kafka/libs/.resolved
FLINK_JOB_SERVER := local/.flink/.assembled
REGISTRY_APP := local/.registry/.fetched
# Beam's Python SDK boot program: what a Flink PROCESS environment starts
# per worker (it fetches staged packages, installs them, starts the harness).
BOOT := .cache/bin/beam-python-boot

.PHONY: setup venv prism kafka-jars registry flink demo test unit typecheck test-runners dist lint clean

setup: venv prism kafka-jars registry flink

venv: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Beam's Prism runner, built from the Go module proxy instead of the GitHub
# release download Beam would attempt at run time.
prism: $(PRISM)
$(PRISM):
	GOBIN=$(CURDIR)/.cache/bin go install github.com/apache/beam/sdks/v2/go/cmd/prism@v$(PRISM_VERSION)

# The Kafka broker's jars from Maven Central.
kafka-jars: $(KAFKA_JARS)
$(KAFKA_JARS): local/pom.xml
	mvn -q -B -f local/pom.xml dependency:copy-dependencies
	touch $@

# The schema registry (Apicurio, Confluent-compatible API) from Maven Central;
# it runs on Java 21+ (local/registry finds one).
registry: $(REGISTRY_APP)
$(REGISTRY_APP): local/apicurio/pom.xml
	mvn -q -B -f local/apicurio/pom.xml package
	touch $@

# Beam's Flink job server (FlinkRunner), assembled from Maven Central: see
# local/flink/pom.xml for why it is assembled and why Beam 2.62.0.
flink: $(FLINK_JOB_SERVER) $(BOOT)
$(FLINK_JOB_SERVER): local/flink/pom.xml
	mvn -q -B -f local/flink/pom.xml package
	touch $@
$(BOOT):
	GOBIN=$(CURDIR)/.cache/boot go install github.com/apache/beam/sdks/v2/python/container@v$(PRISM_VERSION)
	mv .cache/boot/container $@

demo: setup
	$(BIN)/flowaudit demo

lint: venv
	$(BIN)/ruff check pipelines tests

typecheck: venv
	$(BIN)/mypy

# tests/unit: pure functions and in-process Beam steps, no broker.
unit: venv
	$(BIN)/pytest -q -rs tests/unit

# Both tiers: tests/unit, then tests/integration (the broker, Prism, Flink).
test: setup lint typecheck
	$(BIN)/pytest -q -rs tests/unit tests/integration

# Only the distributed and local runner integration tests.
test-runners: setup
	$(BIN)/pytest -q -rs -m "flink or prism"

# Wheel and sdist into dist/, as Flink and Dataflow workers install them.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	-local/kafka stop
	-local/registry stop
	rm -rf $(VENV) .cache local/.kafka local/.flink local/.registry dist
