.PHONY: demo test setup lint
demo:
	bash run.sh demo
test:
	bash run.sh test
setup:
	bash run.sh setup
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
