"""YoloDataset and the augmentation functions against hand-computed numbers, slow loops, colorsys / PIL,
and the pixels of solid coloured objects drawn on generated images (red, green, blue = class 0, 1, 2)."""
import colorsys
import os
import traceback
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import utils.data.dataloader as dataloader
from utils.data.annotation import format_annotation_line, parse_annotation_line
from utils.data.augment import hsv_jitter, mixup, mosaic, place
from utils.data.dataloader import YoloDataset, load_resized, worker_init_fn, yolo_dataset_collate
from utils.errors import UserError
from utils.utils import cvtColor

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def draw_scene(path, size, objects):
    """Black ``size = (w, h)`` image with solid rectangles ``(x1, y1, x2, y2, class)``; returns its list line."""
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    for x1, y1, x2, y2, cls in objects:
        image[y1:y2, x1:x2] = COLOURS[cls]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = {"quality": 95, "subsampling": 0} if str(path).endswith(".jpg") else {}
    Image.fromarray(image).save(path, **options)
    return format_annotation_line(path, objects)


def make_dataset(lines, input_shape=(96, 128), train=True, mosaic_prob=0.0, mixup_prob=0.0, seed=11, **kw):
    return YoloDataset(lines, input_shape, 3, epoch_length=10, mosaic=mosaic_prob > 0, mixup=mixup_prob > 0,
                       mosaic_prob=mosaic_prob, mixup_prob=mixup_prob, train=train, seed=seed, **kw)


def random_scenes(folder, count, rng, size=(200, 150)):
    """``count`` JPEGs with two or three non-overlapping objects each (one per row band)."""
    lines = []
    for i in range(count):
        objects = []
        for band in range(int(rng.integers(2, 4))):
            y1 = band * 50 + int(rng.integers(0, 10))
            x1 = int(rng.integers(0, 120))
            x2, y2 = x1 + int(rng.integers(25, 80)), y1 + int(rng.integers(25, 40))
            objects.append((x1, y1, x2, y2, int(rng.integers(3))))
        lines.append(draw_scene(os.path.join(folder, f"scene {i}.jpg"), size, objects))
    return lines


def colour_mask(image_chw, cls, margin=30):
    """Pixels whose class channel exceeds both others by ``margin`` levels (robust to the HSV jitter)."""
    rgb = np.rint(np.asarray(image_chw) * 255).astype(np.int32)
    others = np.delete(rgb, cls, axis=0).max(axis=0)
    return rgb[cls] - others > margin


def pixel_boxes(boxes, input_shape):
    """Normalized ``cx, cy, w, h, class`` -> pixel ``x1, y1, x2, y2, class``."""
    h, w = input_shape
    boxes = np.asarray(boxes, dtype=np.float64)
    cx, cy, bw, bh = boxes[:, 0] * w, boxes[:, 1] * h, boxes[:, 2] * w, boxes[:, 3] * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, boxes[:, 4]], axis=1)


def mask_extent(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def box_mask(box, shape, grow=0.0):
    """Pixels whose centres lie inside ``box`` grown by ``grow`` on each side."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    x1, y1, x2, y2 = box[:4]
    return (xs > x1 - grow) & (xs < x2 + grow) & (ys > y1 - grow) & (ys < y2 + grow)


def thick_parts(mask):
    """Pixels whose whole 3 x 3 neighbourhood is in ``mask`` (a mask erosion, written out)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_and.reduce([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def test_validation_letterbox_matches_hand_computed_geometry(tmp_path):
    line = draw_scene(str(tmp_path / "a.jpg"), (200, 120), [(50, 30, 130, 90, 0)])
    image, boxes = make_dataset([line], train=False)[0]
    assert image.dtype == np.float32 and image.shape == (3, 96, 128) and boxes.dtype == np.float32
    # scale = min(128 / 200, 96 / 120) = 0.64 -> 128 x int(76.8) image at dy = (96 - 76) // 2 = 10;
    # boxes follow the pixels: x by 128 / 200, y by 76 / 120.
    sy = 76 / 120
    expected = np.array([50 * .64, 30 * sy + 10, 130 * .64, 90 * sy + 10, 0])
    np.testing.assert_allclose(pixel_boxes(boxes, (96, 128))[0], expected, atol=1e-3)
    np.testing.assert_allclose(mask_extent(colour_mask(image, 0)), expected[:4], atol=1.5)
    assert np.all(image[:, :10] == np.float32(128 / 255)) and np.all(image[:, 86:] == np.float32(128 / 255))


@pytest.mark.parametrize("seed", range(6))
def test_training_boxes_follow_their_objects(tmp_path, seed):
    objects = [(40, 30, 150, 110, 0), (200, 150, 280, 220, 1), (20, 180, 60, 230, 2)]
    line = draw_scene(str(tmp_path / "b.jpg"), (320, 240), objects)
    dataset = make_dataset([line], seed=seed)
    for _ in range(3):
        image, boxes = dataset[0]
        assert image.min() >= 0 and image.max() <= 1
        found = pixel_boxes(boxes, (96, 128))
        for cls in range(3):
            mask, kept = colour_mask(image, cls), found[found[:, 4] == cls]
            assert len(kept) <= 1
            if len(kept):
                np.testing.assert_allclose(mask_extent(mask), kept[0, :4], atol=2.0)
            else:
                assert mask.sum() <= 6        # the object was pushed off the canvas (only slivers left)


def test_crop_cuts_the_window_and_clips_its_boxes_by_hand():
    from utils.data.augment import crop

    image = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
    boxes = np.array([[1, 1, 4, 4, 0], [5, 2, 9, 7, 1], [0, 6, 2, 8, 2]], dtype=np.float32)
    window, kept = crop(image, boxes, (3, 1), (6, 5))                     # x 3..9, y 1..6
    np.testing.assert_array_equal(window, image[1:6, 3:9])
    # box 0 -> x 1..4 - 3 = [0, 1] clipped at 0 (1 px wide: dropped, no wider than MIN_BOX_SIZE); box 1 -> x 2..6,
    # y 1..5 (its bottom 6 clipped to the window's 5); box 2 lies left of the window: gone.
    np.testing.assert_allclose(kept, [[2, 1, 6, 5, 1]])


@pytest.mark.parametrize("seed", range(3))
def test_training_crops_keep_the_objects_at_the_sample_scale(tmp_path, seed):
    objects = [(40, 30, 150, 110, 0), (200, 150, 280, 220, 1), (20, 180, 60, 230, 2)]
    line = draw_scene(str(tmp_path / "c.jpg"), (320, 240), objects)
    dataset = make_dataset([line], input_shape=(96, 128), seed=seed, crop_shape=(64, 64))
    assert make_dataset([line], train=False, crop_shape=(64, 64))[0][0].shape == (3, 96, 128)   # validation: whole
    for _ in range(4):
        image, boxes = dataset[0]
        assert image.shape == (3, 64, 64)
        found = pixel_boxes(boxes, (64, 64))                              # normalised to the crop
        for row in found:
            mask = colour_mask(image, int(row[4]))
            np.testing.assert_allclose(mask_extent(mask), row[:4], atol=2.0)
    with pytest.raises(ValueError, match="crop_shape must fit"):
        make_dataset([line], input_shape=(96, 128), crop_shape=(128, 64))


def test_mosaic_places_tiles_at_the_cut_and_clips_boxes_to_quadrants():
    rng = np.random.default_rng(0)
    sizes = [(50, 20), (30, 60), (35, 25), (70, 40)]                 # tile (w, h)
    tiles = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]
    tile_boxes = [np.array([[0, 0, 50, 20, 0]], np.float32),
                  np.array([[5, 45, 25, 50.5, 1], [0, 50.5, 10, 60, 2]], np.float32),
                  np.array([[0, 0, 0.8, 10, 0], [10, 10, 30, 20, 1]], np.float32),
                  np.array([[50, 5, 70, 35, 2]], np.float32)]
    canvas, boxes = mosaic(tiles, tile_boxes, (40, 30), (100, 80))
    # By hand: tile 0 at (-10, 10), tile 1 at (10, 30), tile 2 at (40, 30), tile 3 at (40, -10).
    expected = [[0, 10, 40, 30, 0],       # cut at the left canvas edge
                [15, 75, 35, 80, 1],      # cut at the bottom edge; its 0.5 px high neighbour is dropped
                [50, 40, 70, 50, 1],      # the 0.8 px wide box is dropped
                [90, 0, 100, 25, 2]]      # cut at the right and top edges
    np.testing.assert_allclose(boxes, expected)
    offsets = [(-10, 10), (10, 30), (40, 30), (40, -10)]
    for y in range(80):
        for x in range(100):
            quadrant = (0 if y < 30 else 1) if x < 40 else (2 if y >= 30 else 3)
            tx, ty = x - offsets[quadrant][0], y - offsets[quadrant][1]
            tile = tiles[quadrant]
            inside = 0 <= tx < tile.shape[1] and 0 <= ty < tile.shape[0]
            assert np.array_equal(canvas[y, x], tile[ty, tx] if inside else [128, 128, 128]), (x, y)


def test_min_visible_drops_boxes_cropped_below_that_fraction_of_their_area():
    # Visible fractions by hand, canvas (0, 0, 100, 80): 40x20 of 50x20 = 0.8; 10x20 of 20x20 = 0.5;
    # 10x10 of 40x40 = 0.0625; a box wholly inside = 1.
    boxes = np.array([[-10, 10, 40, 30, 0], [90, 60, 110, 80, 1], [-30, -30, 10, 10, 2], [20, 20, 40, 40, 3]],
                     np.float32)
    image = np.zeros((80, 100, 3), np.uint8)
    for min_visible, classes in ((0.0, [0, 1, 2, 3]), (0.5, [0, 1, 3]), (0.51, [0, 3]), (0.9, [3])):
        _, kept = place(image, boxes, 0, 0, (100, 80), min_visible)
        assert kept[:, 4].tolist() == classes, min_visible
    tiles = [np.zeros((20, 50, 3), np.uint8)] + [np.zeros((10, 10, 3), np.uint8)] * 3
    tile_boxes = [np.array([[0, 0, 50, 20, 0]], np.float32)] + [np.zeros((0, 5), np.float32)] * 3
    # Tile 0 lands at (-10, 10): its box keeps 40 of its 50 px width, 0.8 of its area.
    assert len(mosaic(tiles, tile_boxes, (40, 30), (100, 80), 0.8)[1]) == 1
    assert len(mosaic(tiles, tile_boxes, (40, 30), (100, 80), 0.81)[1]) == 0


def test_dataset_min_visible_keeps_only_mostly_visible_boxes(scene_lines):
    common = dict(input_shape=(64, 64), num_classes=3, epoch_length=10, mosaic=True, mixup=False, mosaic_prob=1.0,
                  mixup_prob=0.0, train=True, seed=3)
    counts = []
    for min_visible in (0.0, 0.9):
        dataset = YoloDataset(scene_lines, min_visible=min_visible, **common)
        counts.append(sum(len(dataset[i][1]) for i in range(len(dataset))))
    assert counts[1] < counts[0]
    with pytest.raises(ValueError, match="min_visible"):
        YoloDataset(scene_lines, min_visible=1.5, **common)


def test_min_class_visible_keeps_fragments_as_objects_of_unknown_class():
    # The visible fractions of the test above: 0.8, 0.5, 0.0625, 1.
    boxes = np.array([[-10, 10, 40, 30, 0], [90, 60, 110, 80, 1], [-30, -30, 10, 10, 2], [20, 20, 40, 40, 3]],
                     np.float32)
    image = np.zeros((80, 100, 3), np.uint8)
    for min_class_visible, classes in ((0.0, [0, 1, 2, 3]), (0.5, [0, 1, -1, 3]), (0.51, [0, -1, -1, 3]),
                                       (1.0, [-1, -1, -1, 3])):
        _, kept = place(image, boxes, 0, 0, (100, 80), 0.0, min_class_visible)
        assert kept[:, 4].tolist() == classes, min_class_visible
        assert kept[:, :4].tolist() == [[0, 10, 40, 30], [90, 60, 100, 80], [0, 0, 10, 10], [20, 20, 40, 40]]
    # Both rules at once: dropped below 0.5, unclassified below 0.9.
    assert place(image, boxes, 0, 0, (100, 80), 0.5, 0.9)[1][:, 4].tolist() == [-1, -1, 3]


def test_dataset_min_class_visible_changes_only_the_class_of_cropped_boxes(scene_lines):
    common = dict(input_shape=(64, 64), num_classes=3, epoch_length=10, mosaic=True, mixup=False, mosaic_prob=1.0,
                  mixup_prob=0.0, train=True, seed=3)
    plain = YoloDataset(scene_lines, **common)
    marked = YoloDataset(scene_lines, min_class_visible=1.0, **common)
    unknown = 0
    for i in range(len(plain)):
        (image_a, boxes_a), (image_b, boxes_b) = plain[i], marked[i]
        assert np.array_equal(image_a, image_b) and np.array_equal(boxes_a[:, :4], boxes_b[:, :4])
        changed = boxes_a[:, 4] != boxes_b[:, 4]
        assert (boxes_b[changed, 4] == -1).all()
        unknown += int(changed.sum())
    assert unknown > 0
    with pytest.raises(ValueError, match="min_class_visible"):
        YoloDataset(scene_lines, min_class_visible=-0.1, **common)


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_samples_boxes_cover_their_colours(tmp_path, seed):
    lines = random_scenes(str(tmp_path), 6, np.random.default_rng(seed))
    dataset = make_dataset(lines, input_shape=(128, 128), mosaic_prob=1.0, seed=seed)
    for index in range(3):
        image, boxes = dataset[index]
        found = pixel_boxes(boxes, (128, 128))
        assert np.all(found[:, 2] - found[:, 0] > 1) and np.all(found[:, 3] - found[:, 1] > 1)
        for box in found:
            inner = box + np.array([1.5, 1.5, -1.5, -1.5, 0])
            if inner[2] - inner[0] >= 1 and inner[3] - inner[1] >= 1:
                assert colour_mask(image, int(box[4]))[box_mask(inner, (128, 128))].mean() > 0.95
        for cls in range(3):
            mask = colour_mask(image, cls)
            covered = np.zeros_like(mask)
            for box in found[found[:, 4] == cls]:
                covered |= box_mask(box, mask.shape, grow=1.5)
            # Every visible object has its box: uncovered pixels are only slivers of dropped tiny boxes.
            assert not thick_parts(mask & ~covered).any()


def test_mixup_blends_half_and_half_and_concatenates_boxes():
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(2))
    boxes_a, boxes_b = np.array([[1, 2, 3, 4, 0]], np.float32), np.array([[5, 5, 9, 8, 2], [0, 0, 4, 4, 1]], np.float32)
    image, boxes = mixup(a, boxes_a, b, boxes_b)
    assert np.abs(image.astype(np.float64) - (a.astype(np.float64) + b) / 2).max() <= 0.5
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4, 0], [5, 5, 9, 8, 2], [0, 0, 4, 4, 1]])


def test_dataset_mixup_returns_the_boxes_of_both_sources(tmp_path, monkeypatch):
    calls = []

    def recording_mixup(image_a, boxes_a, image_b, boxes_b):
        calls.append((boxes_a.copy(), boxes_b.copy()))
        return mixup(image_a, boxes_a, image_b, boxes_b)

    monkeypatch.setattr(dataloader, "mixup", recording_mixup)
    dataset = make_dataset(random_scenes(str(tmp_path), 4, np.random.default_rng(5)), mosaic_prob=1.0, mixup_prob=1.0)
    _, boxes = dataset[0]
    assert len(calls) == 1
    expected = np.concatenate(calls[0])
    assert len(calls[0][0]) and len(calls[0][1])
    np.testing.assert_allclose(pixel_boxes(boxes, (96, 128)), expected, atol=1e-3)


def test_mosaic_and_mixup_stop_after_the_special_augmentation_epochs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(dataloader, "mosaic", lambda *args: calls.append(1) or mosaic(*args))
    dataset = make_dataset(random_scenes(str(tmp_path), 4, np.random.default_rng(2)), mosaic_prob=1.0)
    dataset.epoch_now = 6                  # 6 < 10 * 0.7
    dataset[0]
    dataset.epoch_now = 7
    dataset[0]
    assert len(calls) == 1


def test_hsv_jitter_matches_colorsys():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    hsv = np.array([[colorsys.rgb_to_hsv(*(px / 255)) for px in row] for row in image])     # (12, 12, 3)
    # Scaling the hue jumps where it wraps (359.9 deg -> 0 in uint8 HSV, -> 28 deg in float): skip those pixels.
    steady = hsv[..., 0] < 0.99
    for gains in [(1, 1, 1), (1.08, 0.5, 1.3), (0.93, 1.6, 0.7)]:
        out = hsv_jitter(image, np.array(gains)).astype(np.float64)
        ref = np.array([[colorsys.hsv_to_rgb((h * gains[0]) % 1, min(s * gains[1], 1), min(v * gains[2], 1))
                         for h, s, v in row] for row in hsv]) * 255
        error = np.abs(out - ref)[steady]
        assert error.mean() < 1.5 and error.max() <= 10


def first_batches(dataset, count, **loader_kw):
    loader = DataLoader(dataset, batch_size=2, shuffle=False, collate_fn=yolo_dataset_collate, **loader_kw)
    return [batch for batch, _ in zip(loader, range(count))]


def assert_same_batches(first, second):
    for (images_a, boxes_a), (images_b, boxes_b) in zip(first, second):
        assert torch.equal(images_a, images_b)
        assert all(torch.equal(a, b) for a, b in zip(boxes_a, boxes_b))


@pytest.fixture
def scene_lines(tmp_path):
    return random_scenes(str(tmp_path), 8, np.random.default_rng(7))


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_do_not_depend_on_history(scene_lines):
    fresh = make_dataset(scene_lines, mosaic_prob=0.5, mixup_prob=0.5, seed=4)
    fresh.set_epoch(2)
    used = make_dataset(scene_lines, mosaic_prob=0.5, mixup_prob=0.5, seed=4)
    for epoch in range(3):
        used.epoch_now = epoch             # upstream's way of starting an epoch
        batches = first_batches(used, 4)
    assert_same_batches(first_batches(fresh, 4), batches)
    fresh.set_epoch(1)
    assert not torch.equal(first_batches(fresh, 1)[0][0], batches[0][0])
    other_seed = make_dataset(scene_lines, mosaic_prob=0.5, mixup_prob=0.5, seed=5)
    other_seed.set_epoch(2)
    assert not torch.equal(first_batches(other_seed, 1)[0][0], batches[0][0])


def test_workers_draw_different_streams_and_repeat_with_the_same_seed(scene_lines):
    same_image = [scene_lines[0]] * 8
    init = partial(worker_init_fn, rank=0, seed=3)
    runs = [first_batches(make_dataset(same_image), 4, num_workers=2, worker_init_fn=init) for _ in range(2)]
    assert_same_batches(*runs)
    # Batch 0 comes from worker 0 and batch 1 from worker 1: the same image, their streams' first draws.
    assert not torch.equal(runs[0][0][0], runs[0][1][0])
    # Workers started without worker_init_fn seed themselves from the dataset's seed and their id.
    plain = [first_batches(make_dataset(same_image, seed=3), 2, num_workers=2) for _ in range(2)]
    assert_same_batches(*plain)
    assert not torch.equal(plain[0][0][0], plain[0][1][0])


def test_persistent_workers_follow_set_epoch(scene_lines):
    init = partial(worker_init_fn, rank=1, seed=3)
    persistent = make_dataset(scene_lines, mosaic_prob=0.5)
    loader = DataLoader(persistent, batch_size=2, collate_fn=yolo_dataset_collate, num_workers=2,
                        persistent_workers=True, worker_init_fn=init)
    epoch_0 = list(loader)
    persistent.set_epoch(1)
    epoch_1 = list(loader)
    fresh = make_dataset(scene_lines, mosaic_prob=0.5)
    fresh.set_epoch(1)
    assert_same_batches(first_batches(fresh, 4, num_workers=2, worker_init_fn=init), epoch_1)
    assert not torch.equal(epoch_0[0][0], epoch_1[0][0])


def test_unreadable_images_are_replaced_counted_and_warned_once(scene_lines):
    os.remove(parse_annotation_line(scene_lines[3])[0])
    with open(parse_annotation_line(scene_lines[5])[0], "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    dataset = make_dataset(scene_lines)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            for index in range(len(dataset)):
                image, boxes = dataset[index]
                assert image.shape == (3, 96, 128) and boxes.shape[1] == 5
    assert sorted(os.path.basename(p) for p in dataset.unreadable_paths()) == ["scene 3.jpg", "scene 5.jpg"]
    assert dataset.skipped >= 4                        # both files, in both passes
    assert sum("scene 3.jpg" in str(w.message) for w in caught) == 1


def test_unreadable_images_are_counted_in_the_main_process_with_workers(scene_lines):
    os.remove(parse_annotation_line(scene_lines[2])[0])
    dataset = make_dataset(scene_lines)
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=yolo_dataset_collate,
                              worker_init_fn=partial(worker_init_fn, seed=1)))
    assert len(batches) == 4 and dataset.skipped >= 1
    assert [os.path.basename(p) for p in dataset.unreadable_paths()] == ["scene 2.jpg"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_all_images_unreadable_is_a_clear_error(tmp_path, num_workers):
    lines = [f"{tmp_path}/missing {i}.jpg 1,1,20,20,0" for i in range(3)]
    loader = DataLoader(make_dataset(lines), batch_size=1, num_workers=num_workers, collate_fn=yolo_dataset_collate)
    batches = iter(loader)
    with pytest.raises(UserError, match="none of the 3 images") as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        next(batches)
    # The traceback's frames hold the iterator; left to the garbage collector, its workers take 5 s each to stop.
    traceback.clear_frames(raised.tb)
    del batches


def test_png_in_a_folder_with_spaces(tmp_path):
    line = draw_scene(str(tmp_path / "my images" / "a b.png"), (128, 96), [(10, 20, 60, 70, 2)])
    image, boxes = make_dataset([line], train=False)[0]
    np.testing.assert_allclose(pixel_boxes(boxes, (96, 128)), [[10, 20, 60, 70, 2]], atol=1e-4)
    np.testing.assert_allclose(mask_extent(colour_mask(image, 2)), [10, 20, 60, 70])


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "P", "L", "CMYK"])
def test_odd_image_modes_load_like_the_pil_path(tmp_path, mode):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    if mode == "I;16":
        source = Image.fromarray(rgb[..., 0].astype(np.uint16) * 16)      # 12-bit data in a 16-bit PNG
    elif mode == "RGBA":
        source = Image.fromarray(np.dstack([rgb, rgb[..., :1]]))
    else:
        source = Image.fromarray(rgb).convert(mode)
    path = str(tmp_path / ("odd.jpg" if mode == "CMYK" else "odd.png"))
    source.save(path)
    image, _ = make_dataset([f"{path} 1,1,20,20,0"], input_shape=(48, 64), train=False)[0]
    expected = np.asarray(cvtColor(Image.open(path)))           # the project's PIL conversion
    np.testing.assert_array_equal(np.rint(image.transpose(1, 2, 0) * 255), expected)
    if mode == "I;16":
        assert expected.max() == 255          # scaled by its range, not cut to its high byte


def test_jpeg_headers_give_stored_sizes_and_reduced_decodes_keep_the_target(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                          # "rotate 90": must be ignored, boxes refer to stored pixels
    variants = {"plain": {}, "progressive": {"progressive": True}, "exif": {"exif": exif.tobytes()}}
    source = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 161, 3), dtype=np.uint8))
    for name, options in variants.items():
        path = str(tmp_path / f"{name}.jpg")
        source.save(path, **options)
        for target in [(161, 90), (80, 45), (20, 11)]:            # full, 2x and 8x reduced decodes
            image, stored = load_resized(path, lambda size: target)
            assert stored == (161, 90) and image.shape == (target[1], target[0], 3)


def test_collate_stacks_images_and_keeps_box_lists():
    batch = [(np.zeros((3, 8, 10), np.float32), np.ones((2, 5), np.float32)),
             (np.ones((3, 8, 10), np.float32), np.zeros((0, 5), np.float32))]
    images, boxes = yolo_dataset_collate(batch)
    assert images.shape == (2, 3, 8, 10) and images.dtype == torch.float32
    assert [tuple(b.shape) for b in boxes] == [(2, 5), (0, 5)] and boxes[0].dtype == torch.float32


def test_training_outputs_with_mosaic_and_mixup_are_in_range(scene_lines):
    dataset = make_dataset(scene_lines, mosaic_prob=1.0, mixup_prob=0.5)
    for index in range(4):
        image, boxes = dataset[index]
        assert image.shape == (3, 96, 128) and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 1
        assert boxes.dtype == np.float32 and boxes.shape[1] == 5
        assert np.all((boxes[:, :4] >= 0) & (boxes[:, :4] <= 1)) and np.all(np.isin(boxes[:, 4], [0, 1, 2]))


def test_bad_annotations_name_the_line_and_file(tmp_path):
    with pytest.raises(ValueError, match=r"line 2 \(.*b\.jpg\): class id 7"):
        make_dataset([f"{tmp_path}/a.jpg 1,1,5,5,0", f"{tmp_path}/b.jpg 1,1,5,5,7"])
    with pytest.raises(ValueError, match="empty"):
        make_dataset([])
