"""Image folders: pixel layout, modes, resizing, ordering, errors and the decode cache.

Images are small PNGs written to ``tmp_path``; the reference for each result is built
another way (NumPy from the array the PNG was made of, or Pillow directly), then one
assertion compares them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nncli.config import config_from_dict
from nncli.data import images, read_source
from nncli.data.images import default_cache_dir, load_image, read_image_folder
from nncli.errors import NncliError

RNG_SEED = 1234


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches into its own folder (also for calls without ``cache_dir``)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(path))
    return path


def save(path: Path, pixels: np.ndarray, **params: object) -> Path:
    """Write pixels (H, W) or (H, W, C) as an image file (format from the suffix); uint16
    stays 16-bit, anything else becomes uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if pixels.dtype == np.uint16 else np.uint8
    Image.fromarray(np.ascontiguousarray(pixels, dtype=dtype)).save(path, **params)
    return path


def make_folder(root: Path, per_class: dict[str, int], shape: tuple[int, ...] = (4, 5, 3),
                seed: int = RNG_SEED) -> dict[str, list[np.ndarray]]:
    """``per_class[c]`` random PNGs of ``shape`` in ``root/c``, named 000.png, 001.png, ...;
    returns the pixel arrays written, per class, in file-name order."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    for name, count in per_class.items():
        written[name] = []
        for i in range(count):
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            save(root / name / f"{i:03d}.png", pixels)
            written[name].append(pixels)
    return written


def bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


# ---------------------------------------------------------------- layout, modes, size


def test_rows_are_flattened_row_major_over_height_width_channel(tmp_path: Path) -> None:
    H, W, C = 3, 5, 3
    r, c, ch = np.meshgrid(np.arange(H), np.arange(W), np.arange(C), indexing="ij")
    pixels = (60 * r + 10 * c + ch).astype(np.uint8)  # value encodes its (row, col, channel)
    save(tmp_path / "data" / "a" / "x.png", pixels)
    raw = read_image_folder(tmp_path / "data", None, "RGB")
    expected = [60 * i + 10 * j + k for i in range(H) for j in range(W) for k in range(C)]
    assert raw.X.dtype == np.uint8 and raw.input_shape == (H, W, C) and raw.kind == "images"
    np.testing.assert_array_equal(raw.X, np.array([expected], dtype=np.uint8))


def test_mode_l_gives_one_channel_and_pillows_luma(tmp_path: Path) -> None:
    written = make_folder(tmp_path / "data", {"a": 2, "b": 1}, shape=(4, 6, 3))
    rgb = read_image_folder(tmp_path / "data", None, "RGB")
    grey = read_image_folder(tmp_path / "data", None, "L")
    luma = [np.asarray(Image.fromarray(p).convert("L")) for ps in written.values() for p in ps]
    assert (rgb.input_shape, grey.input_shape) == ((4, 6, 3), (4, 6, 1))
    np.testing.assert_array_equal(grey.X, np.stack(luma).reshape(3, -1))


def test_size_resizes_to_width_by_height(tmp_path: Path) -> None:
    save(tmp_path / "data" / "a" / "big.png", np.full((20, 30, 3), (10, 200, 90)))
    save(tmp_path / "data" / "b" / "small.png", np.full((7, 3, 3), (250, 0, 33)))
    raw = read_image_folder(tmp_path / "data", (4, 6), "RGB")  # size = (width, height)
    expected = np.stack([np.tile([10, 200, 90], 24), np.tile([250, 0, 33], 24)])
    assert raw.input_shape == (6, 4, 3)
    np.testing.assert_array_equal(raw.X, expected)  # a flat colour stays flat


def test_classes_sorted_by_name_and_files_by_name_within_a_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for cls, names in {"b": ["z", "a"], "10": ["m"], "2": ["q", "c", "b"], "a": ["k"]}.items():
        for name in names:
            save(root / cls / f"{name}.png", np.full((2, 2), ord(name)))
    raw = read_image_folder(root, None, "L")
    assert raw.labels.tolist() == ["10", "2", "2", "2", "a", "b", "b"]
    assert [chr(v) for v in raw.X[:, 0]] == ["m", "b", "c", "q", "k", "a", "z"]


def test_nested_folders_hidden_entries_and_loose_files_are_handled(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save(root / "a" / "x.png", np.full((2, 2), 1))
    save(root / "a" / "sub" / "y.png", np.full((2, 2), 2))  # nested: still class a
    save(root / "a" / ".hidden.png", np.full((2, 2), 3))
    save(root / ".secret" / "z.png", np.full((2, 2), 4))  # hidden folder: not a class
    save(root / "loose.png", np.full((2, 2), 5))  # directly in the folder: ignored
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    raw = read_image_folder(root, None, "L")
    assert raw.labels.tolist() == ["a", "a"] and raw.X[:, 0].tolist() == [2, 1]


def test_transparency_is_composited_over_black(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 200, 100, 128]]], dtype=np.uint8)
    save(tmp_path / "data" / "a" / "x.png", rgba)
    raw = read_image_folder(tmp_path / "data", None, "RGB")
    expected = np.round(rgba[..., :3] * (rgba[..., 3:] / 255.0))
    np.testing.assert_allclose(raw.X[0], expected.reshape(-1), atol=1)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    wide = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    save(tmp_path / "data" / "a" / "x.png", wide)
    assert read_image_folder(tmp_path / "data", None, "L").X[0].tolist() == [0, 1, 128, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    path = save(tmp_path / "x.png", pixels, exif=exif)
    np.testing.assert_array_equal(load_image(path, None, "L")[..., 0], np.rot90(pixels, -1))


def test_load_image_matches_the_folder_rows_and_names_missing_files(tmp_path: Path) -> None:
    written = make_folder(tmp_path / "data", {"a": 1}, shape=(5, 4, 3))
    raw = read_image_folder(tmp_path / "data", (3, 2), "RGB")
    one = load_image(tmp_path / "data" / "a" / "000.png", (3, 2), "RGB")
    assert one.shape == (2, 3, 3) and written["a"][0].shape == (5, 4, 3)
    np.testing.assert_array_equal(one.reshape(1, -1), raw.X)
    with pytest.raises(NncliError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png", None, "L")


# ---------------------------------------------------------------- errors and warnings


def test_mixed_sizes_name_both_files(tmp_path: Path) -> None:
    save(tmp_path / "data" / "a" / "a.png", np.zeros((8, 8)))
    save(tmp_path / "data" / "b" / "b.png", np.zeros((12, 16)))
    with pytest.raises(NncliError, match=r"a\.png is 8x8 but .*b\.png is 16x12 — set "
                                         r"data\.image\.size"):
        read_image_folder(tmp_path / "data", None, "L")


@pytest.mark.parametrize("damage", ["garbage", "truncated-png", "truncated-jpeg"])
def test_undecodable_image_names_the_file(tmp_path: Path, damage: str) -> None:
    make_folder(tmp_path / "data", {"a": 2, "b": 2})
    suffix = ".jpg" if damage == "truncated-jpeg" else ".png"
    bad = save(tmp_path / "data" / "b" / f"0042{suffix}",
               np.random.default_rng(0).integers(0, 256, (32, 32, 3)))
    data = bad.read_bytes()
    bad.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(NncliError, match=r"data/b/0042\.(png|jpg): cannot decode image \("):
        read_image_folder(tmp_path / "data", None, "RGB")


def test_parallel_decode_reports_the_first_bad_file_and_matches_serial(tmp_path: Path) -> None:
    n = 300
    make_folder(tmp_path / "data", {"a": n // 2, "b": n - n // 2}, shape=(3, 3))
    paths = sorted(str(p) for p in (tmp_path / "data").rglob("*.png"))
    serial, _ = images.decode_images(paths, None, "L", workers=1)
    for pool in ("process", "thread"):
        seen: list[tuple[int, int]] = []
        X, shape = images.decode_images(paths, None, "L", workers=2, pool=pool,
                                        progress=lambda *args, seen=seen: seen.append(args))
        assert shape == (3, 3, 1) and seen[-1] == (n, n) and len(seen) > 1
        np.testing.assert_array_equal(X, serial)
    for late in (paths[-3], paths[n // 2 + 5]):  # two bad files: the earlier one is named
        Path(late).write_bytes(b"junk")
    with pytest.raises(NncliError, match=f"{paths[n // 2 + 5]}: cannot decode"):
        images.decode_images(paths, None, "L", workers=2, pool="process")


def test_non_image_files_are_skipped_with_one_warning(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    make_folder(tmp_path / "data", {"a": 2, "b": 2})
    (tmp_path / "data" / "a" / "notes.txt").write_text("hello")
    (tmp_path / "data" / "b" / "labels.csv").write_text("x,y")
    for _ in range(2):  # the warning is the same on a cache hit
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nncli"):
            raw = read_image_folder(tmp_path / "data", None, "RGB")
        assert raw.X.shape[0] == 4
        assert len(caplog.records) == 1 and caplog.records[0].name == "nncli"
        assert "skipped 2 file(s)" in caplog.text and "notes.txt" in caplog.text


def test_empty_or_classless_folders_are_errors_naming_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(NncliError, match="data: empty folder"):
        read_image_folder(root, None, "L")
    save(root / "x.png", np.zeros((2, 2)))
    with pytest.raises(NncliError, match="data: no class subfolders"):
        read_image_folder(root, None, "L")
    save(root / "cat" / "x.png", np.zeros((2, 2)))
    (root / "dog").mkdir()
    (root / "dog" / "readme.txt").write_text("woof")
    with pytest.raises(NncliError, match="data/dog: class folder has no images"):
        read_image_folder(root, None, "L")


def test_a_single_class_is_left_to_the_caller(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", {"only": 3})
    assert read_image_folder(tmp_path / "data", None, "L").labels.tolist() == ["only"] * 3


# ---------------------------------------------------------------- cache


def test_second_read_comes_from_the_cache(tmp_path: Path, cache_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "data", {"a": 3, "b": 2})
    first = read_image_folder(tmp_path / "data", None, "RGB")
    assert len(list(cache_dir.glob("images-*.npy"))) == 1

    def fail(*args: object) -> None:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(images, "_decode", fail)
    second = read_image_folder(tmp_path / "data", None, "RGB")
    np.testing.assert_array_equal(second.X, first.X)
    assert second.labels.tolist() == first.labels.tolist()
    assert second.input_shape == first.input_shape == (4, 5, 3)
    with pytest.raises(NncliError, match="decoded although cached"):  # other settings
        read_image_folder(tmp_path / "data", None, "L")


def test_cache_is_invalidated_by_modified_added_and_removed_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_folder(root, {"a": 3, "b": 2}, shape=(4, 5))
    before = read_image_folder(root, None, "L")

    target = root / "a" / "001.png"
    save(target, np.full((4, 5), 7))
    bump_mtime(target)
    modified = read_image_folder(root, None, "L")
    assert modified.X[1].tolist() == [7] * 20
    np.testing.assert_array_equal(np.delete(modified.X, 1, axis=0), np.delete(before.X, 1, 0))

    save(root / "b" / "002.png", np.full((4, 5), 9))
    added = read_image_folder(root, None, "L")
    assert added.X.shape[0] == 6 and added.X[-1].tolist() == [9] * 20
    assert added.labels.tolist() == ["a", "a", "a", "b", "b", "b"]

    (root / "a" / "000.png").unlink()
    removed = read_image_folder(root, None, "L")
    np.testing.assert_array_equal(removed.X, added.X[1:])


def test_adding_an_empty_class_folder_is_not_hidden_by_the_cache(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", {"a": 2, "b": 2})
    read_image_folder(tmp_path / "data", None, "L")
    (tmp_path / "data" / "c").mkdir()
    with pytest.raises(NncliError, match="data/c: class folder has no images"):
        read_image_folder(tmp_path / "data", None, "L")


def _break_npy_truncate(npy: Path, index: Path) -> None:
    npy.write_bytes(npy.read_bytes()[:-7])


def _break_npy_flip_byte(npy: Path, index: Path) -> None:
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))


def _break_npy_shape(npy: Path, index: Path) -> None:
    np.save(npy, np.zeros((2, 3), dtype=np.uint8))


def _break_index_garbage(npy: Path, index: Path) -> None:
    index.write_text("{ this is not json")


def _break_index_wrong_shape(npy: Path, index: Path) -> None:
    doc = json.loads(index.read_text())
    doc["shape"] = [doc["shape"][0] + 1, doc["shape"][1]]
    index.write_text(json.dumps(doc))


def _break_npy_pickle(npy: Path, index: Path) -> None:
    np.save(npy, np.array([{"evil": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("damage", [_break_npy_truncate, _break_npy_flip_byte, _break_npy_shape,
                                    _break_npy_pickle, _break_index_garbage,
                                    _break_index_wrong_shape])
def test_damaged_cache_is_rebuilt(tmp_path: Path, cache_dir: Path, damage: object) -> None:
    make_folder(tmp_path / "data", {"a": 3, "b": 2})
    first = read_image_folder(tmp_path / "data", None, "RGB")
    (npy,) = cache_dir.glob("images-*.npy")
    damage(npy, npy.with_suffix(".json"))  # type: ignore[operator]
    again = read_image_folder(tmp_path / "data", None, "RGB")
    np.testing.assert_array_equal(again.X, first.X)
    assert again.labels.tolist() == first.labels.tolist()
    np.testing.assert_array_equal(np.load(npy, allow_pickle=False), first.X)  # repaired


def test_unwritable_cache_dir_just_means_no_cache(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    written = make_folder(tmp_path / "data", {"a": 2})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    for cache in (blocker, blocker / "sub"):
        raw = read_image_folder(tmp_path / "data", None, "RGB", cache_dir=cache)
        np.testing.assert_array_equal(raw.X, np.stack(written["a"]).reshape(2, -1))
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(blocker))
    assert read_image_folder(tmp_path / "data", None, "RGB").X.shape == (2, 60)
    assert not list(tmp_path.glob("**/images-*"))


def test_default_cache_dir_follows_the_environment(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("NNCLI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "nncli" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "nncli" / "images"


# ---------------------------------------------------------------- through nncli.data


def test_read_source_reads_an_image_folder_with_the_configs_settings(tmp_path: Path) -> None:
    written = make_folder(tmp_path / "data", {"cat": 2, "dog": 3}, shape=(4, 5, 3))
    cfg = config_from_dict({"data": {"train": str(tmp_path / "data"),
                                     "image": {"mode": "RGB"}}})
    raw = read_source(tmp_path / "data", cfg.data)
    expected = np.stack(written["cat"] + written["dog"]).reshape(5, -1)
    assert raw.input_shape == (4, 5, 3) and raw.labels.tolist() == ["cat"] * 2 + ["dog"] * 3
    np.testing.assert_array_equal(raw.X, expected)
