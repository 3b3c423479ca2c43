# The README's commands. On a fresh machine `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test up down status install lock lint typecheck bench-quick bench-readme clean schemas-snapshot

# Every dependency at the version in requirements.lock (CI and the image install the same).
$(STAMP): pyproject.toml requirements.lock
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## lock: resolve pyproject.toml's dependencies again into requirements.lock (review the diff)
lock:
	@test -d .lock-venv || $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" .lock-venv/bin/pip-compile --quiet --upgrade --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

## demo: start everything (Compose if Docker answers, else the local stack), feed HR events, show proposals, play a short life, print the report
# Each run is a new organisation: the simulated HR events are seeded, so the same tenant's second
# run would be recognised as already handled and change nothing.
demo: $(STAMP)
	@tenant="demo-$$(date +%Y%m%d-%H%M%S)"; \
	if docker info >/dev/null 2>&1; then \
		docker compose up -d --build --wait && \
		KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092 $(BIN)/mentornet simulate --tenant "$$tenant" --mentors 12 --mentees 20 --life && \
		echo "Stop it with: docker compose down"; \
	else \
		$(BIN)/mentornet stack up && \
		$(BIN)/mentornet simulate --tenant "$$tenant" --mentors 12 --mentees 20 --life && \
		echo "Mail sent by notifications is in .stack/mail/ (unless SMTP_HOST names your own server); stop everything with: make down"; \
	fi

## test: every layer (unit, integration, e2e, fault) on a real Kafka and PostgreSQL
test: $(STAMP)
	$(BIN)/python -m pytest

up: $(STAMP)
	$(BIN)/mentornet stack up

down: $(STAMP)
	$(BIN)/mentornet stack down

status: $(STAMP)
	$(BIN)/mentornet stack status

## lint: style, formatting and the dependency rule between the rooms (pyproject.toml, importlinter)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy shared services benchmarks

## schemas-snapshot: record the contract's growth in docs/schemas/v1 (refuses a narrowing)
schemas-snapshot: $(STAMP)
	$(BIN)/mentornet schemas snapshot

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.kafka_baseline --quick
	$(BIN)/python -m benchmarks.http_ingest --quick

## bench-readme: regenerate README.md's "last measured" table from benchmarks/results/ (written by --record)
bench-readme: $(STAMP)
	$(BIN)/python -m benchmarks.readme

clean:
	rm -rf .stack/test .stack/test-logs .pytest_cache .mypy_cache .ruff_cache
