# ai-service: `make run` serves on SQLite, `make test` runs every test (SQLite and PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test check lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# the Node example of docs/user-guide.md runs against the official openai npm package;
	@# tests/api/test_responses_clients.py against the Vercel AI SDK and the OpenAI Agents SDK
	if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix $(VENV)/node openai@^7 ai@^7 @ai-sdk/openai@^4 @openai/agents@^0.20 zod@^4 @anthropic-ai/claude-code@^2.1; fi
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/ai-service serve

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

check: lint test

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
