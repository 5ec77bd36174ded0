"""Write one graph model (model.json + weight shards) for a conversion job."""

from __future__ import annotations

import importlib.metadata

from edgeport.contracts import Artifact, ConversionJob
from edgeport.converters.tfjs.hash_tables import initializer_graph
from edgeport.converters.tfjs.model_json import MODEL_FILE, model_json, signature_json, write_model_json
from edgeport.converters.tfjs.optimize import prepare_graph
from edgeport.converters.tfjs.weights import take_constants, take_references, write_weights
from edgeport.errors import ConversionError
from edgeport.formats.tfjs.heap import past_wasm, wasm_note
from edgeport.formats.tfjs.ops import RuntimeOps, unsupported_message, unsupported_ops

COMPRESSION = {"": None, "fp16": "float16", "uint8": "uint8", "uint16": "uint16"}


def emit_graph_model(job: ConversionJob, *, runtime: RuntimeOps, default_runtime: str) -> Artifact:
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    variant = job.target.variant
    prepared = prepare_graph(job.model, optimize=job.options.optimize, runtime=runtime)
    missing = unsupported_ops(prepared.op_counts(), runtime)
    if missing:
        raise ConversionError(unsupported_message(missing, runtime))
    graph_def = prepared.graph_def
    constants = [*take_constants(graph_def), *take_references(graph_def, job.model.frozen.references)]
    initializer = None
    if prepared.tables:
        taken = {node.name for node in graph_def.node} | {name for name, _ in constants}
        initializer = initializer_graph(prepared.tables, taken)
        constants += take_constants(initializer)
    signature = signature_json(job.model.signature, prepared.input_tensors, prepared.output_tensors)
    try:
        written = write_weights(
            constants, job.workdir, compress=COMPRESSION[variant], shard_size_bytes=job.options.shard_size_bytes
        )
    except ValueError as exc:
        raise ConversionError(f"tfjs: {exc}") from None
    content = model_json(
        graph_def,
        signature=signature,
        weights_manifest=written.manifest,
        generated_by=f"TensorFlow {tf.__version__}",
        converted_by=f"edgeport {_version()}",
        initializer=initializer,
    )
    write_model_json(job.workdir, content)
    fused = prepared.fused_counts()
    notes = []
    if fused:
        notes.append("fused ops: " + ", ".join(f"{op} x{count}" for op, count in fused.items()))
    if prepared.undone_fusions:
        notes.append("split fusions TF.js cannot run: " + ", ".join(sorted(set(prepared.undone_fusions))))
    if past_wasm(written.bytes):
        notes.append(wasm_note(written.bytes))
    if job.model.frozen.references:
        notes.append(
            f"a large model: {len(job.model.frozen.references)} weight(s) read from the SavedModel's variables "
            "as the shards were written, one at a time (never folded into the graph, so not folded with "
            "neighbouring scale/shift ops either)"
        )
    return Artifact(
        main_file=MODEL_FILE,
        precision=variant or "fp32",
        runtime=default_runtime,
        files=(MODEL_FILE, *written.files),
        warnings=written.warnings,
        notes=tuple(notes),
        details={
            "tfjs_version": runtime.version,
            "optimize": job.options.optimize,
            "fused_ops": fused,
            "folded_scale_shift_chains": prepared.folded_chains,
            "undone_fusions": list(prepared.undone_fusions),
            "node_count": sum(prepared.op_counts().values()),
            "weights": written.count,
            "quantized_weights": written.quantized,
            "weight_bytes": written.bytes,
            "weights_by_reference": len(job.model.frozen.references),
            "shards": len(written.files),
            "hash_tables": [table.node for table in prepared.tables],
        },
    )


def _version() -> str:
    try:
        return importlib.metadata.version("edgeport")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"
