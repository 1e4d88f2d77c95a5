# Everything a fresh machine needs, from the registries only:
#   make demo   - set up, then the live demo (local Kafka + traffic + audit)
#   make test   - set up, then ruff and the whole test suite (real broker)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Must match the apache-beam pin in pyproject.toml.
PRISM_VERSION := 2.77.0
PRISM := .cache/bin/prism
KAFKA_JARS := local/.kafka/libs/.resolved

.PHONY: setup venv prism kafka-jars demo test lint clean

setup: venv prism kafka-jars

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

demo: setup
	$(BIN)/flowaudit demo

lint: venv
	$(BIN)/ruff check pipelines tests

test: setup lint
	$(BIN)/pytest -q -rs

clean:
	-local/kafka stop
	rm -rf $(VENV) .cache local/.kafka
