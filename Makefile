# The README's commands. On a fresh machine `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test up down status install lint typecheck bench-quick clean

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## demo: start everything (Compose if Docker answers, else the local stack), feed HR events, show proposals
demo: $(STAMP)
	@if docker info >/dev/null 2>&1; then \
		docker compose up -d --build --wait && \
		KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092 $(BIN)/mentornet simulate --mentors 12 --mentees 20 && \
		echo "Stop it with: docker compose down"; \
	else \
		$(BIN)/mentornet stack up && \
		$(BIN)/mentornet simulate --mentors 12 --mentees 20 && \
		echo "Mail sent by notifications is in .stack/mail/; stop everything with: make down"; \
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

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.kafka_baseline --quick

clean:
	rm -rf .stack/test .stack/test-logs .pytest_cache .mypy_cache .ruff_cache
