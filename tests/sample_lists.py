"""Training-list lines of the shipped sample images, built with the project's own VOC reader (for tests)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_LIST_IDS = ("000002", "000003", "000004", "000005", "000006", "000007", "000008", "000009")


def sample_lines(ids):
    """Training-list lines for images of the shipped sample, built with voc_annotation's own reader."""
    from utils.data.voc import parse_voc_xml
    from utils.data.annotation import format_annotation_line
    from utils.utils import get_classes

    names, _ = get_classes(os.path.join(ROOT, "model_data", "sample_classes.txt"))
    voc = os.path.join(ROOT, "VOCdevkit", "VOC2007")
    lines = []
    for image_id in ids:
        ann = parse_voc_xml(os.path.join(voc, "Annotations", f"{image_id}.xml"), names)
        boxes = [[*b, names.index(n)] for b, n, d in zip(ann.boxes.tolist(), ann.names, ann.difficult) if not d]
        lines.append(format_annotation_line(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), boxes))
    return lines
