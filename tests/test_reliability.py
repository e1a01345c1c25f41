"""Reliability (issue 11), fast part: atomic outputs under SIGKILL, malformed and corrupt inputs,
extraction timeouts on pathological pages, no orphan extraction processes, fuzz regressions.

The slow part (kill and resume of ``curate run``, accounting over every shared file, a separate
Ray cluster, killed Ray workers, memory over 500 documents, 100k fuzz executions, killed
training checkpoints) is in ``test_reliability_slow.py``; ``docs/reliability.md`` explains both.
Helpers here are imported by the slow module.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.curate.extract import ExtractionTimeout, Extractor
from webmill.curate.pipeline import remove_stale_temps, update_failed_list
from webmill.curate.readers import iter_records, sniff_format
from webmill.storage import is_temp

ROOT = Path(__file__).resolve().parents[1]
CRASHERS = ROOT / "tests" / "data" / "crashers"
CURATE = [sys.executable, "-c", "from webmill.curate.cli import main; main()"]
WGET = "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz"  # 48 per-record gzip members
SINGLE_STREAM = ["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "cc_CC-MAIN-2015-35_crate-example.warc.wet.gz",
                 "cc_CC-MAIN-2014-35_vu-sample-edited.warc.gz"]


# ---------------------------------------------------------------------------------------------
# helpers (also used by test_reliability_slow.py)

def curate(*args: str, timeout: float = 120, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``curate ARGS`` in a fresh process on an embedded Ray (RAY_ADDRESS unset)."""
    e = dict(os.environ if env is None else env)
    e.pop("RAY_ADDRESS", None)
    return subprocess.run(CURATE + list(args), capture_output=True, text=True, timeout=timeout, env=e, cwd=cwd)


def gzip_members(data: bytes) -> list[bytes]:
    """Split a multi-member gzip file into its members (raw bytes of each)."""
    out, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        used = len(data) - pos - len(d.unused_data)
        out.append(data[pos:pos + used])
        pos += used
    return out


def write_warc(path: Path, pages: list[tuple[str, bytes]], start_id: int = 0) -> Path:
    """Write ``(url, html bytes)`` pages as HTTP 200 ``response`` records (one gzip member each)
    with deterministic record ids."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i, (url, html) in enumerate(pages, start_id):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            rec = w.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=http,
                                       warc_headers_dict={"WARC-Date": "2024-05-01T00:00:00Z",
                                                          "WARC-Record-ID": f"<urn:uuid:00000000-0000-0000-0000-{i:012d}>"})
            w.write_record(rec)
    return path


def real_html_pages(shared: Path, names: list[str] | None = None) -> list[tuple[str, bytes]]:
    """``(url, payload)`` of every HTTP 200 HTML response in the given shared files."""
    pages = []
    files = [shared / n for n in names] if names else sorted(p for p in shared.glob("*.gz"))
    for f in files:
        for r in iter_records(str(f), []):
            if r.rec_type == "response" and r.http_status == 200 and "html" in r.content_type:
                pages.append((r.url, r.read_payload()))
    return pages


def table_page(rows: int) -> bytes:
    """A huge HTML table (2 MB at 25k rows): trafilatura needs ~15 s for 25k rows, minutes for 200k."""
    cells = "".join(f"<tr><td>cell {i}</td><td>value {i * 7}</td><td>more words here {i}</td></tr>"
                    for i in range(rows))
    return f"<html><body><table>{cells}</table></body></html>".encode()


def nested_page(depth: int) -> bytes:
    """``depth`` nested ``<div>``s: resiliparse needs ~2 s at 5k, ~40 s at 20k (quadratic)."""
    return ("<html><body>" + "<div>" * depth + "deep text " * 50 + "</div>" * depth + "</body></html>").encode()


def proc_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids, timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if proc_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if proc_alive(p)]
    return alive


def tagged_processes(tag: str) -> dict[int, str]:
    """pid → command line of the running processes whose environment holds ``WEBMILL_TEST_TAG=tag``
    (children inherit it: Ray's raylet, workers and the extraction subprocesses)."""
    needle = f"WEBMILL_TEST_TAG={tag}".encode()
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle not in (d / "environ").read_bytes().split(b"\0"):
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if proc_alive(int(d.name)):
            found[int(d.name)] = cmd
    return found


def kill_tagged(tag: str) -> None:
    """SIGKILL every process still carrying ``tag`` (Ray's and the extraction children)."""
    for pid in tagged_processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(list(tagged_processes(tag)), 10)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (TimeoutError) instead of hanging when the block runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s (hang?)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_all(path: Path) -> tuple[list[tuple], list]:
    errors: list = []
    recs = [(r.rec_type, r.url, r.record_id, len(r.read_payload())) for r in iter_records(str(path), errors)]
    return recs, errors


def check_accounting(stats: dict, out: Path) -> None:
    """The per-file invariant and its outputs: records = kept + Σ dropped + errors; parquet rows =
    kept; marker written; every error listed (up to 100)."""
    assert stats["records"] == stats["kept"] + sum(stats["dropped"].values()) + stats["errors"], stats
    assert pq.read_table(out / "documents" / f"{stats['stem']}.parquet").num_rows == stats["kept"]
    assert json.loads((out / "stats" / f"{stats['stem']}.json").read_text())["records"] == stats["records"]
    assert (out / "markers" / f"{stats['stem']}.done").exists()
    assert len(stats["error_records"]) == min(stats["errors"], 100)
    for e in stats["read_errors"] + stats["warnings"] + stats["error_records"]:
        assert e.get("kind", "x") and (e.get("message") or e.get("error")), e


# ---------------------------------------------------------------------------------------------
# atomic outputs and resume bookkeeping

_WRITER = r"""
import sys, pyarrow as pa
from webmill.storage import Storage
out = Storage(sys.argv[1])
tables = [pa.table({"i": list(range(k, k + 120_000)), "text": [f"row {j} " * 8 for j in range(120_000)]})
          for k in (0, 1)]
print("ready", flush=True)
n = 0
while True:
    out.write_parquet("documents/x.parquet", tables[n % 2])
    out.write_json("stats/x.json", {"n": n % 2, "pad": "y" * 200_000})
    n += 1
"""


def test_atomic_writes_never_leave_a_partial_file(tmp_path):
    """SIGKILL a process that rewrites a Parquet and a JSON output in a loop, 5 times at random
    moments: the output is always absent or one complete version, never a torn file; temp files
    left behind are not picked up as outputs and the next run removes them."""
    expected = [pa.table({"i": list(range(k, k + 120_000)), "text": [f"row {j} " * 8 for j in range(120_000)]})
                for k in (0, 1)]
    rng = random.Random(11)
    saw_temp = False
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 1.0))
        p.kill()
        p.wait()
        docs = sorted(q.name for q in (tmp_path / "documents").glob("*.parquet"))
        assert docs in ([], ["x.parquet"])
        if docs:
            t = pq.read_table(tmp_path / "documents" / "x.parquet")
            assert any(t.equals(e) for e in expected)
        if (tmp_path / "stats" / "x.json").exists():
            assert json.loads((tmp_path / "stats" / "x.json").read_text())["n"] in (0, 1)
        saw_temp |= any(is_temp(q.name) for q in tmp_path.rglob("*"))
    assert saw_temp, "no kill landed during a write: the test did not exercise a torn write"
    assert remove_stale_temps(tmp_path) >= 1
    assert not [q for q in tmp_path.rglob("*") if is_temp(q.name)]


def test_failed_list_shows_current_failures_only(tmp_path):
    """OUT/failed.jsonl after a rerun lists what is failed now: inputs that succeeded on the rerun
    leave it, inputs that failed again are listed once, inputs outside the rerun are kept."""
    update_failed_list(tmp_path, ["a", "b", "c"], [{"input": "a", "reason": "worker died 3 times"},
                                                  {"input": "b", "reason": "empty file"}])
    lines = [json.loads(x) for x in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert [(x["input"], x["reason"]) for x in lines] == [("a", "worker died 3 times"), ("b", "empty file")]
    assert all(x["time"].endswith("Z") for x in lines)
    update_failed_list(tmp_path, ["a", "b"], [{"input": "b", "reason": "empty file"}])  # a now done
    assert [json.loads(x)["input"] for x in (tmp_path / "failed.jsonl").read_text().splitlines()] == ["b"]
    update_failed_list(tmp_path, ["c"], [])  # a run over other inputs keeps b listed
    assert [json.loads(x)["input"] for x in (tmp_path / "failed.jsonl").read_text().splitlines()] == ["b"]
    update_failed_list(tmp_path, ["b"], [])
    assert not (tmp_path / "failed.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# malformed and corrupt inputs (reader level)

def test_corrupt_gzip_member_loses_only_its_record(tmp_path, warc):
    """Bytes flipped in the middle of one gzip member (bad CRC): the reader resumes at the next
    member, so every other record is read exactly as from the intact file, and the damage is
    reported as corrupt_gzip (not as a cut file)."""
    src = (warc(WGET)).read_bytes()
    members = gzip_members(src)
    i = max(range(len(members) - 3), key=lambda k: len(members[k]))  # a big member, not the last
    bad = bytearray(members[i])
    for k in range(len(bad) // 2, len(bad) // 2 + 16):
        bad[k] ^= 0xFF
    damaged = tmp_path / "flipped.warc.gz"
    damaged.write_bytes(b"".join(members[:i]) + bytes(bad) + b"".join(members[i + 1:]))
    clean, _ = read_all(warc(WGET))
    with deadline(60):
        recs, errors = read_all(damaged)
    offset = sum(len(m) for m in members[:i])
    assert [(e.kind, e.offset) for e in errors] == [("corrupt_gzip", offset)]
    assert str(offset + len(members[i])) in errors[0].message  # where reading resumed
    assert len(recs) == len(clean) == len(members)
    assert [r[:3] for r in recs[:i] + recs[i + 1:]] == [r[:3] for r in clean[:i] + clean[i + 1:]]
    assert [r[3] for r in recs[i + 1:]] == [r[3] for r in clean[i + 1:]]


def test_garbage_warcinfo_header_keeps_the_rest_and_their_ids(tmp_path, warc):
    """A WARC whose first (warcinfo) record header is garbage: the other records are read with
    their real WARC-Record-IDs (the file is still recognised as WARC, not ARC), damage reported."""
    members = gzip_members((warc(WGET)).read_bytes())
    body = gzip.decompress(members[0]).split(b"\r\n\r\n", 1)[1]
    bad = tmp_path / "garbage-head.warc.gz"
    bad.write_bytes(gzip.compress(b"GARBAGE \x00\xff header\r\nnonsense: yes\r\n\r\n" + body) + b"".join(members[1:]))
    clean, _ = read_all(warc(WGET))
    with deadline(60):
        recs, errors = read_all(bad)
    assert sniff_format(str(bad)) == "warc"
    assert recs == clean[1:]
    assert all(r[2].startswith("<urn:uuid:") for r in recs)
    assert [e.kind for e in errors] == ["ArchiveLoadFailed"] and errors[0].offset == 0


def test_damaged_single_gzip_stream_reads_up_to_the_damage(tmp_path, warc):
    """Flipped bytes in the middle of a one-gzip-stream file (no member to resume at): the records
    before the damage are read, the damage is reported, nothing raises or hangs."""
    src = (warc("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz")).read_bytes()
    bad = bytearray(src)
    for k in range(len(bad) // 2, len(bad) // 2 + 32):
        bad[k] ^= 0x5A
    p = tmp_path / "single-flipped.warc.wet.gz"
    p.write_bytes(bytes(bad))
    clean, _ = read_all(warc("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"))
    with deadline(60):
        recs, errors = read_all(p)
    assert 3 <= len(recs) < len(clean)
    assert [r[:3] for r in recs[:-1]] == [r[:3] for r in clean[:len(recs) - 1]]
    assert "corrupt_gzip" in [e.kind for e in errors]


def test_empty_and_non_archive_files_are_reported_not_silent(tmp_path):
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    empty_members = tmp_path / "empty-members.warc.gz"
    empty_members.write_bytes(gzip.compress(b"") * 3)
    text = tmp_path / "notes.warc.gz"
    text.write_bytes(gzip.compress(b"Just some notes, no archive here.\n" * 50))
    for p in (empty, empty_members):
        recs, errors = read_all(p)
        assert recs == [] and [e.kind for e in errors] == ["empty_file"], p
        assert sniff_format(str(p)) == "empty"
    recs, errors = read_all(text)
    assert recs == [] and errors and sniff_format(str(text)) == "unknown"


def test_fuzz_crashers_replay():
    """Inputs that once broke the reader contract (found by tests/fuzz_reader.py) stay fixed."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fuzz_reader import check_bytes

    files = sorted(p for p in CRASHERS.iterdir() if p.is_file() and p.name != "README.md")
    assert len(files) >= 2
    for p in files:
        with deadline(60):
            check_bytes(p.read_bytes())


# ---------------------------------------------------------------------------------------------
# malformed inputs through the per-file stage (FileProcessor: what each Ray actor runs)

@pytest.fixture(scope="module")
def damaged_inputs(tmp_path_factory, shared_warc) -> dict[str, Path]:
    """Real edge cases + single-stream files + files damaged here, by name."""
    d = tmp_path_factory.mktemp("damaged")
    files = {p.name: p for p in sorted((shared_warc / "edge_cases").iterdir())}
    files.update({n: shared_warc / n for n in SINGLE_STREAM})
    src = (shared_warc / WGET).read_bytes()
    members = gzip_members(src)
    (d / "cut.warc.gz").write_bytes(src[: len(src) * 3 // 5])
    bad = bytearray(members[10])
    bad[len(bad) // 2] ^= 0xFF
    (d / "flipped.warc.gz").write_bytes(b"".join(members[:10]) + bytes(bad) + b"".join(members[11:]))
    body = gzip.decompress(members[0]).split(b"\r\n\r\n", 1)[1]
    (d / "garbage-head.warc.gz").write_bytes(gzip.compress(b"\x00GARBAGE\r\n\r\n" + body) + b"".join(members[1:]))
    (d / "empty.warc.gz").write_bytes(b"")
    (d / "notes.warc").write_text("not an archive\n" * 100)
    for n in ("cut.warc.gz", "flipped.warc.gz", "garbage-head.warc.gz", "empty.warc.gz", "notes.warc"):
        files[n] = d / n
    return files


def test_every_malformed_input_is_processed_and_accounted(tmp_path, damaged_inputs):
    """Every edge-case file, the single-stream files and files damaged here go through the real
    per-file stage: readable records are processed, the rest reported, the accounting holds, no
    hang; the 1.9 MB-compressed giant page (16 MB cut) times out and is counted."""
    cfg = load_config(None, {"extract": {"timeout_s": 2.0}})
    proc = FileProcessor(cfg, tmp_path)
    by_name = {}
    try:
        for name, path in damaged_inputs.items():
            with deadline(180):
                by_name[name] = s = proc.process(str(path))
            check_accounting(s, tmp_path)
    finally:
        proc.close()
    kinds = {n: [e["kind"] for e in s["read_errors"]] for n, s in by_name.items()}
    assert kinds["cut.warc.gz"] == ["truncated_gzip"]
    # one damaged member: reported once (as a gzip error, or as the unreadable record warcio then
    # meets), reading resumed at the next member, so at most its own record is lost
    assert len(kinds["flipped.warc.gz"]) == 1 and by_name["flipped.warc.gz"]["records"] >= 47
    assert "next" in by_name["flipped.warc.gz"]["read_errors"][0]["message"]
    assert kinds["garbage-head.warc.gz"] == ["ArchiveLoadFailed"] and by_name["garbage-head.warc.gz"]["records"] == 47
    assert kinds["empty.warc.gz"] == ["empty_file"] and by_name["empty.warc.gz"]["records"] == 0
    assert by_name["notes.warc"]["records"] == 0 and kinds["notes.warc"]
    assert by_name["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"]["records"] == 26
    assert by_name["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"]["warnings"][0]["kind"] == "single_gzip_stream"
    assert "ArchiveLoadFailed" in kinds["cc_CC-MAIN-2014-35_vu-sample-edited.warc.gz"]
    giant = by_name["ia-cdxwriter_giant_html.warc.gz"]
    assert giant["dropped"] == {"extract_timeout": 1}
    assert [w["kind"] for w in giant["warnings"]] == ["payload_truncated"]
    # the edge cases hold 1-9 records each, all of which are read
    assert by_name["ia-cdxwriter_empty-gzips.warc.gz"]["records"] == 9
    assert by_name["ia-cdxwriter_uncompressed.arc"]["records"] == 4
    assert by_name["ia-cdxwriter_negative_content_length.arc.gz"]["records"] == 4


# ---------------------------------------------------------------------------------------------
# pathological HTML: hard timeout, child replaced, no orphans

@pytest.mark.parametrize("extractor,page", [("trafilatura", "table"), ("resiliparse", "nested")])
def test_pathological_page_times_out_and_child_is_replaced(extractor, page):
    """A page built to be slow for the extractor (2 MB table: ~15 s in trafilatura; 20k nested
    divs: ~40 s in resiliparse) is abandoned after the 1 s timeout: the child is killed, a fresh
    one serves the next page."""
    html = (table_page(25_000) if page == "table" else nested_page(20_000)).decode()
    with Extractor(extractor, timeout_s=1.0) as ex:
        assert "Hello" in ex.extract("<html><body><article><p>Hello world, this is a normal page with "
                                     "enough words to be main content.</p></article></body></html>")
        child = ex._proc.pid
        t = time.monotonic()
        with pytest.raises(ExtractionTimeout):
            ex.extract(html)
        assert time.monotonic() - t < 10
        assert not wait_gone([child], 5) and ex.restarts == 1
        assert "second" in ex.extract("<html><body><article><p>A second normal page, long enough to be "
                                      "kept as main content by the extractor.</p></article></body></html>")
        assert ex._proc.pid != child


def test_pathological_page_counted_as_extract_timeout(tmp_path):
    """Through the per-file stage, the slow page is dropped as ``extract_timeout`` and the pages
    after it are extracted by the replacement child."""
    normal = (b"<html><head><title>t</title></head><body><article>"
              + b"<p>This is an ordinary paragraph of English text about web archives and crawling.</p>" * 30
              + b"</article></body></html>")
    warc = write_warc(tmp_path / "slow.warc.gz", [("http://example.com/a", normal),
                                                  ("http://example.com/table", table_page(25_000)),
                                                  ("http://example.com/b", normal.replace(b"ordinary", b"regular"))])
    proc = FileProcessor(load_config(None, {"extract": {"timeout_s": 1.0}}), tmp_path / "out")
    try:
        s = proc.process(str(warc))
    finally:
        proc.close()
    check_accounting(s, tmp_path / "out")
    assert s["records"] == 3 and s["dropped"].get("extract_timeout") == 1
    assert s["stages"]["extract"] == 2 and s["errors"] == 0
    assert proc.extractor.restarts == 1


def test_record_whose_extraction_process_dies_is_an_error_listed_in_stats(tmp_path):
    """The extraction child is killed while it works on one page (as the OOM killer would): that
    record is counted as an error and listed with its offset, URL and message; the file goes on
    with a fresh child."""
    import threading

    normal = (b"<html><body><article>" + b"<p>An ordinary paragraph of English text about web archives.</p>" * 30
              + b"</article></body></html>")
    pages = [("http://example.com/a", normal), ("http://example.com/table", table_page(100_000)),
             ("http://example.com/b", normal.replace(b"ordinary", b"regular"))]
    warc = write_warc(tmp_path / "oom.warc.gz", pages)
    proc = FileProcessor(load_config(None, {"extract": {"timeout_s": 120.0}}), tmp_path / "out")
    killed: list[int] = []

    def kill_child_on_the_big_page() -> None:
        deadline_t = time.monotonic() + 60
        while time.monotonic() < deadline_t and not killed:
            ex = proc.extractor
            if ex._served == 2 and ex._proc is not None:  # the table page was sent
                time.sleep(1.0)
                killed.append(ex._proc.pid)
                os.kill(killed[0], signal.SIGKILL)
            time.sleep(0.02)

    t = threading.Thread(target=kill_child_on_the_big_page, daemon=True)
    t.start()
    try:
        s = proc.process(str(warc))
    finally:
        proc.close()
        t.join()
    assert killed
    check_accounting(s, tmp_path / "out")
    assert s["errors"] == 1 and s["stages"]["extract"] == 2
    [err] = s["error_records"]
    assert err["url"] == "http://example.com/table" and "extraction subprocess died" in err["error"]
    assert err["offset"] == [r.offset for r in iter_records(str(warc), [])][1]


_ORPHAN = r"""
from webmill.curate.extract import Extractor
ex = Extractor("trafilatura", timeout_s=600)
ex.extract("<html><body><p>warm up</p></body></html>")
print(ex._proc.pid, flush=True)
rows = "".join(f"<tr><td>cell {i}</td><td>value {i}</td></tr>" for i in range(200_000))
ex.extract(f"<html><body><table>{rows}</table></body></html>")  # minutes of work in the child
"""


def test_extraction_child_dies_with_its_worker():
    """When the process that owns the extraction child is SIGKILLed (a Ray worker killed by the
    OOM killer or `ray stop`), the child stops within seconds instead of finishing its page."""
    p = subprocess.Popen([sys.executable, "-c", _ORPHAN], stdout=subprocess.PIPE, text=True)
    try:
        child = int(p.stdout.readline())
        time.sleep(1.0)  # the child is now inside the 16 MB table
        assert proc_alive(child)
    finally:
        p.kill()
        p.wait()
    assert not wait_gone([child], 10), "extraction child outlived its parent"


# ---------------------------------------------------------------------------------------------
# CLI: unusable inputs are one-line errors (exit 2); --debug shows the traceback

def test_non_warc_and_empty_inputs_are_clear_errors(tmp_path):
    notes = tmp_path / "notes.warc.gz"
    notes.write_bytes(gzip.compress(b"Meeting notes, not a web archive.\n" * 20))
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    for path, needle in ((notes, "not a WARC/WET/ARC file"), (empty, "empty file (0 bytes")):
        p = curate("run", str(path), "-o", str(tmp_path / "out"))
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert lines == [lines[0]] and lines[0].startswith(f"error: {path}: {needle}"), p.stderr
        assert not (tmp_path / "out").exists()  # refused before anything started


def test_debug_flag_shows_the_traceback(tmp_path):
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    p = curate("--debug", "run", str(empty), "-o", str(tmp_path / "out"))
    assert p.returncode == 2
    assert "Traceback (most recent call last)" in p.stderr and "UserError" in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: {empty}: empty file")
