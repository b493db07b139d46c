"""Karpathy-format loader on the committed Flickr30k/MSCOCO fixtures, its errors, and the emoji set."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jsdlib.data as D
from jsdlib.data.errors import ImageDecodeError
from jsdlib.data.karpathy import load_karpathy

FIX = Path(__file__).parent / "fixtures"
FLICKR_JSON = FIX / "flickr30k" / "dataset_flickr30k.json"
FLICKR_IMAGES = FIX / "flickr30k" / "flickr30k-images"
COCO_JSON = FIX / "coco" / "dataset_coco.json"
COCO_DIR = FIX / "coco"


def assert_consistent(s: D.ImageTextSplit):
    assert len(s) == s.n_images == len(s.image_paths) == len(s.image_ids) == len(s.image_meta)
    assert s.n_captions == len(s.captions) == len(s.caption_ids) == len(s.caption_to_image)
    assert s.caption_to_image.dtype == np.int64
    assert sorted(c for caps in s.image_to_captions for c in caps) == list(range(s.n_captions))
    for i, caps in enumerate(s.image_to_captions):
        assert all(s.caption_to_image[c] == i for c in caps)


# ---------------------------------------------------------------------------------------- fixtures
def test_flickr30k_fixture_loads():
    raw = json.loads(FLICKR_JSON.read_text())
    for split, n in [("train", 2), ("val", 1), ("test", 1)]:
        s = load_karpathy(FLICKR_JSON, FLICKR_IMAGES, split)
        assert_consistent(s)
        assert (s.dataset, s.split, len(s), s.n_captions) == ("flickr30k", split, n, 5 * n)
        assert all(len(c) == 5 for c in s.image_to_captions)
        assert s.image_meta == [{}] * n
    test = load_karpathy(FLICKR_JSON, FLICKR_IMAGES, "test")
    entry = next(e for e in raw["images"] if e["split"] == "test")
    assert test.image_paths == [FLICKR_IMAGES / entry["filename"]]
    assert test.image_ids == [entry["imgid"]]
    assert test.caption_ids == entry["sentids"] == [x["sentid"] for x in entry["sentences"]]
    assert test.captions == [x["raw"] for x in entry["sentences"]]
    im = test.load_image(0)
    assert im.mode == "RGB" and im.size == (8, 8)
    assert "ImageTextSplit(dataset='flickr30k', split='test', n_images=1, n_captions=5)" == repr(test)


def test_load_flickr30k_helper():
    s = D.load_flickr30k(FIX / "flickr30k", "train")
    assert (len(s), s.n_captions) == (2, 10)


def test_coco_fixture_restval_and_filepath():
    raw = json.loads(COCO_JSON.read_text())
    assert {e["split"] for e in raw["images"]} == {"train", "restval", "val", "test"}
    train = load_karpathy(COCO_JSON, COCO_DIR, "train")
    assert_consistent(train)
    assert train.dataset == "coco"  # from the file's "dataset" key
    by_split = {e["cocoid"]: e for e in raw["images"]}
    assert sorted(by_split[i]["split"] for i in train.image_ids) == ["restval", "train"]
    for path, cocoid in zip(train.image_paths, train.image_ids):
        e = by_split[cocoid]
        assert path == COCO_DIR / e["filepath"] / e["filename"]
        assert path.is_file()
    test = D.load_coco(COCO_DIR, "test")
    assert (len(test), test.n_captions) == (2, 10)
    assert test.image_ids == [391895, 522418]  # cocoid, not imgid
    assert test.image_paths[0] == COCO_DIR / "val2014" / "COCO_val2014_000000391895.jpg"
    # COCO raw captions carry trailing spaces; captions are stripped
    assert all(c == c.strip() for c in test.captions)
    assert test.captions[0] == "A brown square on its own."
    assert test.caption_ids[:2] == [770337, 770338]
    assert np.abs(np.asarray(test.load_image(1), dtype=int) - 250).max() <= 5  # white, up to JPEG loss
    assert len(load_karpathy(COCO_JSON, COCO_DIR, "val")) == 1


def test_check_images_false_needs_no_images(tmp_path):
    s = load_karpathy(COCO_JSON, tmp_path / "nowhere", "test", check_images=False)
    assert len(s) == 2
    s = load_karpathy(COCO_JSON, None, "test", check_images=False)
    assert s.image_paths[0] == Path("val2014/COCO_val2014_000000391895.jpg")


def test_subset_remaps():
    s = load_karpathy(COCO_JSON, COCO_DIR, "train")
    sub = s.subset([1])
    assert_consistent(sub)
    assert (len(sub), sub.n_captions) == (1, 5)
    assert sub.image_ids == [s.image_ids[1]] and sub.image_paths == [s.image_paths[1]]
    assert sub.captions == s.captions_of(1)
    assert sub.caption_ids == [s.caption_ids[c] for c in s.image_to_captions[1]]
    assert sub.image_to_captions == [[0, 1, 2, 3, 4]] and sub.caption_to_image.tolist() == [0] * 5
    rev = s.subset(np.array([1, 0]))
    assert_consistent(rev)
    assert rev.image_ids == s.image_ids[::-1] and rev.captions[:5] == s.captions_of(1)
    assert s.subset(np.array([False, True])).image_ids == sub.image_ids
    assert len(s.subset([])) == 0
    with pytest.raises(IndexError, match="out of range"):
        s.subset([2])
    with pytest.raises(ValueError, match="duplicates"):
        s.subset([0, 0])


# ------------------------------------------------------------------------------------------ errors
def copy_flickr(tmp_path) -> tuple[Path, Path, dict]:
    root = tmp_path / "flickr30k"
    shutil.copytree(FIX / "flickr30k", root)
    js = root / "dataset_flickr30k.json"
    return js, root / "flickr30k-images", json.loads(js.read_text())


def test_missing_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset_flickr30k\.json") as e:
        load_karpathy(tmp_path / "dataset_flickr30k.json", tmp_path, "test")
    assert isinstance(e.value, D.DatasetNotFoundError)
    msg = str(e.value)
    assert str(tmp_path) in msg
    assert "dataset_flickr30k.json/dataset_coco.json from Karpathy's caption_datasets" in msg
    assert "official sites" in msg


def test_missing_emoji_json_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_DATA", str(tmp_path))
    assert D.emoji_paths() == (tmp_path / "emoji" / "dataset_emoji.json", tmp_path / "emoji" / "images")
    with pytest.raises(FileNotFoundError, match=r"run `jsdlib data build-emoji`"):
        D.load_emoji("test")


def test_missing_image_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*nowhere") as e:
        load_karpathy(FLICKR_JSON, tmp_path / "nowhere", "test")
    assert "official sites" in str(e.value)


def test_missing_image_file(tmp_path):
    js, images, raw = copy_flickr(tmp_path)
    (images / "1000344755.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 1 image files .* missing, first: .*1000344755\.jpg") as e:
        load_karpathy(js, images, "test")
    assert isinstance(e.value, D.ImageNotFoundError)
    s = load_karpathy(js, images, "test", check_images=False)
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*1000344755\.jpg"):
        s.load_image(0)


def test_unknown_split():
    with pytest.raises(ValueError, match=r"unknown split 'dev'; valid splits are \['train', 'val', 'test'\]; "
                                         r"dataset_coco\.json has splits \['restval', 'test', 'train', 'val'\]"):
        load_karpathy(COCO_JSON, COCO_DIR, "dev")
    with pytest.raises(ValueError, match=r"restval images are loaded with split='train'"):
        load_karpathy(COCO_JSON, COCO_DIR, "restval")


def test_split_absent_from_file(tmp_path):
    js, images, raw = copy_flickr(tmp_path)
    raw["images"] = [e for e in raw["images"] if e["split"] != "val"]
    js.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"split 'val' has no images in .*the file has splits \['test', 'train'\]") as e:
        load_karpathy(js, images, "val")
    assert isinstance(e.value, D.UnknownSplitError)


def test_image_that_fails_to_decode(tmp_path):
    js, images, raw = copy_flickr(tmp_path)
    (images / "1000344755.jpg").write_bytes(b"this is not a jpeg")
    s = load_karpathy(js, images, "test")  # exists, so loading the split is fine
    with pytest.raises(ImageDecodeError, match=r"cannot decode image file .*1000344755\.jpg"):
        s.load_image(0)
    # a truncated JPEG fails too
    good = (FLICKR_IMAGES / "1000344755.jpg").read_bytes()
    (images / "1000344755.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(OSError, match=r"1000344755\.jpg"):
        s.load_image(0)


def test_transparent_image_is_composited_on_white(tmp_path):
    js, images, raw = copy_flickr(tmp_path)
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(images / "clear.png")
    raw["images"][3]["filename"] = "clear.png"
    js.write_text(json.dumps(raw))
    im = load_karpathy(js, images, "test").load_image(0)
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("bad", ["", "   \n"])
def test_empty_caption(tmp_path, bad):
    js, images, raw = copy_flickr(tmp_path)
    entry = next(e for e in raw["images"] if e["split"] == "test")
    entry["sentences"][2]["raw"] = bad
    js.write_text(json.dumps(raw))
    sentid = entry["sentences"][2]["sentid"]
    with pytest.raises(ValueError, match=rf"empty caption for imgid={entry['imgid']} .*sentid={sentid}"):
        load_karpathy(js, images, "test")


def test_malformed_json(tmp_path):
    js, images, raw = copy_flickr(tmp_path)
    js.write_text(js.read_text()[:-20])
    with pytest.raises(ValueError, match=r"malformed JSON in .*dataset_flickr30k\.json"):
        load_karpathy(js, images, "test")
    js.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match=r"not a Karpathy-format file"):
        load_karpathy(js, images, "test")
    del raw["images"][0]["filename"]
    js.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"image entry 0 has no 'filename' field"):
        load_karpathy(js, images, "train")


# ------------------------------------------------------------------------------ bundled emoji set
EMOJI_JSON, _ = D.emoji_paths()


def test_emoji_paths_default_to_repo_data(monkeypatch):
    monkeypatch.delenv("JSDLIB_DATA", raising=False)
    js, images = D.emoji_paths()
    assert js == Path(D.__file__).resolve().parents[2] / "data" / "emoji" / "dataset_emoji.json"
    assert images == js.parent / "images"


@pytest.mark.skipif(not EMOJI_JSON.exists(), reason="bundled emoji set not built yet")
def test_emoji_test_split():
    s = D.load_emoji("test")
    assert_consistent(s)
    assert s.dataset == "emoji" and s.split == "test"
    assert 400 <= len(s) <= 600
    assert all(len(c) == 2 for c in s.image_to_captions)
    assert all("unseen_concept" in m for m in s.image_meta)
    im = s.load_image(0)
    assert im.mode == "RGB"
