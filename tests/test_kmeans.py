"""kmeans_for_anchors.py: IoU k-means recovers known box sizes; the script writes anchors and a plot."""
import os
import subprocess
import sys

import numpy as np

from kmeans_for_anchors import format_anchors, kmeans_iou, load_box_sizes, mean_best_iou, sort_by_area, wh_iou
from utils.utils import get_anchors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUE_SIZES = np.array([[20.0, 30.0], [80.0, 60.0], [200.0, 260.0]])


def _boxes_around_true_sizes(n_per_size=200, seed=0):
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(0.9, 1.1, (len(TRUE_SIZES), n_per_size, 2))
    return (TRUE_SIZES[:, None, :] * jitter).reshape(-1, 2)


def _iou_loop(box, cluster):
    """IoU of two (w, h) boxes sharing a centre, written out by hand."""
    inter = min(box[0], cluster[0]) * min(box[1], cluster[1])
    return inter / (box[0] * box[1] + cluster[0] * cluster[1] - inter)


def test_three_clusters_recover_the_three_sizes():
    boxes = _boxes_around_true_sizes()
    clusters, assignment = kmeans_iou(boxes, 3, np.random.default_rng(0))
    clusters = sort_by_area(clusters)
    np.testing.assert_allclose(clusters, TRUE_SIZES, rtol=0.03)
    assert np.bincount(assignment).tolist() == [200, 200, 200]


def test_mean_iou_matches_a_hand_written_loop():
    boxes = _boxes_around_true_sizes(n_per_size=20, seed=1)
    clusters = np.array([[22.0, 28.0], [75.0, 66.0], [210.0, 240.0]])
    expected = np.mean([max(_iou_loop(b, c) for c in clusters) for b in boxes])
    assert abs(mean_best_iou(boxes, clusters) - expected) < 1e-12
    assert abs(wh_iou(np.array([[2.0, 4.0]]), np.array([[4.0, 2.0]]))[0, 0] - 4 / 12) < 1e-12


def test_empty_cluster_restarts_and_format(tmp_path):
    boxes = np.array([[10.0, 10.0]] * 5 + [[100.0, 100.0]] * 5)
    clusters, assignment = kmeans_iou(boxes, 3, np.random.default_rng(0))
    assert len(np.unique(assignment)) >= 2 and np.isfinite(clusters).all()
    assert format_anchors(np.array([[10.4, 12.6], [0.2, 3.0]])) == "10,13, 1,3"


def _write_xml(path, width, height, boxes):
    objects = "".join(f"<object><name>s</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                      f"<ymax>{y2}</ymax></bndbox></object>" for x1, y1, x2, y2 in boxes)
    path.write_text(f"<annotation><size><width>{width}</width><height>{height}</height></size>{objects}"
                    "</annotation>", encoding="utf-8")


def test_load_box_sizes_normalizes_by_image_size(tmp_path):
    _write_xml(tmp_path / "a.xml", 200, 100, [(10, 10, 60, 30), (0, 0, 200, 100)])
    _write_xml(tmp_path / "b.xml", 50, 50, [(5, 5, 30, 15)])
    (tmp_path / "c.xml").write_text("<annotation><object><name>s</name></object></annotation>", encoding="utf-8")
    np.testing.assert_allclose(load_box_sizes(str(tmp_path)), [[0.25, 0.2], [1.0, 1.0], [0.5, 0.2]])


def test_script_writes_anchors_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        wh = TRUE_SIZES[i % 3] / 416 * 300 * rng.uniform(0.95, 1.05, 2)
        _write_xml(tmp_path / f"{i}.xml", 300, 300, [(0, 0, round(wh[0]), round(wh[1]))])
    anchors_path, plot_path = tmp_path / "anchors.txt", tmp_path / "plot.jpg"
    result = subprocess.run([sys.executable, "kmeans_for_anchors.py", f"--annotations_path={tmp_path}",
                             "--anchors_num", "3", "--anchors_path", str(anchors_path), "--plot_path", str(plot_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    anchors, count = get_anchors(str(anchors_path))
    assert count == 3
    np.testing.assert_allclose(anchors, TRUE_SIZES, rtol=0.06)
    assert plot_path.stat().st_size > 0 and "mean IoU" in result.stdout
