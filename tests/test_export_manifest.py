"""`affinegan-tf export`: manifest contents, atomic output, refusing to clobber, clear errors."""

from __future__ import annotations

import json
import shutil

import export_helpers
import pytest

from affinegan_tf.cli import main
from affinegan_tf.errors import UserError
from affinegan_tf.export import exporter
from affinegan_tf.export.signature import EXPORT_FORMAT_VERSION


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    return export_helpers.tiny_export(tmp_path_factory)


def test_manifest_describes_the_model_and_normalisation(tiny_export):
    folder, manifest = tiny_export
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["format_version"] == EXPORT_FORMAT_VERSION
    assert manifest["preset"] == "tiny"
    assert manifest["image_size"] == 64
    assert manifest["model_config"]["ngf"] == 32
    assert set(manifest["normalisation"]) >= {"inside_model", "savedmodel", "tflite_and_onnx"}
    assert "127.5" in manifest["normalisation"]["inside_model"]
    assert manifest["intensity_range"] is None
    assert "intensity_range.json" in manifest["intensity_range_note"]
    assert manifest["intensity_calibration"]["apex"] == 1.0  # no apex recorded: raw scale
    assert manifest["source"]["checkpoint"] == "ckpt-0"
    assert manifest["formats"] == ["savedmodel", "tflite", "onnx"]


def test_manifest_lists_every_file_with_size_and_sha256(tiny_export):
    folder, manifest = tiny_export
    on_disk = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.name != "manifest.json"
    )
    assert [entry["path"] for entry in manifest["files"]] == on_disk
    for entry in manifest["files"]:
        path = folder / entry["path"]
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == exporter.sha256(path)


def test_manifest_gives_the_exact_io_of_each_model_file(tiny_export):
    _, manifest = tiny_export
    entries = {entry["path"]: entry for entry in manifest["files"]}
    signatures = entries["saved_model/1/saved_model.pb"]["io"]
    assert signatures["generate"]["inputs"] == {
        "image": {"dtype": "uint8", "shape": [None, None, 3]},
        "intensities": {"dtype": "float32", "shape": [None]},
    }
    assert signatures["generate"]["outputs"] == {
        "frames": {"dtype": "uint8", "shape": [None, 64, 64, 3]}
    }
    assert signatures["generate_batch"]["outputs"]["frames"]["shape"] == [None, None, 64, 64, 3]
    assert signatures["serving_default"] == signatures["generate"]
    assert entries["saved_model/1/variables/variables.index"]["part_of"] == "saved_model/1"
    decode = entries["decode.tflite"]["io"]
    assert decode["inputs"]["base_0"] == {"dtype": "float32", "shape": [1, 32, 32, 32]}
    assert decode["inputs"]["delta_5"] == {"dtype": "float32", "shape": [1, 1, 1, 256]}
    assert entries["generate_frames.onnx"]["io"]["inputs"]["intensities"]["shape"] == [None]


def test_manifest_records_parity_of_every_model(tiny_export):
    _, manifest = tiny_export
    checked = {item["path"] for item in manifest["parity"]}
    assert checked == {
        "saved_model/1",
        "generate_one.tflite",
        "generate_one_fp16.tflite",
        "encode.tflite+decode.tflite",
        "encode_fp16.tflite+decode_fp16.tflite",
        "generate_one.onnx",
        "generate_frames.onnx",
    }
    assert all(item["passed"] for item in manifest["parity"])


def test_cli_export_replaces_an_earlier_export_and_records_the_intensity_range(
    tmp_path_factory, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(export_helpers.tiny_run(tmp_path_factory), run_dir)
    (run_dir / "intensity_range.json").write_text(json.dumps({"min": -0.02, "max": 0.81}))
    out = tmp_path / "exported" / "demo"
    for _ in range(2):  # the second export replaces the first
        export_helpers.fresh_names()
        status = main(
            ["export", "--model", str(run_dir), "--out", str(out), "--formats", "savedmodel"]
        )
        assert status == 0
    printed = capsys.readouterr().out
    assert "saved_model/1/saved_model.pb" in printed and "max difference from Keras" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["intensity_range"] == {"min": -0.02, "max": 0.81}
    assert "intensity_range_note" not in manifest
    assert manifest["formats"] == ["savedmodel"]
    assert sorted(path.name for path in out.parent.iterdir()) == ["demo"]  # no temp leftovers


def test_export_refuses_to_overwrite_a_folder_that_is_not_an_export(tmp_path_factory, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an affinegan-tf export"):
        exporter.export_model(export_helpers.tiny_run(tmp_path_factory), out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_export_of_a_run_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    assert main(["export", "--model", str(run_dir), "--out", str(tmp_path / "out")]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_a_clear_error(tmp_path_factory, tmp_path):
    with pytest.raises(UserError, match="Unknown export format 'coreml'"):
        exporter.export_model(
            export_helpers.tiny_run(tmp_path_factory), tmp_path / "out", formats=["coreml"]
        )


def test_a_failed_export_leaves_nothing_behind(tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.setitem(exporter.TOLERANCES, "savedmodel", -1.0)  # every comparison now fails
    out = tmp_path / "exports" / "broken"
    export_helpers.fresh_names()
    with pytest.raises(exporter.ExportParityError, match="saved_model/1"):
        exporter.export_model(
            export_helpers.tiny_run(tmp_path_factory), out, formats=["savedmodel"]
        )
    assert list((tmp_path / "exports").iterdir()) == []
