"""Samples: the inputs fed to the SavedModel and to every artifact (and, for int8, to calibration).

From `--data` (.npz keyed by input name, .npy for a single input, or a folder of images with a
preprocessing recipe) or, without data, deterministic seeded synthetic inputs per dtype. Every array is
conformed to the signature here, so runtimes receive feeds shaped exactly as the signature says.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from edgeport.data import DEFAULT_SYNTHETIC_COUNT, SampleSet, Signature, TensorSpec
from edgeport.errors import UsageError
from edgeport.model.input_ranges import InferredRange
from edgeport.report import wording

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
FLOAT_RANGE = (0.0, 1.0)
INT_RANGE = (0, 10)
# Synthetic samples and their reference outputs must fit in memory: at most this share of MemAvailable
# (/proc/meminfo; FALLBACK_SAMPLE_BUDGET where there is none). The run holds them in the orchestrator, the
# model service and the runtime process, and pickles them between: a quarter leaves room for those copies.
SAMPLE_MEMORY_SHARE = 0.25
FALLBACK_SAMPLE_BUDGET = 2 << 30
STRING_ELEMENT_BYTES = 64  # one string element: a Python bytes object (about 40 B) and the array's pointer


@dataclass(frozen=True)
class Preprocess:
    """Image folder recipe: resize to the input's H,W, then value * scale + offset, in channel order."""

    scale: float = 1.0 / 255.0
    offset: float = 0.0
    channels: str = "rgb"  # or "bgr"

    @classmethod
    def parse(cls, text: str | None) -> Preprocess:
        if not text:
            return cls()
        values: dict = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key in ("scale", "offset"):
                values[key] = _parse_number(value, f"--preprocess {key}")
            elif key == "channels" and value.strip().lower() in ("rgb", "bgr"):
                values[key] = value.strip().lower()
            else:
                raise UsageError(f"--preprocess: unknown item {part!r}; use scale=F,offset=F,channels=rgb|bgr")
        return cls(**values)


@dataclass(frozen=True)
class SampleRequest:
    data: Path | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    count: int = DEFAULT_SYNTHETIC_COUNT
    seed: int = 0
    input_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    second_sizes: bool = False  # dynamic dimensions edgeport chooses take their second size
    exclude: tuple[str, ...] = ()  # keys of the --data .npz that are not inputs (the --labels key)
    count_chosen: bool = False  # the count was given (--samples, config samples), not the default


# Sizes for dynamic dimensions other than the batch, when neither --input-shape nor --data gives them: a
# spatial size that survives five stride-2 stages (and the second, six), a sequence length, anything else.
# The second of each is the other size every artifact of such a model is also checked at.
DYNAMIC_SIZES = {"spatial": (64, 96), "sequence": (16, 24), "other": (8, 12)}


def _parse_number(text: str, where: str) -> float:
    try:
        return float(eval_fraction(text))
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a number") from None


def eval_fraction(text: str) -> float:
    num, slash, den = text.strip().partition("/")
    return float(num) / float(den) if slash else float(num)


def parse_input_ranges(items: tuple[str, ...] | list[str]) -> dict[str, tuple[float, float]]:
    ranges = {}
    for item in items:
        name, eq, span = item.partition("=")
        low, colon, high = span.partition(":")
        if not eq or not colon:
            raise UsageError(f"--input-range {item!r}: expected NAME=LO:HI, e.g. image=0:1")
        low_value = _parse_number(low, f"--input-range {name}")
        high_value = _parse_number(high, f"--input-range {name}")
        if not (np.isfinite(low_value) and np.isfinite(high_value) and low_value < high_value):
            raise UsageError(
                f"--input-range {item!r}: LO and HI must be finite numbers with LO < HI, e.g. {name.strip()}=0:1"
            )
        ranges[name.strip()] = (low_value, high_value)
    return ranges


def parse_input_shapes(items: tuple[str, ...] | list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        name, eq, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not eq or not shape or min(shape) < 0:
            raise UsageError(f"--input-shape {item!r}: expected NAME=D0,D1,..., e.g. image=1,224,224,3")
        shapes[name.strip()] = check_input_shape(name.strip(), shape)
    return shapes


def check_input_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A feed shape given by the user: whole dimensions of 1 or more (a 0 makes every sample empty, and a check
    on no values proves nothing)."""
    dims = ",".join(map(str, shape))
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise UsageError(f"--input-shape {name}={dims}: dimensions must be whole numbers, e.g. {name}=1,224,224,3")
    if any(d < 1 for d in shape):
        raise UsageError(
            f"--input-shape {name}={dims}: a dimension of {min(shape)} leaves every sample with no values to "
            f"compare; give each dimension 1 or more, e.g. {name}=1,{','.join(str(max(d, 1)) for d in shape[1:])}"
        )
    return tuple(shape)


IMAGES_EXTRA = "pip install 'edgeport[images]'"


def require_pillow(where: str) -> ModuleType:
    """Pillow's Image module, which an image folder needs; its absence is one line saying which extra to install."""
    try:
        from PIL import Image
    except ImportError:
        raise UsageError(
            f"{where}: an image folder needs Pillow, which is not installed here; {IMAGES_EXTRA} "
            "(or pass the samples as an .npz)"
        ) from None
    return Image


def feed_shape(spec: TensorSpec, override: tuple[int, ...] | None, *, second_size: bool = False) -> tuple[int, ...]:
    """The concrete shape of one feed: --input-shape if given; else a dynamic batch becomes 1 and other dynamic
    dimensions take the sizes of DYNAMIC_SIZES (the second ones with `second_size`)."""
    if override is not None:
        if spec.shape is not None and (
            len(override) != len(spec.shape)
            or any(d is not None and d != o for d, o in zip(spec.shape, override, strict=True))
        ):
            raise UsageError(
                f"--input-shape {spec.name}={','.join(map(str, override))} does not fit the "
                f"signature's {spec.describe()}"
            )
        return override
    if spec.shape is None:
        raise UsageError(f"input {spec.name!r} has unknown rank; pass --input-shape {spec.name}=D0,D1,...")
    dims = list(spec.shape)
    if dims and dims[0] is None:
        dims[0] = 1
    for index, dim in enumerate(dims):
        if dim is None:
            dims[index] = DYNAMIC_SIZES[_role(len(dims), index)][1 if second_size else 0]
    return tuple(d for d in dims if d is not None)  # none is left


def _role(rank: int, index: int) -> str:
    if rank == 4 and index in (1, 2):
        return "spatial"
    if rank == 3 and index == 1:
        return "sequence"
    return "other"


def chosen_dimensions(signature: Signature, request: SampleRequest) -> dict[str, str]:
    """Inputs whose non-batch dimensions edgeport chose (no --input-shape, no --data): name -> what it chose."""
    if request.data is not None:
        return {}
    chosen = {}
    for spec in signature.inputs:
        if spec.name in request.input_shapes or spec.shape is None or all(d is not None for d in spec.shape[1:]):
            continue
        first, second = feed_shape(spec, None), feed_shape(spec, None, second_size=True)
        chosen[spec.name] = f"{spec.describe()}: checked at [{_dims(first)}] and [{_dims(second)}]"
    return chosen


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


# Words for string inputs when the model carries no vocabulary, and words no vocabulary holds: a quarter of
# synthetic strings are out of vocabulary, the case a lookup's OOV bucket exists for.
GENERIC_WORDS = ("the", "a", "model", "edge", "device", "phone", "red", "green", "blue", "fast", "slow", "cat")
OUT_OF_VOCABULARY = ("edgeport-oov-0", "edgeport-oov-1", "zzqx")
OOV_SHARE = 0.25


def _element_bytes(dtype: str) -> int:
    if dtype in ("string", "resource", "variant"):
        return STRING_ELEMENT_BYTES
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 8


def bytes_per_sample(signature: Signature, request: SampleRequest) -> int:
    """The memory one synthetic sample takes: its feeds, and the SavedModel's outputs on it (dynamic output
    dimensions counted as the largest input dimension; an output of unknown rank as large as the largest feed)."""
    shapes = [
        feed_shape(spec, request.input_shapes.get(spec.name), second_size=request.second_sizes)
        for spec in signature.inputs
    ]
    inputs = sum(
        int(np.prod(shape, dtype=np.int64)) * _element_bytes(spec.dtype)
        for spec, shape in zip(signature.inputs, shapes, strict=True)
    )
    largest_dim = max((d for shape in shapes for d in shape), default=1)
    largest_feed = max((int(np.prod(shape, dtype=np.int64)) for shape in shapes), default=1)
    outputs = 0
    for spec in signature.outputs:
        if spec.shape is None:
            elements = largest_feed
        else:
            dims = [1 if i == 0 and d is None else (largest_dim if d is None else d) for i, d in enumerate(spec.shape)]
            elements = int(np.prod(dims, dtype=np.int64))
        outputs += elements * _element_bytes(spec.dtype)
    return max(1, inputs + outputs)


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sample_memory_budget() -> tuple[int, str]:
    """(bytes synthetic samples may take, how that was decided)."""
    available = mem_available_bytes()
    if available is None:
        return FALLBACK_SAMPLE_BUDGET, f"{wording.size(FALLBACK_SAMPLE_BUDGET)}, as this system shows no MemAvailable"
    return int(available * SAMPLE_MEMORY_SHARE), f"a quarter of the {wording.size(available)} of memory available"


def check_sample_memory(signature: Signature, request: SampleRequest) -> None:
    """Refuse (UsageError, before anything is allocated) a --samples count whose arrays cannot fit in memory."""
    per_sample = bytes_per_sample(signature, request)
    budget, why = sample_memory_budget()
    if request.count * per_sample <= budget:
        return
    raise UsageError(
        f"--samples {request.count} needs about {wording.size(request.count * per_sample)} of memory for the samples "
        f"and their reference outputs ({wording.size(per_sample)} each); at most {budget // per_sample} fit "
        f"({why}); pass a smaller --samples"
    )


def synthetic_samples(
    signature: Signature,
    request: SampleRequest,
    vocabulary: tuple[str, ...] = (),
    graph_ranges: Mapping[str, InferredRange] | None = None,
) -> SampleSet:
    """`graph_ranges`: what the model's graph says an input takes (edgeport.model.input_ranges); --input-range
    wins over it, and it over the default ranges."""
    check_sample_memory(signature, request)
    rng = np.random.default_rng(request.seed)
    arrays = {}
    inferred = {name: found for name, found in (graph_ranges or {}).items() if name not in request.input_ranges}
    used: dict[str, InferredRange] = {}
    for spec in signature.inputs:
        shape = (
            request.count,
            *feed_shape(spec, request.input_shapes.get(spec.name), second_size=request.second_sizes),
        )
        if spec.dtype == "string":
            arrays[spec.name] = _random_strings(rng, shape, vocabulary)
        else:
            given = request.input_ranges.get(spec.name)
            found = inferred.get(spec.name)
            if given is None and found is not None and _fits_last_axis(found, shape):
                given = found.bounds()
                used[spec.name] = found
            arrays[spec.name] = _random_array(rng, spec, shape, given)
    source = f"synthetic (seed {request.seed}, {request.count} samples)"
    for name, found in used.items():
        spread = f" per feature, {len(found.per_feature)} features" if found.per_feature else ""
        source += f"; {name} in [{found.low:g}, {found.high:g}){spread}: {found.why}"
    if any(spec.dtype == "string" for spec in signature.inputs):
        words = f"{len(vocabulary)} words of the model's vocabulary" if vocabulary else "generic words"
        source += f"; strings from {words}, {OOV_SHARE:.0%} out of vocabulary"
    return SampleSet(arrays=arrays, source=source, synthetic=True)


def _fits_last_axis(found: InferredRange, shape: tuple[int, ...]) -> bool:
    """Per-feature bounds apply only along a last axis of as many features."""
    return not found.per_feature or (len(shape) > 1 and shape[-1] == len(found.per_feature))


def _random_strings(rng, shape, vocabulary: tuple[str, ...]) -> np.ndarray:
    known = list(vocabulary or GENERIC_WORDS)
    picked = [
        OUT_OF_VOCABULARY[rng.integers(len(OUT_OF_VOCABULARY))]
        if rng.random() < OOV_SHARE
        else known[rng.integers(len(known))]
        for _ in range(int(np.prod(shape)))
    ]
    return np.array([word.encode("utf-8") for word in picked], dtype=object).reshape(shape)


def _random_array(rng, spec: TensorSpec, shape, value_range) -> np.ndarray:
    if spec.dtype in ("string", "resource", "variant"):
        raise UsageError(f"input {spec.name!r} is a {spec.dtype} tensor; synthetic data cannot fill it: pass --data")
    dtype = np.dtype(spec.dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        low, high = value_range or INT_RANGE
        return rng.integers(int(low), int(high), size=shape, endpoint=False).astype(dtype)
    low, high = value_range or FLOAT_RANGE
    return rng.uniform(low, high, size=shape).astype(dtype)


def _check_named_inputs(signature: Signature, request: SampleRequest) -> None:
    """--input-range and --input-shape must name inputs of the signature (a typo would be silently ignored)."""
    names = [spec.name for spec in signature.inputs]
    for flag, given in (("--input-range", request.input_ranges), ("--input-shape", request.input_shapes)):
        for name in given:
            if name not in names:
                raise UsageError(
                    f"{flag} {name}: signature {signature.key!r} has no input {name!r} (inputs: {', '.join(names)})"
                )


def load_samples(
    signature: Signature,
    request: SampleRequest,
    vocabulary: tuple[str, ...] = (),
    graph_ranges: Mapping[str, InferredRange] | None = None,
) -> SampleSet:
    _check_named_inputs(signature, request)
    if request.data is None:
        return synthetic_samples(signature, request, vocabulary, graph_ranges)
    path = Path(request.data)
    if not path.exists():
        raise UsageError(f"data {path} does not exist; pass an .npz, .npy or a folder of images")
    if path.is_dir():
        arrays = _image_folder(path, signature, request)
    elif path.suffix == ".npz":
        arrays = _inputs_of(read_npz(path), request.exclude)
    elif path.suffix == ".npy":
        if len(signature.inputs) != 1:
            names = ", ".join(s.name for s in signature.inputs)
            raise UsageError(
                f"data {path} is .npy but the signature has {len(signature.inputs)} inputs ({names}); "
                "pass an .npz keyed by input name"
            )
        arrays = {signature.inputs[0].name: _load_array(path)}
    else:
        raise _unknown_format(path)
    conformed = conform(signature, arrays, str(path), request.input_shapes)
    casts = [
        f"{name} {np.asarray(arrays[name]).dtype} -> {conformed[name].dtype}"
        for name in conformed
        if name in arrays
        and np.asarray(arrays[name]).dtype != conformed[name].dtype
        and conformed[name].dtype != object
    ]
    notes = (f"data {path}: cast to the signature's dtypes ({'; '.join(casts)})",) if casts else ()
    return SampleSet(arrays=conformed, source=str(path), synthetic=False, notes=notes)


def precheck_data(path: Path, exclude: tuple[str, ...] = ()) -> None:
    """What is wrong with a data file on its own, said before the model loads (TensorFlow's import alone takes
    5 s): unreadable, an unknown format, an .npz without samples or with NaN/Inf values. What needs the
    signature (keys, dtypes, shapes) is checked when the samples are read (`load_samples`), which reads the
    file from `read_npz`'s cache, not twice."""
    if path.is_dir():
        return
    if path.suffix == ".npy":
        _load_array(path)
        return
    if path.suffix != ".npz":
        raise _unknown_format(path)
    arrays = _inputs_of(read_npz(path), exclude)
    if arrays and all(len(np.atleast_1d(array)) == 0 for array in arrays.values()):
        raise UsageError(f"data {path}: no samples")
    for name, array in arrays.items():
        _refuse_non_finite(name, array, str(path))


def _inputs_of(arrays: Mapping[str, np.ndarray], exclude: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {key: value for key, value in arrays.items() if key not in exclude}


def _unknown_format(path: Path) -> UsageError:
    return UsageError(f"data {path}: unknown format {path.suffix or '(none)'}; use .npz, .npy or an image folder")


def _refuse_non_finite(name: str, array: np.ndarray, where: str) -> None:
    if array.dtype.kind in "fc" and array.size and not np.all(np.isfinite(array)):
        first = int(np.argwhere(~np.isfinite(array.reshape(len(array), -1)))[0][0]) if array.ndim else 0
        raise UsageError(
            f"data {where}: input {name!r} has {int(np.sum(~np.isfinite(array)))} NaN/Inf values (first in "
            f"sample {first}); accuracy is compared on finite inputs only: clean the data"
        )


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(
            f"data {path} cannot be read as numpy ({_why_unreadable(exc)}); write it with np.save"
        ) from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The archive's arrays; the last two files read are kept (the pre-check and the samples read one file),
    keyed by path, size and modification time so that a file rewritten between the two is read again."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise UsageError(f"data {path} cannot be read ({exc.strerror})") from None
    return dict(_read_npz(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=2)
def _read_npz(path: str, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    import zipfile

    del size, mtime_ns  # the cache's key only
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        for array in arrays.values():
            array.setflags(write=False)  # shared by every reader of the cache: never changed in place
        return arrays
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(
            f"data {path} cannot be read as .npz ({_why_unreadable(exc)}); write it with np.savez"
        ) from None


def _why_unreadable(exc: BaseException) -> str:
    """numpy's reason, minus its advice to load pickled data unsafely (edgeport never loads pickles)."""
    text = str(exc).strip() or type(exc).__name__
    if "pickle" in text:
        return "not a numpy archive, or one holding pickled objects, which edgeport does not load"
    return text.splitlines()[0]


def conform(
    signature: Signature,
    arrays: Mapping[str, np.ndarray],
    where: str,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Check keys, dtypes and shapes against the signature; return arrays whose axis 0 indexes samples.

    An array either has one more axis than the input (axis 0 = samples, each one a full feed), or the
    same rank when the input's batch dimension is dynamic or 1 (each row then becomes a batch of one).
    """
    names = {s.name for s in signature.inputs}
    unknown = sorted(set(arrays) - names)
    missing = sorted(names - set(arrays))
    if unknown:
        raise UsageError(
            f"data {where}: key {unknown[0]!r} is not an input of signature {signature.key!r} "
            f"(inputs: {', '.join(sorted(names))})"
        )
    if missing:
        raise UsageError(
            f"data {where}: input {missing[0]!r} is missing; the signature needs {', '.join(sorted(names))}"
        )
    out, counts = {}, set()
    for spec in signature.inputs:
        out[spec.name] = _conform_one(spec, np.asarray(arrays[spec.name]), where, (input_shapes or {}).get(spec.name))
        counts.add(len(out[spec.name]))
    if len(counts) > 1:
        raise UsageError(f"data {where}: inputs hold different sample counts {sorted(counts)}; give each the same")
    if counts == {0}:
        raise UsageError(f"data {where}: no samples")
    for name, array in out.items():
        if array.size == 0:
            raise UsageError(
                f"data {where}: input {name!r} has shape {list(array.shape)}, no values in any sample; a check on "
                "empty inputs proves nothing: give every dimension 1 or more"
            )
    return out


def _conform_one(spec: TensorSpec, array: np.ndarray, where: str, override) -> np.ndarray:
    want = np.dtype(object) if spec.dtype == "string" else np.dtype(spec.dtype)
    if spec.dtype == "string":
        if array.dtype.kind not in "SUO":
            raise UsageError(f"data {where}: input {spec.name!r} is {array.dtype}, the signature wants strings")
        array = array.astype(object)
    elif array.dtype != want:
        lossless = np.can_cast(array.dtype, want, casting="same_kind") and not (
            np.issubdtype(want, np.integer) and np.issubdtype(array.dtype, np.floating)
        )
        if not lossless:
            raise UsageError(
                f"data {where}: input {spec.name!r} is {array.dtype}, the signature wants {spec.dtype}; "
                f"convert it with .astype('{spec.dtype}')"
            )
        array = array.astype(want)
    _refuse_non_finite(spec.name, array, where)
    dims = override or spec.shape
    if dims is None:
        return array
    rank = len(dims)

    def fits(shape) -> bool:
        return len(shape) == rank and all(d is None or d == s for d, s in zip(dims, shape, strict=True))

    if array.ndim == rank + 1 and fits(array.shape[1:]):
        return array
    if array.ndim == rank and rank > 0 and dims[0] in (None, 1) and fits((1, *array.shape[1:])):
        return array[:, None]
    raise UsageError(
        f"data {where}: input {spec.name!r} has shape {list(array.shape)}, which does not fit the "
        f"signature's {spec.describe()} (expected [samples, ...] or [samples, ...feed])"
    )


def _image_folder(path: Path, signature: Signature, request: SampleRequest) -> dict[str, np.ndarray]:
    if len(signature.inputs) != 1:
        raise UsageError(
            f"data {path}: an image folder feeds a single-input model; this one has "
            f"{len(signature.inputs)} inputs: pass an .npz"
        )
    spec = signature.inputs[0]
    shape = feed_shape(spec, request.input_shapes.get(spec.name))
    if len(shape) != 4:
        raise UsageError(f"data {path}: input {spec.describe()} is not an NHWC image; pass an .npz")
    _, height, width, channels = shape
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"data {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    Image = require_pillow(f"data {path}")  # noqa: N806 - the module's own name

    images = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("L" if channels == 1 else "RGB").resize(
                    (width, height), Image.Resampling.BILINEAR
                )
                pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels)
        except OSError as exc:
            raise UsageError(f"data {file}: not a readable image ({exc})") from None
        if request.preprocess.channels == "bgr" and channels == 3:
            pixels = pixels[..., ::-1]
        images.append(pixels * request.preprocess.scale + request.preprocess.offset)
    return {spec.name: np.stack(images)[:, None].astype(np.dtype(spec.dtype))}
