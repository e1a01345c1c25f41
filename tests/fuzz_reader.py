"""Atheris fuzz target: archive reader → HTML decoding → text extraction on arbitrary bytes.

Run it directly (libFuzzer flags work; corpus directories are optional)::

    python tests/fuzz_reader.py -atheris_runs=100000
    python tests/fuzz_reader.py -max_total_time=600 -timeout=20 /tmp/corpus

Each input is written to a scratch file (on ``/dev/shm`` when it exists) and read with
:func:`webmill.curate.readers.iter_records`, as the pipeline does: every record's payload is
read, decoded with :func:`~webmill.curate.extract.decode_html` and extracted with
:func:`~webmill.curate.extract.extract_text` (resiliparse: the fast extractor; trafilatura runs
in a killable child process in the pipeline, which a fuzzer cannot drive quickly).

The contract checked (what :class:`webmill.curate.documents.FileProcessor` relies on):

* iterating ``iter_records`` never raises: damage becomes a ``ReadError`` in the list;
* reading a payload raises at most a data error of the damaged record (zlib/EOF/archive
  errors, which the pipeline counts as that record's error); never a programming error;
* decoding and extraction of any payload never raise;
* every reported ``ReadError`` has a kind and a message.

The fuzzer is always seeded with the regression inputs in ``tests/data/crashers/`` and a few
small real files from ``../shared/data/warc`` (gzip and decompressed), in a temp directory added
after the corpus directories given (if any; new inputs go to the first one). A crash is written to ``crash-<sha1>`` (libFuzzer's ``-artifact_prefix``); copy
it to ``tests/data/crashers/`` so ``tests/test_reliability.py`` replays it.
"""

from __future__ import annotations

import atexit
import gzip
import io
import logging
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

# Imported by _load() so that main() can import them under atheris' coverage instrumentation.
ArchiveLoadFailed = decode_html = extract_text = iter_records = None

HERE = Path(__file__).resolve().parent
CRASHERS = HERE / "data" / "crashers"
SHARED = HERE.parents[1] / "shared" / "data" / "warc"
# Small real files: WARC (per-record gzip), WET, ARC, single gzip stream, odd records.
SEED_FILES = ["cc_CC-MAIN-2024-22_whirlwind.warc.gz", "cc_CC-MAIN-2024-22_whirlwind.warc.wet.gz",
              "cc_CC-MAIN-2025-33_cdx-toolkit-3records.warc.gz", "cc_CC-MAIN-2015-35_crate-example.warc.wet.gz",
              "cc_CC-MAIN-2014-35_vu-sample-edited.warc.gz",
              "edge_cases/ia-cdxwriter_empty-gzips.warc.gz", "edge_cases/ia-cdxwriter_negative_content_length.arc.gz",
              "edge_cases/ia-cdxwriter_chardet_failure_url.arc.gz", "edge_cases/ia-cdxwriter_non_ascii_url.arc.gz",
              "edge_cases/ia-cdxwriter_revisit_without_sha1.warc.gz",
              "edge_cases/ia-cdxwriter_missing_content_type.warc.gz",
              "edge_cases/ia-cdxwriter_crlf_at_1k_boundary.warc.gz"]

PAYLOAD_DATA_ERRORS: tuple = ()
_INPUT: Path | None = None


def _load() -> None:
    """Import the code under test (under instrumentation when main() runs it)."""
    global ArchiveLoadFailed, decode_html, extract_text, iter_records, PAYLOAD_DATA_ERRORS
    from warcio.exceptions import ArchiveLoadFailed

    from webmill.curate.extract import decode_html, extract_text
    from webmill.curate.readers import iter_records

    #: Exceptions a damaged record's payload read may raise (the pipeline counts them per record).
    PAYLOAD_DATA_ERRORS = (zlib.error, EOFError, ArchiveLoadFailed)


def _input_path() -> Path:
    """A scratch file per process, on tmpfs when there is one (one write per input)."""
    global _INPUT
    if _INPUT is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        fd, name = tempfile.mkstemp(prefix="webmill-fuzz-", suffix=".warc", dir=base)
        os.close(fd)
        _INPUT = Path(name)
        atexit.register(_INPUT.unlink, missing_ok=True)
    return _INPUT


class ContractViolation(AssertionError):
    """The reader broke the contract documented above."""


def check_bytes(data: bytes) -> int:
    """Run the pipeline's reading path over ``data``; return the number of records read.

    Raises:
        ContractViolation (or the escaping exception itself) when the contract is broken.
    """
    if iter_records is None:
        _load()
    path = _input_path()
    path.write_bytes(data)
    errors: list = []
    n = 0
    for rec in iter_records(str(path), errors):
        n += 1
        try:
            payload = rec.read_payload()
        except PAYLOAD_DATA_ERRORS:
            continue
        if not isinstance(payload, bytes):
            raise ContractViolation(f"payload is {type(payload).__name__}, not bytes")
        # the records the pipeline extracts (FileProcessor._one): WET text, HTML responses
        if rec.rec_type == "conversion":
            payload.decode("utf-8", errors="replace")
        elif rec.rec_type == "response" and "html" in rec.content_type:
            extract_text(decode_html(payload, rec.charset), "resiliparse")
    for e in errors:
        if not (e.kind and isinstance(e.message, str) and isinstance(e.offset, int)):
            raise ContractViolation(f"malformed ReadError {e!r}")
    return n


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' naming
    check_bytes(data)


def seed_corpus(dest: Path) -> None:
    """Write the seed inputs (crashers, small shared files gzip + decompressed) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, bytes] = {}
    if CRASHERS.is_dir():
        for p in sorted(CRASHERS.iterdir()):
            if p.is_file() and not p.name.startswith((".", "README")):
                seeds[f"crasher-{p.name}"] = p.read_bytes()
    for name in SEED_FILES:
        p = SHARED / name
        if not p.is_file():
            continue
        raw = p.read_bytes()
        seeds[p.name] = raw
        try:
            plain = gzip.GzipFile(fileobj=io.BytesIO(raw)).read()
        except (OSError, EOFError, zlib.error):
            continue
        seeds[p.name + ".plain"] = plain[:65536]
    seeds.setdefault("minimal.warc", b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://a.b/\r\n"
                     b"WARC-Date: 2024-01-01T00:00:00Z\r\nContent-Length: 44\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n\r\n")
    for name, data in seeds.items():
        (dest / name).write_bytes(data)


def main(argv: list[str]) -> None:
    logging.disable(logging.CRITICAL)  # warcio logs every odd header
    sys.stderr = open(os.devnull, "w")  # warcio writes zlib errors to sys.stderr (libFuzzer uses fd 2)
    args = list(argv)
    # The seeds go into a temp directory (removed at exit). libFuzzer writes new inputs into the
    # first corpus directory given: the user's if any, else the temp one.
    seeds = Path(tempfile.mkdtemp(prefix="webmill-fuzz-seeds-"))
    atexit.register(shutil.rmtree, seeds, ignore_errors=True)
    seed_corpus(seeds)
    if not any(not a.startswith("-") for a in args[1:]):
        print("fuzz_reader: no corpus directory given; the corpus is discarded at exit", file=sys.__stderr__)
    args.append(str(seeds))
    import atheris  # only the fuzzer needs it; the replay test imports check_bytes without it

    # Coverage feedback from the reader, the decoder and warcio only (instrumenting everything,
    # fsspec and pyarrow included, costs several times the speed).
    with atheris.instrument_imports(include=["warcio", "webmill.curate.readers", "webmill.curate.extract"]):
        _load()
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
