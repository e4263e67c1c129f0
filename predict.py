"""Run a trained YOLOv4 on images, a folder, a video or a webcam; measure FPS; draw heat maps; export
to ONNX and run the exported model (upstream's modes).

Every setting below, and every key of ``YOLO._defaults`` (``--model_path``, ``--classes_path``,
``--input_shape "[320, 320]"``, ``--confidence 0.3``, ...), can be given on the command line:
    python predict.py --mode predict --image street.jpg --save_path out.png
    python predict.py --mode dir_predict --dir_origin_path img/ --dir_save_path img_out/
    python predict.py --mode video --video_path clip.mp4 --video_save_path out.mp4
Without a display (no DISPLAY on Linux, or an OpenCV built without GUI) no window is opened.
"""
import os
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from utils.annotation import parse_annotation_line, read_annotation_file
from utils.atomic import atomic_save_image
from utils.config import command_line_names, resolve_config
from utils.errors import UserError, run_entry
from yolo import YOLO, YOLO_ONNX, open_image

mode = "predict"                            # predict, video, fps, dir_predict, heatmap, export_onnx or predict_onnx
image = ""                                  # image run once in predict/heatmap mode; "" prompts for names until EOF
save_path = ""                              # where predict mode saves the --image result; "" = img_out/<image name>
crop = False                                # predict mode: save each box as img_crop/crop_<i>.png
count = False                               # predict mode: print the number of objects per class
video_path = "0"                            # video file, or a webcam index such as 0
video_save_path = ""                        # where to save the annotated video; "" saves nothing
video_fps = 25.0                            # frame rate of the saved video
test_interval = 100                         # fps mode: detections timed
fps_image_path = "img/shapes_000007.jpg"    # fps mode: image timed
dir_origin_path = "img/"                    # dir_predict mode: folder of images read
dir_save_path = "img_out/"                  # dir_predict mode: folder results are written to (as .png)
heatmap_save_path = "model_data/heatmap_vision.png"  # heatmap mode: output image
simplify = True                             # export_onnx: simplify with onnxsim when it is installed
onnx_save_path = "model_data/models.onnx"   # ONNX file export_onnx writes and predict_onnx reads
onnx_int8 = False                           # export_onnx: also write <name>_int8.onnx, quantized by onnxruntime
calibration_list = "2007_train.txt"         # onnx_int8: training list whose images calibrate the int8 ranges
calibration_images = 64                     # onnx_int8: how many of them (evenly spread over the list)

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_MODES = ("predict", "video", "fps", "dir_predict", "heatmap", "export_onnx", "predict_onnx")


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


def save_image(result, path):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    atomic_save_image(result, path)
    print(f"Saved {path}")


def predict_images(detector, config):
    """Detect on --image (saved to save_path) or on prompted images (shown when a display exists,
    else saved to img_out/<name>)."""
    show = not config["image"] and has_display()
    for path, loaded in input_images(config["image"]):
        result = detector.detect_image(loaded, crop=config["crop"], count=config["count"])
        if show:
            result.show()
        else:
            save_image(result, config["save_path"] or os.path.join("img_out", os.path.basename(path)))


def predict_directory(detector, config):
    source, target = config["dir_origin_path"], config["dir_save_path"]
    if not os.path.isdir(source):
        raise FileNotFoundError(f"dir_origin_path folder not found: {source}")
    names = sorted(n for n in os.listdir(source) if n.lower().endswith(_IMAGE_EXTENSIONS))
    os.makedirs(target, exist_ok=True)
    for name in tqdm(names):
        result = detector.detect_image(open_image(os.path.join(source, name)))
        atomic_save_image(result, os.path.join(target, os.path.splitext(name)[0] + ".png"))


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


def main(config, given=None):
    """Run the configured mode. ``given``: the names set on the command line; YOLO settings not
    among them come from yolo.py's defaults or from the weights' run metadata."""
    given = set(config) if given is None else given
    yolo_settings = {k: config[k] for k in YOLO._defaults if k in given}
    if config["mode"] == "predict_onnx":
        onnx_settings = {k: v for k, v in yolo_settings.items() if k in YOLO_ONNX._defaults}
        predict_images(YOLO_ONNX(onnx_path=config["onnx_save_path"], **onnx_settings), config)
        return
    yolo = YOLO(**yolo_settings)
    if config["mode"] == "predict":
        predict_images(yolo, config)
    elif config["mode"] == "video":
        predict_video(yolo, config)
    elif config["mode"] == "fps":
        tact_time = yolo.get_FPS(open_image(config["fps_image_path"]), config["test_interval"])
        print(f"{tact_time} seconds, {1 / tact_time} FPS, @batch_size 1")
    elif config["mode"] == "dir_predict":
        predict_directory(yolo, config)
    elif config["mode"] == "heatmap":
        for _, loaded in input_images(config["image"]):
            yolo.detect_heatmap(loaded, config["heatmap_save_path"])
    elif config["mode"] == "export_onnx":
        images = calibration_paths(config["calibration_list"], config["calibration_images"]) \
            if config["onnx_int8"] else ()
        yolo.convert_to_onnx(config["simplify"], config["onnx_save_path"], int8_images=images)


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


def settings(argv):
    """This script's settings plus YOLO's, with command-line overrides applied."""
    namespace = {**YOLO._defaults, **globals()}
    config = resolve_config(namespace, argv, script_path=__file__)
    if config["mode"] not in _MODES:
        raise UserError(f"--mode must be one of {', '.join(_MODES)}, got {config['mode']!r}")
    return config


if __name__ == "__main__":
    run_entry(lambda: main(settings(sys.argv[1:]), given=command_line_names(sys.argv[1:])))
