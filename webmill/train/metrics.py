"""The run log of ``train pretrain``: ``RUN/metrics.jsonl`` (one JSON object per event) and the
optional TensorBoard scalars, on local disk or on an object store.

``metrics.jsonl`` is appended to and flushed line by line (``tail -f`` works), which object
stores cannot do. For a run directory on another filesystem (``--out s3://...``) the log is
therefore written to a local *staging* directory, ``$WEBMILL_CACHE/runs/<first 16 hex of
sha256(RUN URL)>/`` (named in the trainer's first lines), and published to ``RUN/metrics.jsonl``
as one whole object (:meth:`webmill.storage.Storage.write_bytes`) at every checkpoint, every
val evaluation and at the end, so the remote copy is at most one eval/checkpoint interval
behind. TensorBoard event files stay in the staging directory (``STAGING/tensorboard``); they
are not uploaded. For a local run directory nothing changes: the log is ``RUN/metrics.jsonl``
itself and TensorBoard writes ``RUN/tensorboard``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from webmill.storage import Storage
from webmill.train.shard_cache import cache_dir

METRICS = "metrics.jsonl"


def staging_storage(run: Storage) -> Storage:
    """Where the log of ``run`` is written: ``run`` itself when local, else the local staging
    directory ``$WEBMILL_CACHE/runs/<sha256(run.uri())[:16]>`` (a :class:`Storage`)."""
    if run.is_local:
        return run
    return Storage(cache_dir() / "runs" / hashlib.sha256(run.uri().encode("utf-8")).hexdigest()[:16])


def kept_records(text: str, resume_step: int) -> str:
    """The lines of a log to keep when a run resumes from its checkpoint at ``resume_step``.

    Records of steps before ``resume_step`` and the train record of ``resume_step`` itself
    stay; the rest (val/sample records at ``resume_step``, anything later: written by the
    interrupted process after its last checkpoint, re-logged by the resumed run) and lines cut
    by a crash are dropped. Returns the kept lines, each ending in a newline.
    """
    kept = []
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if r.get("step", 0) < resume_step or (r.get("type") == "train" and r.get("step") == resume_step):
            kept.append(line + "\n")
    return "".join(kept)


class MetricsLogger:
    """Appends one JSON object per event to the run's ``metrics.jsonl``; mirrors scalars to
    TensorBoard; publishes the log to a non-local run directory (module docstring).

    Args:
        run: the run directory (``--out``).
        tensorboard: also write TensorBoard scalars when the package is installed.
        enabled: False on non-zero ranks (every method is then a no-op).
        resume_step: the checkpoint step a resumed run starts from, or None for a new run.
        say: where the one line naming a staging directory goes.
    """

    def __init__(self, run: Storage, tensorboard: bool, enabled: bool, resume_step: int | None = None,
                 say: Callable[[str], None] = print):
        """Open the log: emptied for a new run; on resume from step k, the run's own copy (the
        remote one for a URL) is read and cut to :func:`kept_records`, rewritten atomically,
        then appended to."""
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.run, self.stage = run, staging_storage(run)
        kept = ""
        if resume_step is not None and run.isfile(METRICS):
            kept = kept_records(run.read_text(METRICS), resume_step)
        self.stage.write_text(METRICS, kept)
        self.f = open(self.stage.local_path(METRICS), "a", encoding="utf-8")
        if not run.is_local:
            self.publish()
            say(f"metrics: logged to {self.stage.uri(METRICS)}, published to {run.uri(METRICS)} at every "
                f"checkpoint, eval and at the end" + ("; TensorBoard stays local" if tensorboard else ""))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.stage.local_path("tensorboard")))
            except ImportError:
                self.tb = None

    def log(self, record: dict) -> None:
        """Append ``record`` (a dict with ``type`` and ``step``) as one JSON line, flushed."""
        if not self.enabled:
            return
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{record['type']}/{k}", v, record["step"])

    def publish(self) -> None:
        """Copy the staged log to a non-local run directory as one whole object (local: no-op)."""
        if self.enabled and not self.run.is_local:
            self.f.flush()
            self.run.write_bytes(METRICS, self.stage.read_bytes(METRICS))

    def close(self) -> None:
        """Publish (non-local runs) and close the log and TensorBoard writer."""
        if self.enabled:
            self.publish()
            self.f.close()
            if self.tb is not None:
                self.tb.close()
