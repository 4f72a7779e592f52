# The two commands of the README. Each sets up what it needs first (scripts/setup.sh).
.PHONY: demo test test-newest setup bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/imusic demo $(ARGS)

test: setup
	.venv/bin/python -m pytest $(ARGS)

bench: setup
	.venv/bin/imusic bench $(ARGS)

# The suite against the newest versions pyproject.toml allows (no pins), in .venv-newest.
test-newest:
	@IMUSIC_NEWEST=1 bash scripts/setup.sh
	.venv-newest/bin/python -m pytest $(ARGS)
