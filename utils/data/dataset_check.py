"""Dataset checks shared by voc_annotation.py and train.py: every listed image and box is checked once.

Every image is decoded in full, so a truncated or corrupt file fails here, with its name, rather
than in the middle of an epoch. Fixable problems are fixed and reported: non-RGB images (grayscale,
RGBA, palette, 16-bit) are converted to RGB by the loader, boxes that stick out of the image are
clipped. Unusable images and boxes are dropped and counted. ``DatasetError`` is raised when
nothing usable remains.

Boxes refer to the STORED pixels: EXIF orientation is ignored project-wide (cv2 reads with
``IMREAD_IGNORE_ORIENTATION``, PIL never transposes), so EXIF-rotated JPEGs are only reported.

No on-disk cache: JPEGs are decoded at 1/8 scale (every byte is still entropy-decoded, so
truncation is still caught; ~1.5x faster than a full decode) on a few threads, under 1 ms per
500x375 image on one core, so a 16k-image VOC list takes about 15 s; a cache would trade that
for stale-cache bugs.
"""
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image

from utils.data.annotation import format_annotation_line, parse_annotation_line
from utils.errors import UserError

_EXIF_ORIENTATION = 0x0112
_MODE_NAMES = {"L": "grayscale", "LA": "grayscale+alpha", "1": "1-bit", "P": "palette", "PA": "palette+alpha",
               "RGBA": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr", "I": "32-bit integer", "F": "32-bit float"}
# Findings that need no action: printed as one count, not as problems (files stay listed in DatasetReport.problems).
NOTE_KINDS = ("converted to RGB",)
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_FORMAT_ENDS = ((b"\xff\xd8\xff", b"\xff\xd9"), (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"))  # (start, end marker)


class DatasetError(UserError):
    """Nothing usable is left in a dataset after the checks."""


class Problem(NamedTuple):
    file: str    # the image or annotation file concerned
    kind: str    # short category used for the summary, e.g. "truncated image"
    reason: str  # what is wrong and what was done about it


class ImageCheck(NamedTuple):
    size: tuple       # (width, height) of the stored pixels; None when the image is unusable
    error: tuple      # (kind, reason) when the image must be skipped, else None
    notes: tuple      # ((kind, reason), ...) for a usable image: conversions, ignored EXIF rotation
    converted: bool   # the loader has to convert it to RGB


@dataclass
class DatasetReport:
    """Problems found, each once, and the counts of what was kept, fixed and dropped."""
    problems: list = field(default_factory=list)
    images_kept: int = 0
    images_skipped: int = 0
    images_converted: int = 0   # kept images that the loader converts to RGB
    background_images: int = 0  # kept images with no box left
    boxes_kept: int = 0
    boxes_clipped: int = 0      # included in boxes_kept
    boxes_dropped: int = 0
    image_sizes: dict = field(default_factory=dict)  # path -> (width, height) of every usable image

    def add(self, file, kind, reason):
        self.problems.append(Problem(str(file), kind, reason))

    def kinds(self):
        return Counter(p.kind for p in self.problems)

    def notes_and_problems(self):
        """``(notes, problems)``: the findings that need no action (see ``NOTE_KINDS``) and the rest."""
        notes = [p for p in self.problems if p.kind in NOTE_KINDS]
        return notes, [p for p in self.problems if p.kind not in NOTE_KINDS]

    def summary(self):
        return {"images_kept": self.images_kept, "images_skipped": self.images_skipped,
                "images_converted": self.images_converted, "background_images": self.background_images,
                "boxes_kept": self.boxes_kept, "boxes_clipped": self.boxes_clipped,
                "boxes_dropped": self.boxes_dropped}

    def record_xml(self, annotation):
        """Fold the findings of ``parse_voc_xml`` into this report."""
        self.problems.extend(annotation.problems)
        self.boxes_dropped += annotation.dropped
        self.images_skipped += not annotation.ok

    def print(self, file=None, max_per_kind=20, title=None):
        """Each problem once (file: reason), at most ``max_per_kind`` of a kind, then the summary tables.

        ``title`` names what was checked (e.g. the training list) in the headings.
        """
        out = file or sys.stdout
        notes, problems = self.notes_and_problems()
        shown = Counter()
        of = f" of {title}" if title else ""
        if problems:
            print(f"Dataset check{of} found {len(problems)} problem(s):", file=out)
        for problem in problems:
            shown[problem.kind] += 1
            if shown[problem.kind] <= max_per_kind:
                print(f"  {problem.file}: {problem.reason}", file=out)
        for kind, count in Counter(p.kind for p in problems).items():
            if count > max_per_kind:
                print(f"  ... and {count - max_per_kind} more '{kind}' problem(s)", file=out)
        if notes:
            # One line, not one per file: a grayscale set (e.g. scans) would otherwise print every image.
            modes = Counter(p.reason.split(" image (")[0] for p in notes)
            print(f"Dataset check{of}: {len(notes)} image(s) converted to RGB as they load ("
                  + ", ".join(f"{mode} {count}" for mode, count in sorted(modes.items())) + ")", file=out)
        print(f"Dataset check summary{of}:", file=out)
        print(f"  images kept    {self.images_kept:>7}  (converted to RGB: {self.images_converted}, "
              f"no boxes: {self.background_images})", file=out)
        print(f"  images skipped {self.images_skipped:>7}", file=out)
        print(f"  boxes kept     {self.boxes_kept:>7}  (clipped to the image: {self.boxes_clipped})", file=out)
        print(f"  boxes dropped  {self.boxes_dropped:>7}", file=out)
        for kind, count in sorted(Counter(p.kind for p in problems).items()):
            print(f"  {kind:<26} {count:>5}", file=out)


def _exif_orientation(image):
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1  # unreadable EXIF: the pixels are still fine, and orientation is ignored anyway


def _mode_description(mode):
    if mode.startswith("I;16"):
        return "16-bit grayscale"
    return _MODE_NAMES.get(mode, mode)


def _ends_early(path):
    """Whether a file that failed to decode starts as a JPEG or PNG but lacks that format's end marker. A file cut
    inside its header fails with other messages ("Truncated File Read", "cannot identify image file") than one cut
    in its pixel data ("image file is truncated"); this names both truncated. Only read on the failure path."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(-min(os.fstat(f.fileno()).st_size, 12), os.SEEK_END)
            tail = f.read()
    except OSError:
        return False
    return any(head.startswith(start) and not tail.endswith(end) for start, end in _FORMAT_ENDS)


def _unusable(kind, reason):
    return ImageCheck(None, (kind, reason), (), False)


def inspect_image(path):
    """Open and fully decode one image; an ``ImageCheck`` says whether and how it can be used."""
    try:
        if os.path.getsize(path) == 0:
            return _unusable("empty image file", "zero-byte file; image skipped")
    except OSError:
        return _unusable("missing image", "image file not found; image skipped")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width == 0 or height == 0:
                return _unusable("empty image", f"image has {width}x{height} pixels; image skipped")
            mode, orientation = image.mode, _exif_orientation(image)
            if image.format == "JPEG":
                # Decode at 1/8 scale: every byte is still entropy-decoded, so truncation is still caught.
                image.draft(None, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except _IMAGE_ERRORS as err:
        if "truncated" in str(err).lower() or _ends_early(path):
            return _unusable("truncated image", f"truncated file: cannot decode image ({err}); image skipped")
        return _unusable("unreadable image", f"cannot decode image ({err}); image skipped")
    notes = []
    if mode != "RGB":
        notes.append(("converted to RGB", f"{_mode_description(mode)} image ({mode}); converted to RGB"))
    if orientation not in (0, 1):
        notes.append(("EXIF rotation ignored", f"EXIF orientation {orientation} is ignored: boxes refer to "
                                               f"the stored {width}x{height} pixels; image kept as stored"))
    return ImageCheck((width, height), None, tuple(notes), mode != "RGB")


def _box_text(box):
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


def inverted_reason(box, what="box"):
    return f"box {_box_text(box)} is inverted or empty (x2 <= x1 or y2 <= y1); {what} dropped"


def check_boxes(boxes, width, height, num_classes, class_names=None):
    """Validate ``boxes`` ``(n, 5)`` (x1, y1, x2, y2, class) against a ``width`` x ``height`` image.

    Returns ``(kept (m, 5) float32 with clipped coordinates, n_clipped, [(kind, reason), ...])``.
    """
    xyxy, class_ids = boxes[:, :4], boxes[:, 4]
    finite = np.isfinite(boxes).all(axis=1)
    bad_class = finite & ((class_ids != np.round(class_ids)) | (class_ids < 0) | (class_ids >= num_classes))
    valid = finite & ~bad_class
    inverted = valid & ((xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1]))
    valid &= ~inverted
    clipped_xyxy = np.clip(xyxy, 0, np.array([width, height, width, height], dtype=np.float32))  # (n, 4)
    clipped_wh = clipped_xyxy[:, 2:] - clipped_xyxy[:, :2]
    outside = valid & (clipped_wh < 1).any(axis=1)
    valid &= ~outside
    clipped = valid & (clipped_xyxy != xyxy).any(axis=1)
    problems = []
    # Per-box text only for the (rare) offending boxes; the checks above are vectorized.
    for i in np.flatnonzero(~valid | clipped):
        box = boxes[i]
        if not finite[i]:
            problems.append(("non-numeric box", f"box {_box_text(box)} is not finite; box dropped"))
        elif bad_class[i]:
            known = f" ({', '.join(class_names[:5])}{', ...' if len(class_names) > 5 else ''})" if class_names else ""
            problems.append(("unknown class", f"box {_box_text(box)} has class id {box[4]:g}, not an integer in "
                                              f"0..{num_classes - 1}{known}; box dropped"))
        elif inverted[i]:
            problems.append(("inverted box", inverted_reason(box)))
        elif outside[i]:
            fully_outside = (xyxy[i, :2] >= [width, height]).any() or (xyxy[i, 2:] <= 0).any()
            where = "lies outside" if fully_outside else "is under 1 px once clipped to"
            problems.append(("box outside image", f"box {_box_text(box)} {where} the {width}x{height} image; "
                                                  f"box dropped"))
        else:
            problems.append(("box clipped", f"box {_box_text(box)} extends past the {width}x{height} image; "
                                            f"clipped to {_box_text(clipped_xyxy[i])}"))
    kept = np.concatenate([clipped_xyxy[valid], class_ids[valid, None]], axis=1).astype(np.float32)
    return kept, int(clipped.sum()), problems


def _parse_box_token(token):
    """``'x1,y1,x2,y2,c'`` -> 5 floats, or None when it is not five numbers."""
    parts = token.split(",")
    if len(parts) != 5:
        return None
    try:
        return [float(v) for v in parts]
    except ValueError:
        return None


def split_line(line):
    """``(image path, boxes (n, 5) float32, malformed box tokens)`` of a training-list line.

    ``parse_annotation_line`` reads boxes from the end, so a malformed box token (``1,2,x,4,0``,
    ``1,2,3,4,-1``) ends up in the path. When that path does not exist but peeling the trailing
    comma tokens off it gives one that does, those tokens are boxes: good ones are kept, bad ones
    returned for reporting.
    """
    path, boxes = parse_annotation_line(line)
    if os.path.exists(path):
        return path, boxes, []
    tokens = path.split(" ")
    n = len(tokens)
    while n > 1 and "," in tokens[n - 1]:
        n -= 1
    candidate = " ".join(tokens[:n])
    if n == len(tokens) or not os.path.exists(candidate):
        return path, boxes, []
    parsed = [(token, _parse_box_token(token)) for token in tokens[n:]]
    extra = np.array([values for _, values in parsed if values is not None], dtype=np.float32).reshape(-1, 5)
    return candidate, np.concatenate([extra, boxes]), [token for token, values in parsed if values is None]


def _split_lines(lines, report):
    """``[(line, path, boxes, bad tokens)]``; a line without an image path is reported and left out."""
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append((line, *split_line(line)))
        except ValueError as err:
            report.add(f"annotation line {number}", "malformed line", f"{err}; line skipped")
            report.images_skipped += 1
    return entries


def _inspect_all(paths, workers):
    # PIL releases the GIL while decoding, so threads overlap the decodes.
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(paths, pool.map(inspect_image, paths)))


def _error_summary(report, n_lines):
    counts = ", ".join(f"{count} {kind}" for kind, count in report.kinds().most_common())
    first = "; ".join(f"{p.file}: {p.reason}" for p in report.problems[:3])
    return (f"no usable image among {n_lines} annotation line(s)" + (f" ({counts}); first problems: {first}"
                                                                     if report.problems else ""))


def scan_annotation_lines(lines, num_classes, class_names=None, report=None, allow_empty=False, workers=None):
    """Check training-list lines once each; returns ``(usable_lines, report)``.

    Usable lines keep their text unless a box was clipped or dropped (then they are rewritten).
    An image that is fine but has no box left stays usable (a background image). Image problems
    are reported once per path even when several lines list it. Raises ``DatasetError`` when no
    usable line remains, unless ``allow_empty``. ``report`` lets several scans share one report.
    """
    report = report if report is not None else DatasetReport()
    entries = _split_lines(lines, report)
    checks = _inspect_all(sorted({path for _, path, _, _ in entries}), workers)
    reported = set()
    usable = []
    for line, path, boxes, bad_tokens in entries:
        check = checks[path]
        if path not in reported:
            reported.add(path)
            for kind, reason in ((check.error,) if check.error else check.notes):
                report.add(path, kind, reason)
        if check.error:
            report.images_skipped += 1
            continue
        width, height = report.image_sizes[path] = check.size
        for token in bad_tokens:
            report.add(path, "non-numeric box", f"box '{token}' is not five numbers x1,y1,x2,y2,class_id; box dropped")
        kept, n_clipped, problems = check_boxes(boxes, width, height, num_classes, class_names)
        for kind, reason in problems:
            report.add(path, kind, reason)
        report.images_kept += 1
        report.images_converted += check.converted
        report.background_images += len(kept) == 0
        report.boxes_kept += len(kept)
        report.boxes_clipped += n_clipped
        report.boxes_dropped += len(boxes) - len(kept) + len(bad_tokens)
        unchanged = not bad_tokens and not problems
        usable.append(line.rstrip("\r\n") if unchanged else format_annotation_line(path, kept))
    if not usable and not allow_empty:
        raise DatasetError(_error_summary(report, len(lines)))
    return usable, report
