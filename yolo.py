"""Detection with a trained YOLOv4: upstream's ``YOLO`` class (used by predict.py and get_map.py)
and ``YOLO_ONNX``, which runs an exported model with onnxruntime through the same pre/post-processing.

Settings live in ``_defaults`` and are overridden by keyword: ``YOLO(model_path=..., confidence=0.3)``.
"""
import colorsys
import copy
import importlib.util
import os
import time
import warnings

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from nets.fuse import inference_model
from utils.atomic import atomic_save_image, atomic_savefig
from nets.yolo import YoloBody, has_decoupled_head, num_classes_of_state_dict, resolve_scale
from utils.engine.checkpoint import is_darknet_path, load_state_dict_file
from utils.errors import UserError
from utils.deploy.compiled import CompiledOrEager, auto_compile_choice, compiled_inference_model
from utils.deploy.darknet import DARKNET_SCALE_X_Y
from utils.deploy.onnx_export import (OUTPUT_NAME, RAW_OUTPUT_NAMES, export_onnx, read_metadata_props)
from utils.deploy.onnx_int8 import quantize_onnx
from utils.engine.run_dirs import TRAIN_ROOT, latest_run_with
from utils.engine.run_metadata import adoptable_threshold, metadata_path, read_metadata
from utils.metrics.evaluation import LETTERBOX_IMAGE, Decoding, detections_from_decoded
from utils.data.preprocess import network_input, open_image, rgb_array  # noqa: F401 (open_image: predict/get_map use it)
from utils.utils import get_anchors, get_classes, resolve_device, show_config
from utils.deploy.decode import decode_outputs, letterbox_geometry, postprocess
from utils.metrics.mean_ap import write_map_txt

# Folder detect_image(crop=True) writes crops to, as upstream.
CROP_DIR = "img_crop"


def class_colors(num_classes):
    """One RGB colour per class, evenly spaced in hue (upstream's palette)."""
    hsv = [(i / num_classes, 1.0, 1.0) for i in range(num_classes)]
    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb(*h)) for h in hsv]


def pixel_boxes(boxes, image_size):
    """``(k, 4)`` float xyxy -> integer ``(left, top, right, bottom)`` rows inside an image of ``(w, h)``."""
    width, height = image_size
    boxes = np.floor(boxes).astype(np.int64)
    return np.clip(boxes, 0, [width, height, width, height])


def draw_detections(image, boxes, scores, classes, class_names, colors, thickness):
    """A copy of ``image`` with a coloured rectangle and a ``name score`` label per detection."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, int(np.floor(3e-2 * image.size[1] + 0.5))))
    for (left, top, right, bottom), score, c in zip(pixel_boxes(boxes, image.size), scores, classes):
        label = f"{class_names[c]} {score:.2f}"
        _, _, text_w, text_h = draw.textbbox((0, 0), label, font=font)
        # Label above the box when it fits, else just inside its top edge.
        text_y = top - text_h if top - text_h >= 0 else top + 1
        draw.rectangle([left, top, right, bottom], outline=colors[c], width=thickness)
        draw.rectangle([left, text_y, left + text_w, text_y + text_h], fill=colors[c])
        draw.text((left, text_y), label, fill=(0, 0, 0), font=font)
    return image


def newest_weights_if_missing(model_path):
    """``model_path``, or when that default file does not exist the newest run's file of the same name
    (train.py writes logs/exp, logs/exp2, ...), said in one line."""
    if os.path.isfile(model_path):
        return model_path
    newest = latest_run_with(TRAIN_ROOT, os.path.basename(model_path))
    if newest:
        print(f"Using the newest run's weights {newest} (pass --model_path to choose others).")
        return newest
    return model_path


class _Detector:
    """Settings, pre-processing, decoding, drawing and map_out files shared by ``YOLO`` and ``YOLO_ONNX``.

    Subclasses set ``_defaults`` and implement ``generate()`` (load the model) and ``_forward(images)``
    (``(B, 3, H, W)`` float tensor -> the three head outputs) or ``_decoded(images)`` (-> ``(B, N, 5 + C)``).
    """
    _defaults = {}

    @classmethod
    def get_defaults(cls, name):
        if name not in cls._defaults:
            raise KeyError(f"unrecognized attribute name {name!r}; {cls.__name__} settings: {', '.join(cls._defaults)}")
        return cls._defaults[name]

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self._defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown setting(s) {', '.join(unknown)}; "
                            f"valid settings: {', '.join(self._defaults)}")
        self.__dict__.update(copy.deepcopy(self._defaults))
        for name, value in kwargs.items():
            setattr(self, name, value)
        self._default_to_newest_run(given=set(kwargs))
        self.metadata = self._read_metadata()
        adopted = self._adopt_metadata(given=set(kwargs))
        if len(self.input_shape) != 2 or any(int(v) != v or v <= 0 or v % 32 for v in self.input_shape):
            raise UserError(f"input_shape must be [h, w] with positive multiples of 32 (the largest stride), "
                             f"got {self.input_shape}")
        self.input_shape = [int(v) for v in self.input_shape]
        if "class_names" in adopted:
            self.class_names, self.num_classes = list(self.metadata["class_names"]), len(self.metadata["class_names"])
        else:
            self.class_names, self.num_classes = get_classes(self.classes_path)
        if "anchors" in adopted:
            self.anchors = np.asarray(self.metadata["anchors"], dtype=np.float32).reshape(-1, 2)
            self.num_anchors = len(self.anchors)
        else:
            self.anchors, self.num_anchors = get_anchors(self.anchors_path)
        self.colors = class_colors(self.num_classes)
        self.generate()
        shown = {name: getattr(self, name) for name in self._defaults}
        # What is used, not the default path it replaced: names and anchors adopted from the weights' metadata.
        if "class_names" in adopted and "classes_path" in shown:
            shown["classes_path"] = f"{self._metadata_source()}: {', '.join(self.class_names)}"
        if "anchors" in adopted and "anchors_path" in shown:
            shown["anchors_path"] = f"{self._metadata_source()} ({self.num_anchors} anchors)"
        show_config(**shown)

    def _read_metadata(self):
        """The model's metadata (utils/engine/run_metadata.py's keys); ``{}`` when it has none."""
        return read_metadata(getattr(self, "model_path", "") or "")

    def _metadata_source(self):
        """Where ``_read_metadata`` read from, for messages."""
        return metadata_path(self.model_path)

    def _default_to_newest_run(self, given):
        if "model_path" not in given and hasattr(self, "model_path"):
            self.model_path = newest_weights_if_missing(self.model_path)

    def _adopt_metadata(self, given):
        """Take settings the caller did not pass from the weights' run metadata (utils/engine/run_metadata.py).

        The input size, anchors, class names and model scale the weights were trained with, the score threshold
        calibrated on the validation set (best F1) as ``confidence``, and the centre decoding
        ``scale_x_y`` (darknet's per level for a darknet file without metadata). Returns the names adopted.
        """
        meta, adopted = self.metadata, []
        self._warn_preprocessing_differs(given)
        for name in ("input_shape", "anchors_mask", "width_mult", "depth_mult", "letterbox_image"):
            if (name not in given and hasattr(self, name) and meta.get(name) is not None
                    and meta[name] != getattr(self, name)):
                setattr(self, name, meta[name])
                adopted.append(name)
        if "classes_path" not in given and meta.get("class_names"):
            adopted.append("class_names")
        if "anchors_path" not in given and meta.get("anchors"):
            adopted.append("anchors")
        if "confidence" not in given and meta.get("score_threshold") is not None:
            threshold, why_not = adoptable_threshold(meta)
            if why_not:
                print(f"Not using {self._metadata_source()}'s threshold: {why_not}; confidence "
                      f"{self.confidence} instead (pass --confidence to choose).")
            else:
                self.confidence = threshold
                adopted.append("confidence")
        if "scale_x_y" not in given and meta.get("scale_x_y") is not None:
            self.scale_x_y = [float(s) for s in meta["scale_x_y"]]
            adopted.append("scale_x_y")
        elif "scale_x_y" not in given and is_darknet_path(getattr(self, "model_path", "")):
            # Darknet-trained heads expect the centre decoding of yolov4.cfg's [yolo] layers.
            self.scale_x_y = list(DARKNET_SCALE_X_Y)
            print(f"Using darknet's scale_x_y {self.scale_x_y} (strides 32, 16, 8) for {self.model_path}; "
                  f"pass scale_x_y to override it.")
        if adopted:
            note = ", ".join(f"confidence {self.confidence:.4f} (best F1 on validation)" if name == "confidence"
                             else name for name in adopted)
            print(f"Using {note} from {self._metadata_source()}; pass a setting explicitly to override it.")
        return adopted

    def _warn_preprocessing_differs(self, given):
        """Warn when the caller's ``letterbox_image`` is not the one the weights were validated and calibrated with."""
        recorded = self.metadata.get("letterbox_image")
        if "letterbox_image" in given and recorded is not None and bool(self.letterbox_image) != bool(recorded):
            warnings.warn(f"letterbox_image={self.letterbox_image} differs from the letterbox_image={recorded} that "
                          f"{self.model_path} was validated with (its val mAP and calibrated score threshold in "
                          f"{self._metadata_source()}); detections and mAP will differ from those figures.",
                          stacklevel=4)

    def _preprocess(self, image):
        """``(images (1, 3, H, W) float32 tensor, image_shape (h, w), RGB PIL image)``, made by the one
        preprocessing of utils/data/preprocess.py (the evaluation's)."""
        rgb = rgb_array(image)
        chw, image_shape = network_input(rgb, self.input_shape, self.letterbox_image)
        return torch.from_numpy(chw)[None], image_shape, Image.fromarray(rgb)

    @property
    def decoding(self):
        """How this detector turns images into inputs and outputs into boxes (utils/metrics/evaluation.py)."""
        return Decoding(self.anchors, tuple(map(tuple, self.anchors_mask)), tuple(self.input_shape),
                        bool(self.letterbox_image), None if self.scale_x_y is None else tuple(self.scale_x_y))

    # Becomes True on an instance once it has printed the note of _note_calibrated_threshold.
    _calibrated_note_shown = False

    def _decoded(self, images):
        """Decoded predictions ``(B, N, 5 + C)`` of a preprocessed batch (utils/deploy/decode.py's layout)."""
        return decode_outputs(self._forward(images), self.anchors, self.anchors_mask, self.input_shape,
                              self.scale_x_y)

    def _detect_tensor(self, images, image_shape):
        """Forward + decode + NMS for one preprocessed image; boxes mapped back to ``image_shape``."""
        decoded = self._decoded(images)
        detections = detections_from_decoded(decoded, self.decoding, [image_shape], self.confidence,
                                             self.nms_iou, self.nms_agnostic)[0]        # (k, 6)
        if not len(detections):
            self._note_calibrated_threshold(decoded)
        return (detections[:, :4].cpu().numpy(), detections[:, 4].cpu().numpy(),
                detections[:, 5].cpu().numpy().astype(np.int64))

    def _note_calibrated_threshold(self, decoded):
        """Once per instance: when focal-loss weights find no box at a ``confidence`` above their calibrated
        threshold but would find some at it, say so (``decoded``: this image's decoded predictions)."""
        calibrated = self.metadata.get("score_threshold")
        # A confidence taken from the metadata equals the calibrated one, so a higher one was set by the user.
        if self._calibrated_note_shown or not self.metadata.get("focal_loss") or calibrated is None \
                or self.confidence <= calibrated:
            return
        found = len(postprocess(decoded, calibrated, self.nms_iou, class_agnostic=self.nms_agnostic)[0])
        if found:
            self._calibrated_note_shown = True
            print(f"Note: no boxes at confidence {self.confidence}, but {found} at the calibrated {calibrated:.4g} "
                  f"({self._metadata_source()}): focal-loss training lowers objectness scores; "
                  f"drop --confidence to use the calibrated threshold.")

    def detect(self, image):
        """Detections of one image (PIL or RGB array): ``(boxes (k, 4) [x1, y1, x2, y2] in image
        pixels, scores (k,), classes (k,) int)``, highest score first."""
        images, image_shape, _ = self._preprocess(image)
        return self._detect_tensor(images, image_shape)

    def detect_image(self, image, crop=False, count=False):
        """The image with labelled boxes drawn. ``crop`` saves each box to ``img_crop/crop_<i>.png``,
        ``count`` prints how many objects of each class were found (upstream behaviour)."""
        return self.annotate(image, crop, count)[0]

    def annotate(self, image, crop=False, count=False):
        """``(drawn image, boxes, scores, classes)``: ``detect_image``'s picture and the detections drawn on it."""
        images, image_shape, image = self._preprocess(image)
        boxes, scores, classes = self._detect_tensor(images, image_shape)
        if count:
            self._print_counts(classes)
        if crop:
            self._save_crops(image, boxes)
        thickness = int(max((image.size[0] + image.size[1]) // np.mean(self.input_shape), 1))
        drawn = draw_detections(image, boxes, scores, classes, self.class_names, self.colors, thickness)
        return drawn, boxes, scores, classes

    def _print_counts(self, classes):
        print("top_label:", classes)
        classes_nums = np.bincount(classes, minlength=self.num_classes)
        for name, num in zip(self.class_names, classes_nums):
            if num:
                print(name, " : ", num)
        print("classes_nums:", classes_nums.astype(np.float64))

    @staticmethod
    def _save_crops(image, boxes):
        os.makedirs(CROP_DIR, exist_ok=True)
        for i, box in enumerate(pixel_boxes(boxes, image.size)):
            if box[2] <= box[0] or box[3] <= box[1]:
                continue                                    # narrower than a pixel: nothing to save
            atomic_save_image(image.crop(tuple(box.tolist())), os.path.join(CROP_DIR, f"crop_{i}.png"))
            print(f"save crop_{i}.png to {CROP_DIR}")

    def use_fast_path(self, images, why):
        """Prepare for a run of ``images`` images (None: a stream or a speed measurement); ``why`` names the run.
        Here nothing to choose; ``YOLO`` compiles when the run pays it back."""

    def get_FPS(self, image, test_interval):
        """Seconds per image of forward + decode + NMS, averaged over ``test_interval`` runs after a warm-up (the
        speed of a long run: what it would run, compiled with compile="auto", compiling in the warm-up)."""
        self.use_fast_path(None, "fps measures the speed of a long run")
        images, image_shape, _ = self._preprocess(image)
        self._detect_tensor(images, image_shape)
        start = time.perf_counter()
        for _ in range(test_interval):
            self._detect_tensor(images, image_shape)
        return (time.perf_counter() - start) / test_interval

    def get_map_txt(self, image_id, image, class_names, map_out_path):
        """Write ``map_out_path/detection-results/<image_id>.txt``: ``name score left top right bottom``
        per detection whose class is in ``class_names`` (an empty file when there is none).
        Returns ``detect(image)``'s arrays (all classes)."""
        boxes, scores, classes = self.detect(image)
        names = [self.class_names[c] for c in classes]
        known = np.array([name in class_names for name in names], dtype=bool)
        target_ids = np.array([class_names.index(n) for n, k in zip(names, known) if k], dtype=np.float64)
        rows = np.column_stack([boxes[known], scores[known], target_ids]) if known.any() else np.zeros((0, 6))
        write_map_txt(map_out_path, image_id, None, rows, class_names)
        return boxes, scores, classes


class YOLO(_Detector):
    """YOLOv4 detector over a ``.pth`` weights file, run with Conv+BN folded in ``torch.inference_mode()``."""
    _defaults = {
        # --- model ---
        # Weights to load; train.py writes logs/exp*/best_epoch_weights.pth (this default, when missing: the newest run's).
        "model_path": "logs/best_epoch_weights.pth",
        # Class names, one per line; unless given, the weights' run metadata's class names when it has them.
        "classes_path": "model_data/sample_classes.txt",
        # 9 anchors "w,h, w,h, ..." in input pixels; unless given, the weights' run metadata's anchors when it has them.
        "anchors_path": "model_data/yolo_anchors.txt",
        # Anchor indices per output level; level 0 (stride 32) takes the largest anchors.
        "anchors_mask": [[6, 7, 8], [3, 4, 5], [0, 1, 2]],
        # Network input (h, w), multiples of 32.
        "input_shape": [416, 416],
        # --- inference ---
        # Keep boxes whose objectness * class probability reaches this.
        "confidence": 0.5,
        # IoU above which NMS drops the lower-scored box of the same class.
        "nms_iou": 0.3,
        # True: NMS across classes, one box per object when its boxes disagree on the class (yolov5's
        # --agnostic-nms); objects of different classes overlapping beyond nms_iou then lose one box.
        "nms_agnostic": False,
        # Resize without distortion (grey borders) instead of stretching: what training validates with
        # (the weights' metadata says which their calibrated threshold was measured with).
        "letterbox_image": LETTERBOX_IMAGE,
        # 'auto' (CUDA when available), 'cpu' or 'cuda:N'.
        "device": "auto",
        # --- model ---
        # Network scale (channel multiplier); None reads it from the weight file's tensor shapes.
        "width_mult": None,
        # Network scale (residual-block multiplier); None reads it from the weight file's tensor shapes.
        "depth_mult": None,
        # Centre scale per level (darknet weights: [1.05, 1.1, 1.2]); None means 1.0 each.
        "scale_x_y": None,
        # --- inference ---
        # torch.compile the fused network (inductor, weights frozen as constants): a faster forward after a
        # compile of 10-110 s at the first image of each input size; needs a C++ compiler on CPU. "auto": compile
        # for long runs (fps, a camera, 300+ images; use_fast_path), eager for a few images.
        "compile": "auto",
    }

    def generate(self):
        """Build the network the weight file describes, load it, and keep its inference form as ``self.net``."""
        state_dict = load_state_dict_file(self.model_path, num_classes=self.num_classes,
                                          anchors_mask=self.anchors_mask)
        if is_darknet_path(self.model_path) and "yolo_head1.1.weight" not in state_dict:
            raise UserError(f"{self.model_path} holds only darknet's leading convolutions, no prediction heads: "
                             f"it is a starting point for train.py (model_path), not a detector")
        try:
            file_classes = num_classes_of_state_dict(state_dict, len(self.anchors_mask[0]))
            width_mult, depth_mult = resolve_scale(self.width_mult, self.depth_mult, state_dict)
        except (KeyError, ValueError) as err:
            raise UserError(f"{self.model_path} is not a YOLOv4 (YoloBody) weights file: {err}") from None
        if file_classes != self.num_classes:
            raise UserError(f"class count mismatch: weights {self.model_path} predict {file_classes} classes "
                             f"but classes file {self.classes_path} lists {self.num_classes}")
        model = YoloBody(self.anchors_mask, self.num_classes, width_mult=width_mult, depth_mult=depth_mult,
                         decoupled_head=has_decoupled_head(state_dict))
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as err:
            raise UserError(f"weights {self.model_path} do not fit YoloBody(width_mult={width_mult}, "
                             f"depth_mult={depth_mult}): {str(err).splitlines()[0]}") from None
        self.width_mult, self.depth_mult = width_mult, depth_mult
        self.torch_device = resolve_device(self.device)
        self.net = inference_model(model.eval(), self.torch_device)
        # What runs (detect, get_map): compiled or self.net itself; the eager self.net stays for ONNX export.
        self.forward_net = compiled_inference_model(self.net) if self.compile is True else self.net
        print(f"{self.model_path} model, anchors, and classes loaded.")

    def use_fast_path(self, images, why):
        """compile="auto": before a run of ``images`` images (None: a stream or a speed measurement), compile the
        network when the run is long enough to pay it back (utils/deploy/compiled.py); one line says which."""
        if self.compile != "auto" or self.forward_net is not self.net:
            return
        chosen, line = auto_compile_choice(images, self.torch_device, why)
        if chosen:
            self.forward_net = CompiledOrEager(self.net)
        print(line)

    def _forward(self, images):
        with torch.inference_mode():
            return self.forward_net(images.to(self.torch_device))

    def _detect_tensor(self, images, image_shape):
        with torch.inference_mode():
            return super()._detect_tensor(images, image_shape)

    def detect_heatmap(self, image, heatmap_save_path):
        """Save the image overlaid with the highest objectness over anchors and levels per pixel."""
        images, image_shape, image = self._preprocess(image)
        heat = self._objectness_map(self._forward(images), image_shape)
        figure = Figure(figsize=(image.size[0] / 100, image.size[1] / 100), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_axes((0, 0, 1, 1))
        axes.imshow(image)
        axes.imshow(heat, alpha=0.5, interpolation="nearest", cmap="jet", vmin=0, vmax=1)
        axes.axis("off")
        folder = os.path.dirname(heatmap_save_path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        atomic_savefig(figure, heatmap_save_path, dpi=200)
        print("Save to the " + heatmap_save_path)

    def _objectness_map(self, outputs, image_shape):
        """``(h, w)`` of the image: per pixel the max objectness over anchors and levels, letterbox undone."""
        (scale_x, scale_y), (offset_x, offset_y) = letterbox_geometry(self.input_shape, image_shape,
                                                                       self.letterbox_image)
        image_h, image_w = image_shape
        top, left = int(offset_y), int(offset_x)
        bottom, right = top + round(image_h * scale_y), left + round(image_w * scale_x)
        heat = np.zeros(image_shape, dtype=np.float32)
        for output, mask in zip(outputs, self.anchors_mask):
            batch, _, height, width = output.shape
            objectness = torch.sigmoid(output.float().view(batch, len(mask), -1, height, width)[0, :, 4])
            level = objectness.max(0).values.cpu().numpy()                                   # (H, W)
            level = cv2.resize(level, (self.input_shape[1], self.input_shape[0]))            # input pixels
            heat = np.maximum(heat, cv2.resize(level[top:bottom, left:right], (image_w, image_h)))
        return heat

    def convert_to_onnx(self, simplify, model_path, int8_images=()):
        """Export to ``model_path`` (utils/deploy/onnx_export.py): the fused network and the decode with this
        detector's anchors, strides and ``scale_x_y``, input ``images`` (B x 3 x H x W, dynamic batch), output
        ``predictions`` (B x N x (5 + C)), and the model's metadata (class names, input size, letterbox, the
        calibrated threshold and what it was measured on). ``simplify`` runs onnxsim when it is installed. With
        ``int8_images`` (image paths, e.g. training images) also write ``int8_path(model_path)``: the network
        quantized to int8 by onnxruntime, its activation ranges calibrated on those images (the decode stays float;
        utils/deploy/onnx_int8.py)."""
        if importlib.util.find_spec("onnx") is None:
            raise UserError("exporting to ONNX needs the 'onnx' package: pip install onnx")
        export_onnx(self.net, self.decoding, model_path, self.export_metadata(), simplify)
        print(f"ONNX model (decode in the graph, dynamic batch, metadata) saved as {model_path}")
        if int8_images:
            quantized = int8_path(model_path)
            quantize_onnx(model_path, quantized, list(int8_images), self.input_shape, self.letterbox_image)
            print(f"int8 model ({len(int8_images)} calibration images) saved as {quantized}")

    def export_metadata(self):
        """The metadata an export carries: the weights' run metadata with the settings this detector decodes with."""
        return {**self.metadata, "class_names": list(self.class_names), "input_shape": list(self.input_shape),
                "letterbox_image": bool(self.letterbox_image), "anchors": self.anchors.reshape(-1).tolist(),
                "anchors_mask": [list(m) for m in self.anchors_mask],
                "scale_x_y": None if self.scale_x_y is None else [float(v) for v in self.scale_x_y],
                "width_mult": self.width_mult, "depth_mult": self.depth_mult}


def int8_path(model_path):
    """Where the int8 model of the ONNX file ``model_path`` is written: ``<stem>_int8.onnx`` beside it."""
    stem, _ = os.path.splitext(model_path)
    return f"{stem}_int8.onnx"


def onnx_path_of(model_path):
    """The ONNX file export_onnx writes for the weights ``model_path`` by default: ``<stem>.onnx`` beside them."""
    return os.path.splitext(model_path)[0] + ".onnx"


class YOLO_ONNX(_Detector):
    """Runs a model written by ``YOLO.convert_to_onnx`` with onnxruntime (CPU, or CUDA when available).

    Everything the file's metadata holds (class names, input size, letterbox, the calibrated threshold) is taken
    from it unless given, so ``YOLO_ONNX(onnx_path=...)`` detects as ``YOLO(model_path=...)`` did on the weights it
    was exported from. A file of the older export (raw head outputs, no metadata) still runs, decoded here with
    the settings given (a warning says so)."""
    _defaults = {"onnx_path": "model_data/models.onnx",     # the exported model run
                 **{key: YOLO._defaults[key] for key in ("classes_path", "anchors_path", "anchors_mask", "input_shape",
                                                         "confidence", "nms_iou", "nms_agnostic", "letterbox_image",
                                                         "scale_x_y")},
                 "threads": 0}     # onnxruntime intra-op threads; 0 = its default (one per core)

    def _read_metadata(self):
        """Open the session (its file's ``metadata_props`` say how to use it) and return that metadata."""
        if importlib.util.find_spec("onnxruntime") is None:
            raise UserError("running an ONNX model needs the 'onnxruntime' package: pip install onnxruntime")
        import onnxruntime

        if not os.path.isfile(self.onnx_path):
            raise FileNotFoundError(f"ONNX model not found: {self.onnx_path} "
                                    "(export one with predict.py --mode export_onnx)")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        options = onnxruntime.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        self.session = onnxruntime.InferenceSession(self.onnx_path, options, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.decoded_output = self.output_names == [OUTPUT_NAME]
        if not self.decoded_output and self.output_names != list(RAW_OUTPUT_NAMES):
            raise UserError(f"{self.onnx_path} is not a YOLOv4 export of this repository: its outputs are "
                            f"{self.output_names}, expected [{OUTPUT_NAME!r}] (or the older {list(RAW_OUTPUT_NAMES)})")
        metadata = read_metadata_props(self.session.get_modelmeta().custom_metadata_map)
        if not metadata:
            warnings.warn(f"{self.onnx_path} carries no metadata (exported by an older version): it is decoded with "
                          f"the settings given or the defaults (classes_path, input_shape, anchors, scale_x_y, "
                          f"confidence); export it again (predict.py --mode export_onnx) to carry them",
                          stacklevel=3)
        return metadata

    def _metadata_source(self):
        return self.onnx_path

    def generate(self):
        model_input = self.session.get_inputs()[0]
        if list(model_input.shape[2:]) != list(self.input_shape):
            raise UserError(f"{self.onnx_path} takes input {model_input.shape}, but input_shape is {self.input_shape}")
        self.input_name = model_input.name
        print(f"{self.onnx_path} model, anchors, and classes loaded.")

    def _decoded(self, images):
        if not self.decoded_output:
            return super()._decoded(images)
        (predictions,) = self.session.run(None, {self.input_name: images.numpy()})
        return torch.from_numpy(predictions)

    def _forward(self, images):
        """Head outputs of the older export (batch 1): one session run per image."""
        runs = [self.session.run(None, {self.input_name: image[None].numpy()}) for image in images]
        return [torch.from_numpy(np.concatenate(level)) for level in zip(*runs)]
