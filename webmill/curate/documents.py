"""The per-document stages for one input file: read → URL blocklist → language pre-check →
extract → language ID → heuristic rules → decontamination (when enabled) →
``OUT/documents/<stem>.parquet`` + ``OUT/stats/<stem>.json`` (+ ``OUT/removed/<stage>/`` with
``[output] write_removed``, + ``OUT/examples/documents/<stem>.parquet``) + marker.

Every dropped document that got as far as a :class:`Document` (not the record-level drops
``not_response``, ``http_status``, ``not_html``) is written to ``removed/`` (when asked) with the
full document schema and what decided the drop (:data:`webmill.curate.outputs.REMOVED_SCHEMA`;
the rules record it with :func:`webmill.filters.base.dropped`), and offered to the examples
sampler (:class:`webmill.curate.examples.ExampleSampler`, ``[output] examples_per_reason``).

:class:`FileProcessor` holds the loaded models (lid.176, blocklists, the extraction subprocess)
and processes whole files; :func:`webmill.curate.workers.map_files` runs one per Ray actor. Accounting
invariant, checked by the tests: for every file ``records == kept + sum(dropped.values()) +
errors``, where ``records`` counts every record read (warcinfo, request, ... included).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from urllib.parse import urlsplit

import pyarrow as pa

from webmill.config import config_hash, kwargs_of
from webmill.curate.examples import EXAMPLES_DIR, ExampleSampler
from webmill.curate.extract import Extractor, ExtractionTimeout, decode_html, looks_like_html
from webmill.curate.outputs import DOCUMENT_SCHEMA, REMOVED_SCHEMA, decision_float, marker_rel, removed_rel
from webmill.curate.stages import DOCUMENT_STAGES, build_rules, class_for
from webmill.errors import UserError
from webmill.curate.readers import MAX_PAYLOAD_BYTES, ReadError, document_id, input_stem, iter_records
from webmill.filters.base import DROP_DETAIL, DROP_THRESHOLD, DROP_VALUE, Document
from webmill.filters.base import dropped as record_drop
from webmill.filters.decontam import FLAG_COLUMN
from webmill.storage import Storage, as_storage

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# registry names of the stages that are not heuristic rules (rules count under ``rule.name``)
_NAME = {s.kind: s.name for s in DOCUMENT_STAGES if s.kind != "rule"}
RECORD, URL, EXTRACT, LANGUAGE = _NAME["record"], _NAME["url"], _NAME["extract"], _NAME["language"]
DECONTAM = _NAME["decontam"]
#: stages whose drops have a Document (``removed/<stage>/`` directories of this step)
DOC_STAGES = tuple(s.name for s in DOCUMENT_STAGES if s.kind != "record")
MAX_LISTED_ERRORS = 100  # errors listed per file in stats (all are counted)


class FileProcessor:
    """Runs the per-document stages over whole input files.

    Args:
        cfg: pipeline config (see :mod:`webmill.config`).
        out: output directory ``OUT``: a local path, an fsspec URL or a :class:`Storage`.

    Raises:
        UserError: a bad ``extract.http_status`` list or ``[filters.*]`` table.
    """

    def __init__(self, cfg: dict, out: str | os.PathLike | Storage):
        self.cfg = cfg
        self.out = as_storage(out)
        self.cfg_hash = config_hash(cfg)
        self.url_filter = (class_for(("url_filter",))(**kwargs_of(cfg["url_filter"]))
                           if cfg["url_filter"].get("enabled", True) else None)
        self.language = (class_for(("language",))(**kwargs_of(cfg["language"]))
                         if cfg["language"].get("enabled", True) else None)
        self.rules = build_rules(cfg["filters"])
        self.decontam = None  # the index is built once by the driver (decontam.prepare_index)
        self.schema = DOCUMENT_SCHEMA
        if cfg.get("decontaminate", {}).get("enabled", False):
            from webmill.curate.decontam import load_filter

            self.decontam = load_filter(self.out, cfg)
            if self.decontam.action == "flag":
                self.schema = DOCUMENT_SCHEMA.append(pa.field(FLAG_COLUMN, pa.list_(pa.string())))
        # its name is the registry's DECONTAM, so it is counted and timed like a rule
        self.chain = self.rules + ([self.decontam] if self.decontam is not None else [])
        ex = cfg["extract"]
        statuses = ex["http_status"]
        if isinstance(statuses, str) or not all(
                isinstance(x, int) and not isinstance(x, bool) and 100 <= x <= 599 for x in statuses):
            raise UserError(f"config extract.http_status must be a list of HTTP status codes "
                            f"(e.g. [200]; [] for any), got {statuses!r}")
        self.http_status = frozenset(statuses)
        self.extractor = Extractor(ex["extractor"], ex["timeout_s"], ex["max_docs_per_child"],
                                   ex["fast"])

    def close(self) -> None:
        self.extractor.close()

    def process(self, path: str, stem: str | None = None) -> dict:
        """Process one input file; write its outputs and marker; return its stats dict.

        Stats keys: ``input``, ``stem``, ``records``, ``kept``, ``dropped`` (reason → count),
        ``errors`` (records that raised), ``error_records`` (first 100, with offset and
        message), ``read_errors`` (damaged regions), ``warnings``, ``stages`` (documents left
        after each stage), ``chars`` (extracted/kept characters), ``seconds`` (per stage).
        """
        stem = stem or input_stem(path)
        t_start = time.perf_counter()
        secs: Counter = Counter()
        dropped: Counter = Counter()
        stages: Counter = Counter()
        chars: Counter = Counter()
        error_records: list[dict] = []
        read_errors: list[ReadError] = []
        n_records = n_errors = 0
        rows: dict[str, list] = {f.name: [] for f in self.schema}
        removed: dict[str, dict[str, list]] = {}  # removed_rel → REMOVED_SCHEMA columns
        write_removed = self.cfg["output"].get("write_removed", False)
        sampler = ExampleSampler(self.cfg["output"].get("examples_per_reason", 0))
        source_name = path.rstrip("/").rsplit("/", 1)[-1]
        if self.decontam is not None:
            self.decontam.reset()
        rec = None  # the record being processed: drop() reads it

        def drop(reason: str, doc: Document | None = None, stage: str = "") -> None:
            dropped[reason] += 1
            if doc is None:  # a record-level drop: no document to show
                return
            md = doc.metadata
            value, threshold, detail = md.get(DROP_VALUE), md.get(DROP_THRESHOLD), md.get(DROP_DETAIL)
            if write_removed:
                rel = removed_rel(stage, stem, md.get("language", "") if stage == LANGUAGE else None)
                cols = removed.get(rel)
                if cols is None:
                    cols = removed[rel] = {name: [] for name in REMOVED_SCHEMA.names}
                add_row(cols, doc, rec, source_name)
                cols["stage"].append(stage)
                cols["reason"].append(reason)
                cols["drop_value"].append(decision_float(value))
                cols["drop_threshold"].append(decision_float(threshold))
                cols["drop_detail"].append(detail)
            sampler.offer(reason, stage, id=doc.id, url=doc.url, text=doc.text,
                          language=md.get("language"), language_score=md.get("language_score"),
                          value=value, threshold=threshold, detail=detail)

        t0 = time.perf_counter()
        self._notes: list[ReadError] = []  # per-record warnings (payload cut at MAX_PAYLOAD_BYTES)
        for rec in iter_records(path, read_errors):
            n_records += 1
            secs["read"] += time.perf_counter() - t0
            try:
                self._one(rec, source_name, drop, stages, chars, secs, rows, path)
            except Exception as e:  # noqa: BLE001 - one bad record never kills a run
                n_errors += 1
                if len(error_records) < MAX_LISTED_ERRORS:
                    error_records.append({"offset": rec.offset, "url": rec.url,
                                          "error": f"{type(e).__name__}: {e}"[:300]})
            t0 = time.perf_counter()
        secs["read"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        table = pa.table(rows, schema=self.schema)
        self.out.write_parquet(f"documents/{stem}.parquet", table)
        self._clear_removed(stem)  # a rerun's languages/stages may differ from the last run's
        for rel, cols in sorted(removed.items()):
            self.out.write_parquet(rel, pa.table(cols, schema=REMOVED_SCHEMA))
        examples_rel = f"{EXAMPLES_DIR}/documents/{stem}.parquet"
        if sampler.per_reason:  # an empty table too, so that a rerun replaces the old one
            self.out.write_parquet(examples_rel, sampler.table())
        else:
            self.out.remove(examples_rel)
        secs["write"] += time.perf_counter() - t0
        warnings = [e.as_dict() for e in read_errors if e.kind == "single_gzip_stream"]
        warnings += [e.as_dict() for e in self._notes[:MAX_LISTED_ERRORS]]
        stats = {
            "input": path,
            "stem": stem,
            "records": n_records,
            "kept": table.num_rows,
            "dropped": dict(sorted(dropped.items())),
            "errors": n_errors,
            "error_records": error_records,
            "read_errors": [e.as_dict() for e in read_errors if e.kind != "single_gzip_stream"],
            "warnings": warnings,
            "stages": dict(stages),
            "chars": dict(chars),
            "seconds": {k: round(v, 4) for k, v in sorted(secs.items())},
            "seconds_total": round(time.perf_counter() - t_start, 4),
            "config_hash": self.cfg_hash,
        }
        if self.decontam is not None:  # per eval set: documents hit, n-grams matched
            stats["decontaminate"] = self.decontam.stats()
        self.out.write_json(f"stats/{stem}.json", stats)
        self.out.write_json(marker_rel(stem), {"input": path, "config_hash": self.cfg_hash,
                                               "kept": table.num_rows})
        return stats

    def _clear_removed(self, stem: str) -> None:
        """Delete ``stem``'s files under ``removed/<stage>/`` and ``removed/language/<lang>/``
        of this step's stages (not dedup's or finalize's), so that a rerun leaves no file of a
        stage or language that no longer drops anything."""
        if not self.out.isdir("removed"):
            return
        for stage in DOC_STAGES:
            self.out.remove(removed_rel(stage, stem))
        for lang in self.out.list_dirs(f"removed/{LANGUAGE}"):
            self.out.remove(removed_rel(LANGUAGE, stem, lang))

    def _one(self, rec, source_name, drop, stages, chars, secs, rows, path="") -> None:
        stages["records"] += 1
        is_wet = rec.rec_type == "conversion"
        if not is_wet:
            if rec.rec_type != "response":
                return drop("not_response")
            if self.http_status and rec.http_status not in self.http_status:
                return drop("http_status")
            # the crawler's sniffed type wins over the server's header where the archive has one
            # (Common Crawl; datatrove's WarcReader reads the same header)
            if rec.identified_type is not None:
                if rec.identified_type not in _HTML_TYPES:
                    return drop("not_html")
            elif "html" not in rec.content_type:
                return drop("not_html")
        stages[RECORD] += 1
        doc = Document(text="", url=rec.url, id=document_id(source_name, rec.record_id))
        if self.url_filter is not None:
            t = time.perf_counter()
            keep, reason = self.url_filter.filter(doc)
            secs[URL] += time.perf_counter() - t
            if not keep:
                return drop(reason, doc, URL)
        stages[URL] += 1
        t = time.perf_counter()
        payload = rec.read_payload()
        secs["read"] += time.perf_counter() - t
        if len(payload) >= MAX_PAYLOAD_BYTES:
            self._notes.append(ReadError(path, rec.offset, "payload_truncated", f"payload of {rec.url[:200]} "
                                         f"is longer than {MAX_PAYLOAD_BYTES} bytes; only its start was used"))
        t = time.perf_counter()
        try:
            if is_wet:
                doc.text = payload.decode("utf-8", errors="replace").strip()
            elif not looks_like_html(payload):  # JSON, JS, empty body
                record_drop(doc, "extract_not_html", detail=f"payload of {len(payload)} bytes "
                            f"starts with {payload[:40]!r}, not HTML")
                return drop("extract_not_html", doc, EXTRACT)
            else:
                html = decode_html(payload, rec.charset)
                if self.language is not None:
                    keep, reason = self.language.prefilter_html(html, doc)
                    if not keep:  # another language for sure: not worth trafilatura's time
                        secs[EXTRACT] += time.perf_counter() - t
                        return drop(reason, doc, EXTRACT)
                doc.text = self.extractor.extract(html).strip()
        except ExtractionTimeout:
            secs[EXTRACT] += time.perf_counter() - t
            timeout = self.cfg["extract"]["timeout_s"]
            record_drop(doc, "extract_timeout", timeout, None,
                        f"extraction ran longer than [extract] timeout_s = {timeout} s")
            return drop("extract_timeout", doc, EXTRACT)
        secs[EXTRACT] += time.perf_counter() - t
        if not doc.text:
            record_drop(doc, "extract_empty", detail="empty WET record" if is_wet else
                        f"{self.cfg['extract']['extractor']} found no main text")
            return drop("extract_empty", doc, EXTRACT)
        stages[EXTRACT] += 1
        chars["extracted"] += len(doc.text)
        if self.language is not None:
            t = time.perf_counter()
            keep, reason = self.language.filter(doc)
            secs[LANGUAGE] += time.perf_counter() - t
            if not keep:
                return drop(reason, doc, LANGUAGE)
        stages[LANGUAGE] += 1
        for rule in self.chain:  # the FineWeb chain, then decontamination when enabled
            t = time.perf_counter()
            keep, reason = rule.filter(doc)
            secs[rule.name] += time.perf_counter() - t
            if not keep:
                return drop(reason, doc, rule.name)
            stages[rule.name] += 1
        chars["kept"] += len(doc.text)
        add_row(rows, doc, rec, source_name)


def add_row(cols: dict[str, list], doc: Document, rec, source_name: str) -> None:
    """Append one document to the column lists ``cols`` (:data:`DOCUMENT_SCHEMA` names, plus
    ``decontam_sets`` when present): the one place that builds a document row, for
    ``documents/`` and ``removed/`` alike.

    Args:
        cols: column name → list of values (extra columns are left to the caller).
        doc: the document (``language``/``language_score`` from its metadata; ``""``/0.0 when
            language ID did not run).
        rec: its WARC record (``date``, ``offset``).
        source_name: the input file's name.
    """
    host = ""
    try:
        host = (urlsplit(doc.url).hostname or "") if doc.url else ""
    except ValueError:
        pass
    cols["id"].append(doc.id)
    cols["url"].append(doc.url)
    cols["domain"].append(host.removeprefix("www."))
    cols["crawl_date"].append(rec.date)
    cols["source_file"].append(source_name)
    cols["record_offset"].append(rec.offset)
    cols["text"].append(doc.text)
    cols["language"].append(doc.metadata.get("language", ""))
    cols["language_score"].append(doc.metadata.get("language_score", 0.0))
    if FLAG_COLUMN in cols:  # [decontaminate] action = "flag": the eval sets hit
        cols[FLAG_COLUMN].append(doc.metadata.get(FLAG_COLUMN, []))
