# The two commands of the README. Each sets up what it needs first (scripts/setup.sh).
.PHONY: demo test setup bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/imusic demo $(ARGS)

test: setup
	.venv/bin/python -m pytest $(ARGS)

bench: setup
	.venv/bin/imusic bench $(ARGS)
