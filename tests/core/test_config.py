"""edgeport.toml: every unknown key and every wrong type is a usage error naming it."""

from __future__ import annotations

import pytest

from edgeport.cli.config import load_config
from edgeport.errors import UsageError
from edgeport.run.options import build_options, parse_size
from edgeport.run.request import split_target_settings


def write(tmp_path, text: str):
    path = tmp_path / "edgeport.toml"
    path.write_text(text)
    return path


def test_a_full_config_loads_with_paths_relative_to_it(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
model = "sm"
data = "x.npz"
targets = ["tflite"]
threads = 2
[bench]
min_runs = 7
[target."tflite:int8"]
io_type = "int8"
min_top1_agreement = 0.98
max_p50_ms = 5
""",
        )
    )
    assert config.path_value("model") == tmp_path / "sm" and config.get("threads") == 2
    assert config.protocol == {"min_runs": 7}
    assert config.target_tables["tflite:int8"]["io_type"] == "int8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('modle = "x"', "unknown key 'modle'"),
        ('threads = "two"', "threads must be a int"),
        ("strict = 1", "strict must be a bool"),
        ("[bench]\nmin_run = 3", "unknown key 'min_run' in [bench]"),
        ("target = 3", "target must be a dict"),
        ("model = ", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text))


def test_missing_config(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_target_tables_split_into_options_tolerances_budgets_and_runtime():
    config = split_target_settings(
        "tfjs",
        {
            "shard_size_bytes": "1MB",
            "min_cosine": 0.99,
            "max_p50_ms": 3,
            "max_size_bytes": "2MB",
            "runtime": "tfjs-browser",
            "backend": "webgl",
        },
        ("shard_size_bytes", "optimize"),
    )
    assert config.spec.runtime == "tfjs-browser" and config.backend == "webgl"
    assert config.options == {"shard_size_bytes": "1MB"} and config.tolerance == {"min_cosine": 0.99}
    assert config.budgets == {"max_p50_ms": 3.0, "max_size_bytes": 2 * 2**20}
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        split_target_settings("tfjs", {"colour": 1}, ())
    with pytest.raises(UsageError, match="min_cosine: 'high' is not a number"):
        split_target_settings("tfjs", {"min_cosine": "high"}, ())


def test_options_are_typed_from_the_plugin_dataclass():
    from edgeport.converters.tflite.converter import TFLiteOptions

    options = build_options(TFLiteOptions, {"allow_tf_ops": "yes", "io_type": "int8"}, "target tflite:int8")
    assert options == TFLiteOptions(allow_tf_ops=True, io_type="int8")
    with pytest.raises(UsageError, match="unknown option 'iotype'; options here: allow_tf_ops, io_type"):
        build_options(TFLiteOptions, {"iotype": "int8"}, "target tflite:int8")
    with pytest.raises(UsageError, match="'maybe' is not true or false"):
        build_options(TFLiteOptions, {"allow_tf_ops": "maybe"}, "target tflite")
    assert parse_size("256KB", "x") == 262144 and parse_size("1.5MB", "x") == 1572864
    with pytest.raises(UsageError, match="not a size"):
        parse_size("lots", "x")


def test_an_option_no_selected_target_takes_is_named_as_the_user_gave_it():
    from edgeport.run.request import target_configs

    with pytest.raises(UsageError, match=r"^--shard-size does not apply to any selected target \(tflite\)"):
        target_configs(["tflite"], None, {"shard_size_bytes": "4MB"})
    with pytest.raises(UsageError, match=r"^-O per_channel does not apply"):
        target_configs(["tflite"], None, {"per_channel": "false"})
