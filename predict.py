"""Run a trained YOLOv4 on images, a folder, a video or a webcam; measure FPS; draw heat maps; export
to ONNX and run the exported model (upstream's modes).

Every setting below, and every key of ``YOLO._defaults`` (``--model_path``, ``--classes_path``,
``--input_shape "[320, 320]"``, ``--confidence 0.3``, ...), can be given on the command line:
    python predict.py --model_path logs/exp/best_epoch_weights.pth --source street.jpg   (or a folder, video, 0)
    python predict.py --mode predict --image street.jpg --save_path out.png
    python predict.py --mode dir_predict --dir_origin_path img/ --dir_save_path out/
    python predict.py --mode video --video_path clip.mp4 --video_save_path out.mp4
Without a display (no DISPLAY on Linux, or an OpenCV built without GUI) no window is opened.
"""
import os
import sys
import time

from utils.config import command_line_names, help_from_source, resolve_config

if __name__ == "__main__":      # --help read from this file and yolo.py, before the imports below load torch
    help_from_source(__file__, sys.argv[1:], defaults_of=[("yolo.py", "YOLO")])

import cv2
import numpy as np

from utils.data.annotation import parse_annotation_line, read_annotation_file
from utils.atomic import atomic_save_image
from utils.errors import UserError, run_entry
from utils.paths import resource_path
from utils.engine.run_dirs import new_run_dir
from yolo import YOLO, YOLO_ONNX, open_image

# (command, what it does): --help shows them above the settings.
_EXAMPLES = (
    ("python predict.py --model_path logs/exp/best_epoch_weights.pth --source street.jpg",
     "detect on an image (or a folder of images, a video file, a camera: --source 0) into img_out/exp"),
    ("python predict.py --data my_set/data.yaml",
     "detect on the dataset's test images with the newest run's weights"),
    ("python predict.py --mode export_onnx --onnx_int8 True",
     "export the newest run's weights to ONNX beside them, and an int8 copy"),
)
# YOLO._defaults' keys are settings too (settings_namespace); --help reads their descriptions in yolo.py.
_DESCRIBED_IN = ("yolo.py",)

# --- input ---
data = ""                                   # a dataset (as train.py --data): detect on its image_set list; its classes for weights without metadata
image_set = "test"                          # with data: "train", "val" or "test" (val when it has no test images)
source = ""                                 # an image, a folder of images, a video file or a camera index ("0"): detect on it (any mode below is then not needed)
# --- output ---
name = "exp"                                # results go to a new img_out/<name>, img_out/<name>2, ... (unless save_path / dir_save_path is given)
exist_ok = False                            # True: reuse img_out/<name> instead of numbering a new folder
# --- modes ---
mode = "predict"                            # predict, video, fps, dir_predict, heatmap, export_onnx or predict_onnx
image = ""                                  # image run once in predict/heatmap mode; "" prompts for names until EOF
save_path = ""                              # where predict mode saves the --image result; "" = img_out/<name>/<image name>
crop = False                                # predict mode: save each box as img_crop/crop_<i>.png
count = False                               # predict mode: print the number of objects per class
video_path = "0"                            # video file, or a webcam index such as 0
video_save_path = ""                        # where to save the annotated video; "" saves nothing
video_fps = 25.0                            # frame rate of the saved video
test_interval = 100                         # fps mode: detections timed
fps_image_path = "img/shapes_000007.jpg"    # fps mode: image timed
dir_origin_path = "img/"                    # dir_predict mode: folder of images read
dir_save_path = ""                          # dir_predict mode: folder results are written to (as .png); "" = img_out/<name>
heatmap_save_path = "model_data/heatmap_vision.png"  # heatmap mode: output image
# --- ONNX ---
simplify = True                             # export_onnx: simplify with onnxsim when it is installed
onnx_save_path = ""                         # export_onnx: the .onnx written; "" = beside the weights (<weights name>.onnx)
onnx_path = ""                              # predict_onnx: the .onnx run (its metadata gives classes, input size, threshold); "" = the one export_onnx writes
onnx_int8 = False                           # export_onnx: also write <name>_int8.onnx, quantized by onnxruntime
calibration_list = "2007_train.txt"         # onnx_int8: training list whose images calibrate the int8 ranges
calibration_images = 64                     # onnx_int8: how many of them (evenly spread over the list)

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
_OUTPUT_ROOT = "img_out"
_MODES = ("predict", "video", "fps", "dir_predict", "heatmap", "export_onnx", "predict_onnx")
# What a value given on the command line must be, beyond the type of its default (utils/config.py); YOLO's too.
# (--mode: settings() checks it against _MODES.)
_LIMITS = {"compile": ("auto", True, False), "video_fps": ">0", "test_interval": ">=1", "calibration_images": ">=1",
           "confidence": "0..1", "nms_iou": "0..1", "input_shape": ">=32", "width_mult": ">0", "depth_mult": ">0"}


def has_display():
    """Whether an OpenCV window can be opened here."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("video")
    except cv2.error:
        return False
    return True


def prompted_images():
    """Image file names typed at the prompt, until EOF (upstream's interactive loop)."""
    while True:
        try:
            path = input("Input image filename:")
        except EOFError:
            return
        try:
            yield path, open_image(path.strip())
        except (FileNotFoundError, ValueError) as err:
            print(f"Open Error! Try again! ({err})")


def input_images(image_path):
    """``(path, image)`` for ``image_path`` when given, else for each file name typed at the prompt."""
    if image_path:
        yield image_path, open_image(image_path)
    else:
        yield from prompted_images()


def output_folder(config):
    """This run's results folder: a new numbered ``img_out/<name>`` (created on first use)."""
    if "output_folder" not in config:
        config["output_folder"] = new_run_dir(_OUTPUT_ROOT, config["name"], config["exist_ok"])
    return config["output_folder"]


def found_line(name, scores, classes, class_names, confidence):
    """``img.jpg: 2 star, 1 circle (0.91, 0.88, 0.75)``: the detections of one image, most frequent class first,
    then the scores highest first."""
    if not len(classes):
        return f"{name}: nothing found at confidence {confidence:.4g}"
    counts = np.bincount(classes, minlength=len(class_names))
    found = ", ".join(f"{counts[c]} {class_names[c]}" for c in np.argsort(-counts, kind="stable") if counts[c])
    return f"{name}: {found} ({', '.join(f'{s:.2f}' for s in sorted(scores, reverse=True))})"


def detect_and_save(detector, name, image, path, config):
    """Detect on one image, save the drawing to ``path`` and print what was found and where it went."""
    drawn, _, scores, classes = detector.annotate(image, crop=config["crop"], count=config["count"])
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    atomic_save_image(drawn, path)
    print(f"{found_line(name, scores, classes, detector.class_names, detector.confidence)} -> {path}")


def predict_images(detector, config):
    """Detect on --image (saved to save_path) or on prompted images (shown when a display exists,
    else saved to img_out/<name>/)."""
    show = not config["image"] and has_display()
    for path, loaded in input_images(config["image"]):
        if show:
            detector.detect_image(loaded, crop=config["crop"], count=config["count"]).show()
        else:
            target = config["save_path"] or os.path.join(output_folder(config), os.path.basename(path))
            detect_and_save(detector, os.path.basename(path), loaded, target, config)


def image_names(folder):
    """The image files of ``folder``, sorted."""
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(_IMAGE_EXTENSIONS))


def predict_directory(detector, config):
    source = resource_path(config["dir_origin_path"])
    if not os.path.isdir(source):
        raise FileNotFoundError(f"dir_origin_path folder not found: {source}")
    names = image_names(source)
    if not names:
        raise UserError(f"{source} holds no image ({', '.join(_IMAGE_EXTENSIONS)})")
    predict_paths(detector, [os.path.join(source, name) for name in names], config)


def predict_source(detector, config):
    """``--source``: an image, a folder of images, a video file or a camera index, each to its output."""
    source = config["source"]
    if source.strip().isdigit() or source.lower().endswith(_VIDEO_EXTENSIONS):
        save = config["video_save_path"]
        if not save and not source.strip().isdigit():
            save = os.path.join(output_folder(config), os.path.splitext(os.path.basename(source))[0] + ".avi")
        predict_video(detector, {**config, "video_path": source, "video_save_path": save})
    elif os.path.isdir(source):
        predict_directory(detector, {**config, "dir_origin_path": source})
    elif os.path.isfile(source):
        target = config["save_path"] or os.path.join(output_folder(config), os.path.basename(source))
        detect_and_save(detector, os.path.basename(source), open_image(source), target, config)
    else:
        raise FileNotFoundError(f"--source not found: {source} (an image, a folder of images, a video file "
                                f"or a camera index such as 0)")


def open_video(video_path):
    source = int(video_path) if str(video_path).strip().isdigit() else video_path
    capture = cv2.VideoCapture(source)
    ok, frame = capture.read()
    if not ok:
        raise UserError(f"cannot read from video source {video_path!r} (check the file path or webcam index)")
    return capture, frame


def predict_video(detector, config):
    """Annotate every frame; show it when a display exists, save it when video_save_path is set."""
    capture, frame = open_video(config["video_path"])
    frames_in_file = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))       # 0 or less for a camera (a stream)
    detector.use_fast_path(frames_in_file if frames_in_file > 0 else None,
                           f"a video of {frames_in_file} frames" if frames_in_file > 0 else "a camera stream")
    writer = None
    if config["video_save_path"]:
        folder = os.path.dirname(config["video_save_path"])
        if folder:
            os.makedirs(folder, exist_ok=True)
        size = (frame.shape[1], frame.shape[0])
        writer = cv2.VideoWriter(config["video_save_path"], cv2.VideoWriter_fourcc(*"XVID"), config["video_fps"], size)
    show = has_display()
    fps, frames = 0.0, 0
    while frame is not None:
        start = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        annotated = cv2.cvtColor(np.asarray(detector.detect_image(rgb)), cv2.COLOR_RGB2BGR)
        fps = (fps + 1.0 / (time.perf_counter() - start)) / 2
        annotated = cv2.putText(annotated, f"fps= {fps:.2f}", (0, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 255, 0), 2)
        frames += 1
        if writer is not None:
            writer.write(annotated)
        if show:
            cv2.imshow("video", annotated)
            if cv2.waitKey(1) & 0xFF == 27:          # Esc stops
                break
        elif frames % 25 == 0:
            print(f"{frames} frames, fps= {fps:.2f}")
        ok, frame = capture.read()
        frame = frame if ok else None
    print(f"Video Detection Done! {frames} frames.")
    capture.release()
    if writer is not None:
        writer.release()
        print(f"Save processed video to the path: {config['video_save_path']}")
    if show:
        cv2.destroyAllWindows()


def data_images(config, lists):
    """The image paths of ``--data``'s ``image_set`` list (the validation list when it has no test images)."""
    if config["image_set"] not in ("train", "val", "test"):
        raise UserError(f"with --data, image_set is train, val or test, got {config['image_set']!r}")
    list_path = lists.list_path(config["image_set"]) or lists.val
    return [parse_annotation_line(line)[0] for line in read_annotation_file(list_path)]


def predict_paths(detector, paths, config):
    """Detect on each image of ``paths`` into this run's folder, a line per image."""
    folder = config["dir_save_path"] or output_folder(config)
    if len(paths) > 1:
        detector.use_fast_path(len(paths), f"{len(paths)} images")
    for path in paths:
        name = os.path.basename(path)
        detect_and_save(detector, name, open_image(path), os.path.join(folder, os.path.splitext(name)[0] + ".png"),
                        config)


def main(config, given=None):
    """Run the configured mode. ``given``: the names set on the command line; YOLO settings not
    among them come from yolo.py's defaults or from the weights' run metadata."""
    given = set(config) if given is None else given
    yolo_settings = {k: config[k] for k in YOLO._defaults if k in given}
    if config["data"]:
        from utils.data.data_source import resolve_data
        from utils.engine.run_metadata import read_metadata
        from yolo import newest_weights_if_missing

        lists = resolve_data(config["data"], classes_path=config["classes_path"] if "classes_path" in given else None)
        model_path = newest_weights_if_missing(yolo_settings.get("model_path", YOLO._defaults["model_path"]))
        if "classes_path" not in given and not read_metadata(model_path).get("class_names"):
            yolo_settings["classes_path"] = lists.classes_path
        predict_paths(YOLO(**yolo_settings), data_images(config, lists), config)
        return
    if config["mode"] == "predict_onnx":
        onnx_settings = {k: v for k, v in yolo_settings.items() if k in YOLO_ONNX._defaults}
        detector = YOLO_ONNX(onnx_path=config["onnx_path"] or onnx_file(config, yolo_settings), **onnx_settings)
        if config["source"]:
            predict_source(detector, config)
        else:
            predict_images(detector, config)
        return
    yolo = YOLO(**yolo_settings)
    if config["source"]:
        predict_source(yolo, config)
    elif config["mode"] == "predict":
        predict_images(yolo, config)
    elif config["mode"] == "video":
        predict_video(yolo, config)
    elif config["mode"] == "fps":
        tact_time = yolo.get_FPS(open_image(resource_path(config["fps_image_path"])), config["test_interval"])
        print(f"{tact_time} seconds, {1 / tact_time} FPS, @batch_size 1")
    elif config["mode"] == "dir_predict":
        predict_directory(yolo, config)
    elif config["mode"] == "heatmap":
        for _, loaded in input_images(config["image"]):
            yolo.detect_heatmap(loaded, config["heatmap_save_path"])
    elif config["mode"] == "export_onnx":
        images = calibration_paths(config["calibration_list"], config["calibration_images"]) \
            if config["onnx_int8"] else ()
        yolo.convert_to_onnx(config["simplify"], onnx_file(config, {"model_path": yolo.model_path}), int8_images=images)


def onnx_file(config, yolo_settings):
    """``onnx_save_path``, or the file beside the weights (the given ``model_path``, else the newest run's)."""
    if config["onnx_save_path"]:
        return config["onnx_save_path"]
    from yolo import newest_weights_if_missing, onnx_path_of

    return onnx_path_of(newest_weights_if_missing(yolo_settings.get("model_path", YOLO._defaults["model_path"])))


def calibration_paths(list_path, count):
    """``count`` image paths spread evenly over the training list ``list_path`` (all when it has fewer)."""
    if not os.path.isfile(list_path):
        raise UserError(f"calibration_list {list_path} not found: int8 calibration needs a training list "
                        "(voc_annotation.py writes 2007_train.txt)")
    paths = [parse_annotation_line(line)[0] for line in read_annotation_file(list_path)]
    if not paths:
        raise UserError(f"calibration_list {list_path} has no image")
    picks = np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int)
    return [paths[i] for i in picks]


def settings_namespace():
    """This script's globals plus YOLO's settings, which it takes too."""
    return {**YOLO._defaults, **globals()}


def settings(argv):
    """This script's settings plus YOLO's, with command-line overrides applied."""
    config = resolve_config(settings_namespace(), argv, script_path=__file__)
    if config["mode"] not in _MODES:
        raise UserError(f"--mode must be one of {', '.join(_MODES)}, got {config['mode']!r}")
    return config


if __name__ == "__main__":
    run_entry(lambda: main(settings(sys.argv[1:]), given=command_line_names(sys.argv[1:])))
