"""Every input file esx reads: one message naming the file and what to do, never a
traceback from inside a parser (hand-made cases and a fuzz test over the readers)."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from esx import inputs
from esx.cli import app
from esx.errors import DataError, EsxError

from conftest import make_folder


def test_non_utf8_samples_csv_is_one_message(tmp_path, tiny_recipe):
    import yaml

    root = make_folder(tmp_path / "data")
    text = (root / "samples.csv").read_bytes()
    (root / "samples.csv").write_bytes(text.replace(b"train0", "tr\xe9in0".encode("latin1")))
    tiny_recipe["data"] = {"name": "folder", "params": {"root": str(root), "num_annotators": 2}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    res = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "samples.csv: not UTF-8 text (byte" in res.output and "iconv" in res.output
    assert "Traceback" not in res.output


def test_a_truncated_checkpoint_on_resume_is_one_message(tmp_path, tiny_recipe):
    import yaml

    tiny_recipe["train"].update(epochs=2, keep_last_checkpoint=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    run = tmp_path / "run"
    assert (
        CliRunner().invoke(app, ["run", str(recipe), "--out", str(run), "--quiet"]).exit_code == 0
    )
    last = run / "last.safetensors"
    last.write_bytes(last.read_bytes()[:100])
    (run / "metrics.json").unlink()  # as if it stopped before the end
    res = CliRunner().invoke(app, ["run", "--resume", str(run)])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "last.safetensors: not a complete safetensors file" in text
    assert "delete it and start the run again" in text and "Traceback" not in text


def test_a_truncated_weights_file_names_the_file(tmp_path, registry):
    from esx.interfaces import BuildContext, DataInfo
    from esx_timm import TimmBackbone, TimmParams

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    ctx = BuildContext(DataInfo("d", True, 1, 2, (32, 32), 1, False))
    with pytest.raises(DataError, match=r"w.safetensors could not be loaded into 'test_resnet'"):
        TimmBackbone(TimmParams(arch="test_resnet", weights=str(weights)), ctx)


def test_a_truncated_metrics_json_stops_the_report_naming_it(tmp_path):
    run = tmp_path / "a" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"test": {"accuracy": 0.5')
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "metrics.json:1: not valid JSON" in res.output


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
def test_fuzz_every_reader_fails_only_with_a_message(tmp_path, data):
    """Arbitrary bytes: each reader returns or raises an EsxError naming the file."""
    path = tmp_path / "f"
    path.write_bytes(data)
    for read in (inputs.read_text, inputs.read_csv, inputs.read_json, inputs.load_state):
        try:
            read(path)
        except EsxError as exc:
            assert str(path) in str(exc)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match="no such file; put it back"):
        inputs.read_json(tmp_path / "none.json", "put it back")
    with pytest.raises(DataError, match="is a folder"):
        inputs.read_text(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        inputs.load_state(tmp_path / "none.safetensors")
    shutil.rmtree(tmp_path)


def _png_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png_bytes()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.integers(0, len(PNG) - 1).map(lambda n: PNG[:n]),  # a PNG cut short
        st.tuples(st.integers(8, len(PNG) - 1), st.integers(0, 255)).map(
            lambda t: PNG[: t[0]] + bytes([t[1]]) + PNG[t[0] + 1 :]  # one byte changed
        ),
    ),
    suffix=st.sampled_from([".png", ".npy"]),
)
def test_fuzz_the_folder_datasets_image_and_mask_reader(tmp_path, data, suffix):
    """Arbitrary, truncated or corrupted image and mask files: read_array returns an
    array or raises a DataError naming the file, never a decoder's own exception."""
    from esx_folder.dataset import read_array

    path = tmp_path / f"mask{suffix}"
    path.write_bytes(data)
    try:
        arr = read_array(path)
    except EsxError as exc:
        assert str(path) in str(exc)
    else:
        assert arr.ndim == 3
