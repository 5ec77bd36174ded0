"""TensorFlow runtime: the SavedModel itself, measured with the same protocol as every artifact (baseline row)."""
from __future__ import annotations

from pathlib import Path

from edgeport.contracts import Feeds, Runtime, RuntimeSettings, Session


class _SavedModelSession(Session):
    def __init__(self, path: Path, settings: RuntimeSettings):
        from edgeport.model import load_model  # noqa: PLC0415
        from edgeport.tf_quiet import import_tensorflow  # noqa: PLC0415

        tf = import_tensorflow()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialized in this process
            pass
        extra = settings.extra
        model = load_model(path, extra.get("signature"), tuple(extra["tags"]) if extra.get("tags") else None,
                           force_v1=bool(extra.get("force_v1")))
        self._run = model.session_runner()

    def run(self, feeds: Feeds) -> Feeds:
        return self._run(feeds)


class TensorFlowRuntime(Runtime):
    name = "tensorflow"
    description = "TensorFlow running the SavedModel (the baseline row)"

    def version(self) -> str:
        from importlib.metadata import version  # noqa: PLC0415

        return f"tensorflow {version('tensorflow')}"

    def open(self, artifact: Path, settings: RuntimeSettings) -> Session:
        return _SavedModelSession(artifact, settings)
