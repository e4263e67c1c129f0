"""utils/data/dataset_check.py on a generated dataset holding one of each bad input."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.data.dataset_check import DatasetError, check_boxes, scan_annotation_lines
from utils.data.voc import parse_voc_xml

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "VOCdevkit" / "VOC2007" / "JPEGImages"
W, H = 64, 48
NUM_CLASSES = 3


def _noise_rgb(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8))


def _jpeg_bytes(image, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def _write_images(folder):
    """One image per case; returns ``{case: absolute path}``."""
    paths = {case: str(folder / name) for case, name in [
        ("ok", "ok.jpg"), ("missing", "missing.jpg"), ("corrupt", "corrupt.jpg"), ("truncated", "truncated.jpg"),
        ("empty", "empty.jpg"), ("gray", "gray.png"), ("rgba", "rgba.png"), ("palette", "palette.png"),
        ("gray16", "gray16.png"), ("rotated", "rotated.jpg"), ("inverted", "inverted.jpg"), ("clipped", "clipped.jpg"),
        ("outside", "outside.jpg"), ("unknown", "unknown.jpg"), ("nonnumeric", "non numeric.jpg"),
        ("background", "background.jpg")]}
    rgb = _noise_rgb()
    for case in ("ok", "inverted", "clipped", "outside", "unknown", "nonnumeric", "background"):
        rgb.save(paths[case], quality=90)
    with open(paths["corrupt"], "wb") as f:
        f.write(b"these bytes are not an image" * 10)
    with open(paths["truncated"], "wb") as f:
        data = _jpeg_bytes(rgb)
        f.write(data[: len(data) // 2])
    open(paths["empty"], "wb").close()
    rgb.convert("L").save(paths["gray"])
    rgb.convert("RGBA").save(paths["rgba"])
    rgb.convert("P").save(paths["palette"])
    Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)).save(paths["gray16"])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rgb.save(paths["rotated"], quality=90, exif=exif.tobytes())
    return paths


def _lines(paths):
    good_box = "4,4,20,20,0"
    boxes = {"inverted": "30,10,20,40,1", "clipped": "50,20,80,40,2", "outside": "100,100,120,120,0",
             "unknown": "5,5,15,15,7", "nonnumeric": "5,5,x,15,1 4,4,20,20,1", "background": ""}
    return [f"{path} {boxes.get(case, good_box)}".rstrip() for case, path in paths.items()]


@pytest.fixture()
def scanned(tmp_path):
    paths = _write_images(tmp_path)
    lines = _lines(paths)
    usable, report = scan_annotation_lines(lines, NUM_CLASSES, ["circle", "square", "star"])
    return paths, lines, usable, report


def test_each_bad_input_is_reported_once_with_its_reason(scanned):
    paths, _, _, report = scanned
    expected = {  # case -> (kind, words the reason must contain)
        "missing": ("missing image", "not found"),
        "corrupt": ("unreadable image", "cannot decode"),
        "truncated": ("truncated image", "truncated"),
        "empty": ("empty image file", "zero-byte"),
        "gray": ("converted to RGB", "grayscale"),
        "rgba": ("converted to RGB", "RGBA"),
        "palette": ("converted to RGB", "palette"),
        "gray16": ("converted to RGB", "16-bit"),
        "rotated": ("EXIF rotation ignored", "stored 64x48 pixels"),
        "inverted": ("inverted box", "(30, 10, 20, 40, 1) is inverted"),
        "clipped": ("box clipped", "clipped to (50, 20, 64, 40)"),
        "outside": ("box outside image", "lies outside the 64x48 image"),
        "unknown": ("unknown class", "class id 7"),
        "nonnumeric": ("non-numeric box", "'5,5,x,15,1'"),
    }
    assert len(report.problems) == len(expected)
    by_file = {p.file: p for p in report.problems}
    for case, (kind, words) in expected.items():
        problem = by_file[paths[case]]
        assert problem.kind == kind, case
        assert words in problem.reason, (case, problem.reason)


def test_summary_counts(scanned):
    _, _, usable, report = scanned
    assert report.summary() == {
        "images_kept": 12, "images_skipped": 4, "images_converted": 4, "background_images": 4,
        "boxes_kept": 8, "boxes_clipped": 1, "boxes_dropped": 4}
    assert len(usable) == 12


def test_usable_lines_are_rewritten_only_when_boxes_changed(scanned):
    paths, lines, usable, _ = scanned
    assert lines[0] in usable  # untouched line kept verbatim
    assert f"{paths['clipped']} 50,20,64,40,2" in usable
    assert f"{paths['nonnumeric']} 4,4,20,20,1" in usable
    assert f"{paths['inverted']}" in usable and f"{paths['background']}" in usable
    assert not any(line.startswith(paths["missing"]) for line in usable)


def test_report_print_lists_each_problem_and_the_summary(scanned, capsys):
    paths, _, _, report = scanned
    report.print(title="train.txt")
    text = capsys.readouterr().out
    # The 4 conversions to RGB are notes: one line with their modes, no file named.
    assert "Dataset check of train.txt found 10 problem(s):" in text
    assert ("Dataset check of train.txt: 4 image(s) converted to RGB as they load "
            "(16-bit grayscale 1, RGBA 1, grayscale 1, palette 1)") in text
    assert paths["gray"] not in text and paths["rgba"] not in text
    assert text.count(paths["truncated"]) == 1
    assert "images kept         12" in text and "boxes dropped        4" in text


def test_duplicate_lines_report_an_image_problem_once(tmp_path):
    good = tmp_path / "good.jpg"
    _noise_rgb().save(good)
    gray = tmp_path / "gray.png"
    _noise_rgb().convert("L").save(gray)
    _, report = scan_annotation_lines([f"{good} 1,1,9,9,0", f"{gray} 1,1,9,9,0", f"{gray} 2,2,9,9,0"], 1)
    assert [p.kind for p in report.problems] == ["converted to RGB"]
    assert report.images_kept == 3


@pytest.mark.parametrize("source", ["sample", "small", "at a marker"])
def test_a_jpeg_cut_to_a_third_is_named_truncated_and_skipped(tmp_path, capsys, source):
    """A shipped sample image cut to a third (in its pixel data), a flat 677-byte JPEG cut to a third (inside its
    header: the decoder says "Truncated File Read") or to 20 bytes (the next segment's marker missing, it says
    "cannot identify image file"): each is named once as truncated and left out of the usable lines."""
    if source == "sample":
        data = (SAMPLE_IMAGES / "000001.jpg").read_bytes()
    else:
        data = _jpeg_bytes(Image.new("RGB", (W, H), (90, 120, 150)))
    cut, good = tmp_path / "cut.jpg", tmp_path / "good.jpg"
    cut.write_bytes(data[:20] if source == "at a marker" else data[: len(data) // 3])
    good.write_bytes(data)
    usable, report = scan_annotation_lines([f"{cut} 1,1,20,20,0", f"{good} 1,1,20,20,0", f"{cut} 2,2,20,20,0"], 1)
    assert usable == [f"{good} 1,1,20,20,0"]
    assert [(p.file, p.kind) for p in report.problems] == [(str(cut), "truncated image")]
    assert "truncated" in report.problems[0].reason and report.images_skipped == 2 and report.images_kept == 1
    report.print()
    assert len([line for line in capsys.readouterr().out.splitlines() if str(cut) in line]) == 1


def test_all_bad_list_raises_a_clear_error(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"no usable image among 2 annotation line\(s\).*missing image"):
        scan_annotation_lines([f"{tmp_path / 'nothing.jpg'} 1,1,5,5,0", f"{empty}"], 1)
    assert issubclass(DatasetError, ValueError)


def test_check_boxes_against_hand_computed_clipping():
    boxes = np.array([[-5, 10, 30, 20, 0],    # partly left of the image: clipped to x1 = 0
                      [63, 10, 70, 20, 1],    # 1 px left after clipping: kept
                      [64, 10, 70, 20, 1],    # starts at the right edge: outside
                      [-5, 10, 0.5, 20, 0],   # 0.5 px after clipping: dropped
                      [10, 10, 20, 20, 1.5],  # class id not an integer
                      [10, 10, 20, np.nan, 0]], dtype=np.float32)
    kept, n_clipped, problems = check_boxes(boxes, 64, 48, 2)
    np.testing.assert_array_equal(kept, [[0, 10, 30, 20, 0], [63, 10, 64, 20, 1]])
    assert n_clipped == 2
    assert [kind for kind, _ in problems] == ["box clipped", "box clipped", "box outside image",
                                              "box outside image", "unknown class", "non-numeric box"]
    assert "under 1 px" in problems[3][1]


def _write_xml(path, body):
    path.write_text(f"<annotation><filename>a.jpg</filename>{body}</annotation>", encoding="utf-8")
    return path


def _object(name, box=("1", "2", "30", "40"), difficult="0"):
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>"


def test_parse_voc_xml_keeps_good_objects_and_reports_bad_ones(tmp_path):
    size = "<size><width>64</width><height>48</height><depth>3</depth></size>"
    body = size + _object("circle") + _object("star", difficult="1") + _object("dog") + _object("dog") \
        + "<object><name>circle</name></object>" + _object("star", ("1", "2", "abc", "4")) \
        + _object("circle", ("30", "2", "10", "40"))
    result = parse_voc_xml(_write_xml(tmp_path / "a.xml", body), ["circle", "star"])
    assert result.ok and result.size == (64, 48) and result.filename == "a.jpg"
    np.testing.assert_array_equal(result.boxes, [[1, 2, 30, 40], [1, 2, 30, 40]])
    assert result.names == ["circle", "star"] and result.difficult.tolist() == [False, True]
    assert result.unknown == {"dog": 2}
    kinds = [p.kind for p in result.problems]
    assert kinds == ["missing bndbox", "non-numeric box", "inverted box", "unknown class"]
    assert "<xmax> 'abc'" in result.problems[1].reason and "2 object(s) of class 'dog'" in result.problems[3].reason
    assert result.dropped == 5


def test_parse_voc_xml_without_size_or_parseable_text(tmp_path):
    no_size = parse_voc_xml(_write_xml(tmp_path / "b.xml", _object("circle")), ["circle"])
    assert no_size.ok and no_size.size is None and len(no_size.boxes) == 1
    assert [p.kind for p in no_size.problems] == ["missing size"]
    broken = tmp_path / "c.xml"
    broken.write_text("<annotation><object>", encoding="utf-8")
    result = parse_voc_xml(broken, ["circle"])
    assert not result.ok and result.problems[0].kind == "malformed XML" and str(broken) == result.problems[0].file
    assert parse_voc_xml(tmp_path / "none.xml").problems[0].kind == "missing annotation"


def test_line_without_image_path_is_reported_not_raised(tmp_path):
    good = tmp_path / "good.jpg"
    _noise_rgb().save(good)
    usable, report = scan_annotation_lines([" 1,2,3,4,0", f"{good} 1,1,9,9,0"], 1)
    assert usable == [f"{good} 1,1,9,9,0"]
    assert report.problems[0].file == "annotation line 1" and report.problems[0].kind == "malformed line"
    assert report.images_skipped == 1
