"""Graph rewrites that mean the same in every format, applied once to a copy of the shared frozen graph.

  * Erfc(x) -> Sub(1, Erf(x)). TensorFlow's exact GELU (keras `activation="gelu"`, tf.nn.gelu with
    approximate=False) is 0.5 * x * erfc(-x / sqrt(2)). TF.js maps Erf but not Erfc; tf2onnx has no Erfc
    handler, and ONNX has Erf (opset 9+). 1 - erf(x) loses erfc's relative precision only where
    erfc(x) < ~1e-7 (x > ~3.8), an absolute error below 1e-7.
  * MaxPool3D / AvgPool3D (NDHWC) -> two 2-D pools over merged axes (lower_pool3d): TFLite has no 3-D
    pooling builtin ("'tf.MaxPool3D' op is neither a custom op nor a flex op"); exact, SAME padding included.

Applied to the graph and to every function body (while/cond branches). Each converter decides whether it
needs a rewrite (the TF.js converter asks its runtime's op table) and says in its artifact how many it made.
"""

from __future__ import annotations


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_1`, `name_2`... whichever is free; the result is added to `taken`."""
    candidate, suffix = name, 1
    while candidate in taken:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def count_ops(graph_def, op: str) -> int:
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    return sum(node.op == op for node in nodes)


def rewrite_erfc(graph_def) -> int:
    """Every Erfc becomes 1 - Erf, in place; returns how many nodes were rewritten."""
    count = _erfc_in_graph(graph_def.node)
    for function in graph_def.library.function:
        count += _erfc_in_function(function)
    return count


def _erfc_in_graph(nodes) -> int:
    """Node N = Erfc(x) becomes N = Sub(N/one, N/erf) with N/erf = Erf(x): readers of N are unchanged."""
    names = {node.name for node in nodes}
    targets = [node for node in nodes if node.op == "Erfc"]
    for node in targets:
        one, erf = unique_name(f"{node.name}/one", names), unique_name(f"{node.name}/erf", names)
        _become_sub(nodes, node, one_name=one, erf_name=erf, one_ref=one, erf_ref=erf)
    return len(targets)


def _erfc_in_function(function) -> int:
    """As in the graph; in a function body Erfc's output is `N:y:0` and Sub's `N:z:0`, so readers follow."""
    nodes = function.node_def
    names = {node.name for node in nodes}
    targets = [node for node in nodes if node.op == "Erfc"]
    for node in targets:
        one, erf = unique_name(f"{node.name}_one", names), unique_name(f"{node.name}_erf", names)
        _become_sub(nodes, node, one_name=one, erf_name=erf, one_ref=f"{one}:output:0", erf_ref=f"{erf}:y:0")
    renamed = {f"{node.name}:y:0": f"{node.name}:z:0" for node in targets}
    if renamed:
        for node in nodes:
            for i, name in enumerate(node.input):
                if name in renamed:
                    node.input[i] = renamed[name]
        for key, value in list(function.ret.items()):
            if value in renamed:
                function.ret[key] = renamed[value]
    return len(targets)


def _become_sub(nodes, node, *, one_name: str, erf_name: str, one_ref: str, erf_ref: str) -> None:
    from tensorflow.python.framework import tensor_util

    dtype = node.attr["T"].type
    data = [name for name in node.input if not name.startswith("^")]
    control = [name for name in node.input if name.startswith("^")]
    erf = nodes.add(name=erf_name, op="Erf", device=node.device)
    erf.input.extend(data + control)
    erf.attr["T"].type = dtype
    one = nodes.add(name=one_name, op="Const", device=node.device)
    one.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(1, dtype=dtype, shape=[]))
    one.attr["dtype"].type = dtype
    if control:  # keep the constant under the same control dependencies (e.g. a TF1 loop frame) as Erf
        one.input.extend(control)
    node.op = "Sub"
    del node.input[:]
    node.input.extend([one_ref, erf_ref])
    node.ClearField("attr")
    node.attr["T"].type = dtype


def rename_functions(graph_def, renamed: dict[str, str]) -> None:
    """Rename library functions in place, and every reference to them (call `f`, While `cond`/`body`, If
    branches, Case `branches`: any func-valued attribute) in the graph and in every function body.

    An edited function must take a new name before the graph is imported again: TensorFlow keeps the first
    definition registered under a name and refuses a different one.
    """
    if not renamed:
        return
    for function in graph_def.library.function:
        function.signature.name = renamed.get(function.signature.name, function.signature.name)
    for nodes in [graph_def.node, *(function.node_def for function in graph_def.library.function)]:
        for node in nodes:
            for value in node.attr.values():
                if value.HasField("func") and value.func.name in renamed:
                    value.func.name = renamed[value.func.name]
                for func in value.list.func:
                    func.name = renamed.get(func.name, func.name)


POOL3D = {"MaxPool3D": "MaxPool", "AvgPool3D": "AvgPool"}


def lower_pool3d(graph_def) -> tuple[int, list[str]]:
    """Every MaxPool3D / AvgPool3D (NDHWC) becomes two 2-D pools over merged axes, in place; returns (how many
    were lowered, one line per pool left as it is and why). TFLite has no 3-D pooling builtin.

    [N, D, H, W, C] is reshaped to [N·D, H, W, C] and pooled over (H, W) with the op's window, strides and
    padding; the result, reshaped to [N, D, H'·W', C], is pooled over D with a (kd, 1) window and (sd, 1)
    strides, then reshaped to [N, D', H', W', C]. Both maximum and mean are separable over a box, SAME padding
    included: TF's AvgPool divides by the window's valid elements, a product of per-axis counts, so the mean
    of per-plane means over the valid planes is the 3-D mean. Any strides, any window.
    """
    lowered, refused = _pool3d_in(graph_def.node, lambda name: name)
    for function in graph_def.library.function:
        count, why = _pool3d_in(function.node_def, lambda name: f"{name}:output:0")
        lowered += count
        refused += why
    return lowered, refused


def _pool3d_refusal(node) -> str | None:
    data_format = node.attr["data_format"].s.decode() or "NDHWC"
    ksize, strides = list(node.attr["ksize"].list.i), list(node.attr["strides"].list.i)
    if data_format != "NDHWC":
        return f"{node.op} {node.name}: data_format {data_format} is not lowered (only NDHWC)"
    if len(ksize) != 5 or len(strides) != 5 or ksize[0] != 1 or ksize[4] != 1 or strides[0] != 1 or strides[4] != 1:
        return f"{node.op} {node.name}: a window or stride over batch or channels ({ksize}, {strides}) is not lowered"
    return None


def _pool3d_in(nodes, ref) -> tuple[int, list[str]]:
    """In one node list; `ref(name)` is how a node's first output is read there (a graph or a function)."""
    from tensorflow.python.framework import tensor_util

    names = {node.name for node in nodes}
    count, refused = 0, []
    for node in [node for node in nodes if node.op in POOL3D]:
        refusal = _pool3d_refusal(node)
        if refusal:
            refused.append(refusal)
            continue
        ksize, strides = list(node.attr["ksize"].list.i), list(node.attr["strides"].list.i)
        padding, dtype = node.attr["padding"].s, node.attr["T"].type
        data = [name for name in node.input if not name.startswith("^")]
        control = [name for name in node.input if name.startswith("^")]
        source = data[0]

        def add(suffix, op, inputs, **attrs):
            new = nodes.add(name=unique_name(f"{node.name}/{suffix}", names), op=op, device=node.device)  # noqa: B023
            new.input.extend([*inputs, *(control if not inputs else [])])  # noqa: B023
            for key, value in attrs.items():
                if isinstance(value, int) and key in ("T", "Tidx", "Index", "Tshape", "out_type", "dtype"):
                    new.attr[key].type = value
                elif isinstance(value, list):
                    new.attr[key].list.i.extend(value)
                elif isinstance(value, bytes):
                    new.attr[key].s = value
                elif isinstance(value, int):
                    new.attr[key].i = value
                else:
                    new.attr[key].tensor.CopyFrom(value)
            return new.name

        def const(suffix, value):
            import numpy as np

            tensor = tensor_util.make_tensor_proto(np.asarray(value, dtype=np.int32))
            return add(suffix, "Const", [], value=tensor, dtype=tensor.dtype)

        def part(suffix, shape, begin, end):
            return ref(
                add(
                    suffix,
                    "StridedSlice",
                    [
                        shape,
                        ref(const(f"{suffix}_begin", [begin])),
                        ref(const(f"{suffix}_end", [end])),
                        ref(const(f"{suffix}_one", [1])),
                    ],
                    T=3,
                    Index=3,
                    begin_mask=0,
                    end_mask=0,
                    ellipsis_mask=0,
                    new_axis_mask=0,
                    shrink_axis_mask=0,
                )
            )

        def concat(suffix, parts):
            return ref(add(suffix, "ConcatV2", [*parts, ref(const(f"{suffix}_axis", 0))], T=3, Tidx=3, N=len(parts)))

        pool2d = POOL3D[node.op]
        shape = ref(add("shape", "Shape", [source], T=dtype, out_type=3))
        minus_one = ref(const("minus_one", [-1]))
        planes = ref(
            add(
                "planes",
                "Reshape",
                [source, concat("planes_shape", [minus_one, part("hwc", shape, 2, 5)])],
                T=dtype,
                Tshape=3,
            )
        )
        over_hw = ref(
            add(
                "pool_hw",
                pool2d,
                [planes],
                T=dtype,
                ksize=[1, ksize[2], ksize[3], 1],
                strides=[1, strides[2], strides[3], 1],
                padding=padding,
                data_format=b"NHWC",
            )
        )
        hw_shape = ref(add("pool_hw_shape", "Shape", [over_hw], T=dtype, out_type=3))
        channels = part("c", shape, 4, 5)
        depth_major = ref(
            add(
                "depth_major",
                "Reshape",
                [over_hw, concat("depth_major_shape", [part("nd", shape, 0, 2), minus_one, channels])],
                T=dtype,
                Tshape=3,
            )
        )
        over_d = ref(
            add(
                "pool_d",
                pool2d,
                [depth_major],
                T=dtype,
                ksize=[1, ksize[1], 1, 1],
                strides=[1, strides[1], 1, 1],
                padding=padding,
                data_format=b"NHWC",
            )
        )
        d_shape = ref(add("pool_d_shape", "Shape", [over_d], T=dtype, out_type=3))
        out_shape = concat("out_shape", [part("nd_out", d_shape, 0, 2), part("hw_out", hw_shape, 1, 3), channels])
        node.op = "Reshape"
        del node.input[:]
        node.input.extend([over_d, out_shape])
        node.ClearField("attr")
        node.attr["T"].type = dtype
        node.attr["Tshape"].type = 3
        count += 1
    return count, refused


def rewrite_complex_abs(graph_def) -> tuple[int, list[str]]:
    """Every ComplexAbs(x) becomes Sqrt(Square(Real(x)) + Square(Imag(x))), in place; returns (how many were
    rewritten, one line per RFFT left complex and why).

    Where x = RFFT(frames, fft_length) with a constant fft_length and a static last axis L (an STFT's
    frames), Real(x) and Imag(x) are written as the real DFT itself, two MatMuls of the frames reshaped to
    [-1, L] with constant [L, n/2+1] cosine and -sine matrices (rows past n zero: RFFT crops; rows past L
    absent: RFFT zero-pads), so no complex tensor is left: tf2onnx's RFFT handler takes only ComplexAbs
    readers and fails with a dynamic batch, and TF.js's wasm backend has no Complex kernel. The DFT is the
    same sum in float32, within float rounding of TensorFlow's FFT.
    """
    count, refused = _complex_abs_in(graph_def.node, lambda name, arg: name, graph_static_shapes(graph_def))
    for function in graph_def.library.function:
        if not any(node.op == "ComplexAbs" for node in function.node_def):
            continue
        shapes = function_static_shapes(graph_def, function)
        added, why = _complex_abs_in(function.node_def, lambda name, arg: f"{name}:{arg}:0", shapes)
        count += added
        refused += why
    return count, refused


def graph_static_shapes(graph_def):
    """tensor name -> static shape (a list, None where unknown), for the RFFT inputs of the top-level graph."""
    if not any(node.op == "RFFT" for node in graph_def.node):
        return lambda tensor: None
    import tensorflow as tf

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
    except Exception:  # noqa: BLE001 - no shapes: every RFFT stays complex (and is named)
        return lambda tensor: None

    def shape(tensor: str):
        name = tensor if ":" in tensor else f"{tensor}:0"
        try:
            return graph.get_tensor_by_name(name).shape.as_list()
        except (KeyError, ValueError):
            return None

    return shape


def function_static_shapes(graph_def, function):
    if not any(node.op == "RFFT" for node in function.node_def):
        return lambda tensor: None
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

    try:
        graph = function_def_to_graph(function)
    except Exception:  # noqa: BLE001 - as in graph_static_shapes
        return lambda tensor: None

    def shape(tensor: str):
        parts = tensor.split(":")
        name = f"{parts[0]}:0" if len(parts) == 1 else None
        try:
            if name is None:  # `node:arg:index` (or an input arg `name`): the graph's tensor of that node output
                op = graph.get_operation_by_name(parts[0])
                return op.outputs[int(parts[2]) if len(parts) == 3 else 0].shape.as_list()
            return graph.get_tensor_by_name(name).shape.as_list()
        except (KeyError, ValueError, IndexError):
            return None

    return shape


def _complex_abs_in(nodes, ref, shape_of) -> tuple[int, list[str]]:
    """In one node list; `ref(name, arg)` is how a node's first output (output arg `arg`) is read there."""
    from tensorflow.python.framework import tensor_util

    names = {node.name for node in nodes}
    by_name = {node.name: node for node in nodes}
    count, refused = 0, list[str]()
    for node in [node for node in nodes if node.op == "ComplexAbs"]:
        complex_dtype, real_dtype = node.attr["T"].type, node.attr["Tout"].type
        data = [name for name in node.input if not name.startswith("^")]
        control = [name for name in node.input if name.startswith("^")]
        source = data[0]

        def add(suffix, op, inputs, attrs):
            new = nodes.add(name=unique_name(f"{node.name}/{suffix}", names), op=op, device=node.device)  # noqa: B023
            new.input.extend([*inputs, *(control if not inputs else [])])  # noqa: B023
            for key, value in attrs.items():
                if isinstance(value, int) and key not in ("begin_mask", "end_mask", "N"):
                    new.attr[key].type = value
                elif isinstance(value, int):
                    new.attr[key].i = value
                else:
                    new.attr[key].tensor.CopyFrom(value)
            return new.name

        def const(suffix, value):
            tensor = tensor_util.make_tensor_proto(value)
            return ref(add(suffix, "Const", [], {"value": tensor, "dtype": tensor.dtype}), "output")

        parts = None
        producer = by_name.get(source.split(":")[0])
        if producer is not None and producer.op == "RFFT":
            parts = _dft(producer, add, const, ref, by_name, shape_of, refused)
        if parts is None:
            parts = tuple(
                ref(add(op.lower(), op, [source], {"T": complex_dtype, "Tout": real_dtype}), "output")
                for op in ("Real", "Imag")
            )
        squares = [ref(add(f"{i}_squared", "Square", [part], {"T": real_dtype}), "y") for i, part in enumerate(parts)]
        total = ref(add("sum_of_squares", "AddV2", squares, {"T": real_dtype}), "z")
        node.op = "Sqrt"  # output arg `y`, as ComplexAbs's: readers are unchanged
        del node.input[:]
        node.input.extend([total, *control])
        node.ClearField("attr")
        node.attr["T"].type = real_dtype
        count += 1
    return count, refused


def _dft(rfft, add, const, ref, by_name, shape_of, refused: list[str]):
    """(real, imaginary) parts of RFFT(frames) as MatMuls of constant DFT matrices, or None (and one line)."""
    import numpy as np
    from tensorflow.python.framework import tensor_util

    frames, length = [name for name in rfft.input if not name.startswith("^")][:2]
    length_node = by_name.get(length.split(":")[0])
    shape = shape_of(frames)
    if length_node is None or length_node.op != "Const":
        refused.append(f"RFFT {rfft.name}: fft_length is not a constant; left complex")
        return None
    if not shape or shape[-1] is None:
        refused.append(f"RFFT {rfft.name}: the frames' last axis is not static; left complex")
        return None
    n = int(tensor_util.MakeNdarray(length_node.attr["value"].tensor).reshape(-1)[0])
    frame, bins = int(shape[-1]), n // 2 + 1
    real_dtype = rfft.attr["Treal"].type or 1
    np_dtype = np.float64 if real_dtype == 2 else np.float32
    rows = np.arange(frame, dtype=np.float64)[:, None]
    angle = 2 * np.pi * rows * np.arange(bins, dtype=np.float64)[None, :] / n
    kept = (rows < n).astype(np.float64)
    cos, minus_sin = (np.cos(angle) * kept).astype(np_dtype), (-np.sin(angle) * kept).astype(np_dtype)
    flat = ref(
        add(
            "frames_2d",
            "Reshape",
            [frames, const("frames_2d_shape", np.array([-1, frame], np.int32))],
            {
                "T": real_dtype,
                "Tshape": 3,
            },
        ),
        "output",
    )
    frames_shape = ref(add("frames_shape", "Shape", [frames], {"T": real_dtype, "out_type": 3}), "output")
    leading = ref(
        add(
            "leading",
            "StridedSlice",
            [
                frames_shape,
                const("leading_begin", np.array([0], np.int32)),
                const("leading_end", np.array([-1], np.int32)),
                const("leading_step", np.array([1], np.int32)),
            ],
            {"T": 3, "Index": 3, "begin_mask": 0, "end_mask": 0},
        ),
        "output",
    )
    out_shape = ref(
        add(
            "spectrum_shape",
            "ConcatV2",
            [leading, const("bins", np.array([bins], np.int32)), const("spectrum_shape_axis", np.int32(0))],
            {"T": 3, "Tidx": 3, "N": 2},
        ),
        "output",
    )
    parts = []
    for part, matrix in (("real", cos), ("imag", minus_sin)):
        product = ref(
            add(f"dft_{part}", "MatMul", [flat, const(f"dft_{part}_matrix", matrix)], {"T": real_dtype}), "product"
        )
        parts.append(ref(add(part, "Reshape", [product, out_shape], {"T": real_dtype, "Tshape": 3}), "output"))
    return tuple(parts)


def with_real_spectra(frozen):
    """`frozen` (a FrozenGraph) with every ComplexAbs rewritten (rewrite_complex_abs) in a copy, and the notes
    to report; `frozen` itself when it has no ComplexAbs."""
    import dataclasses

    if not count_ops(frozen.graph_def, "ComplexAbs"):
        return frozen, []
    graph_def = type(frozen.graph_def)()
    graph_def.CopyFrom(frozen.graph_def)
    count, refused = rewrite_complex_abs(graph_def)
    notes = [f"{count} ComplexAbs op(s) written as sqrt(re² + im²), RFFT as a real DFT (MatMul)"]
    return dataclasses.replace(frozen, graph_def=graph_def), notes + [f"left complex: {why}" for why in refused]
