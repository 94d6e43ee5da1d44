"""Image preprocessing identical to ultralytics' validator (``YOLODataset`` in val mode).

Two steps, as ultralytics does them, because each rounds on its own: ``load_image`` resizes the
long side to ``imgsz`` (ceil, INTER_LINEAR), then ``LetterBox(scaleup=False, center=True)``
pads to the batch shape with 114. Rect mode takes the batch shape from ultralytics'
``set_rectangle`` (images sorted by aspect ratio, pad 0.5); square mode pads to imgsz x imgsz,
which is what static-shape ONNX models and TensorRT engines see.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PAD_VALUE = 114
RECT_PAD = 0.5  # ultralytics' val-mode pad for rectangular batch shapes

# ((gain_h, gain_w), (pad_w, pad_h)): undoes the letterbox, as ultralytics' ``ratio_pad``
RatioPad = tuple[tuple[float, float], tuple[int, int]]


def imread(path: str | Path) -> np.ndarray | None:
    """BGR uint8 HWC, or None when the file cannot be decoded (ultralytics' ``imread``)."""
    try:
        buf = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if not buf.size:
        return None
    im = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if im is not None and im.ndim == 2:
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
    return im


def image_hw(path: str | Path) -> tuple[int, int]:
    """EXIF-corrected (height, width) from the header, without decoding (ultralytics' ``exif_size``)."""
    with Image.open(path) as im:
        im.verify()  # raises on a truncated or non-image file
        w, h = im.size
        try:
            if im.getexif().get(274) in {5, 6, 7, 8} and im.format in {"JPEG", "MPO", "PNG"}:
                w, h = h, w
        except Exception:  # noqa: BLE001 - unreadable EXIF: keep the raw size, as ultralytics does
            pass
    return h, w


def resize_long_side(im: np.ndarray, imgsz: int) -> np.ndarray:
    """Resize so the long side is ``imgsz`` (ultralytics ``BaseDataset.load_image``, rect_mode)."""
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        w, h = min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)
        im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
    return im


def letterbox(
    im: np.ndarray, new_shape: tuple[int, int], pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Pad (and only ever shrink) to ``new_shape`` (h, w), centred: ultralytics ``LetterBox``.

    Returns the image, the scale applied and the (left, top) padding.
    """
    h, w = im.shape[:2]
    r = min(new_shape[0] / h, new_shape[1] / w, 1.0)  # scaleup=False, as in validation
    new_unpad = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (new_shape[1] - new_unpad[0]) / 2, (new_shape[0] - new_unpad[1]) / 2
    if (w, h) != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    im = cv2.copyMakeBorder(
        im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3
    )
    return im, r, (left, top)


def preprocess(
    im_bgr: np.ndarray, imgsz: int, shape: tuple[int, int]
) -> tuple[np.ndarray, RatioPad]:
    """BGR HWC uint8 -> RGB CHW uint8 letterboxed to ``shape``, and its ratio_pad."""
    h0, w0 = im_bgr.shape[:2]
    im = resize_long_side(im_bgr, imgsz)
    h1, w1 = im.shape[:2]
    im, r, pad = letterbox(im, shape)
    ratio_pad = ((h1 / h0 * r, w1 / w0 * r), pad)
    chw = np.ascontiguousarray(im.transpose(2, 0, 1)[::-1])  # HWC BGR -> CHW RGB
    return chw, ratio_pad


def to_float(images: list[np.ndarray]) -> np.ndarray:
    """Stack uint8 CHW images into the float32 NCHW 0..1 batch the models take."""
    x = np.stack(images).astype(np.float32)
    x /= 255.0  # in place: the same float32 division, one 5 MB temporary less per image
    return x


def rect_batches(
    hw: np.ndarray, batch: int, imgsz: int, stride: int, pad: float = RECT_PAD
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Ultralytics ``set_rectangle``: image order (by aspect ratio) and each batch's (h, w).

    ``hw`` is (N, 2) original heights/widths in the dataset's (sorted-path) order.
    """
    n = len(hw)
    bi = np.floor(np.arange(n) / batch).astype(int)
    nb = int(bi[-1]) + 1 if n else 0
    ar = hw[:, 0] / hw[:, 1]
    order = ar.argsort()  # the same (unstable) sort as ultralytics, so equal ratios tie alike
    ar = ar[order]
    shapes = [[1.0, 1.0]] * nb
    for i in range(nb):
        ari = ar[bi == i]
        mini, maxi = ari.min(), ari.max()
        if maxi < 1:
            shapes[i] = [maxi, 1]
        elif mini > 1:
            shapes[i] = [1, 1 / mini]
    batch_shapes = np.ceil(np.array(shapes) * imgsz / stride + pad).astype(int) * stride
    return order, [(int(h), int(w)) for h, w in batch_shapes]


def scale_boxes(boxes: np.ndarray, ratio_pad: RatioPad, orig_hw: tuple[int, int]) -> np.ndarray:
    """xyxy boxes in the letterboxed input -> original image pixels, clipped (ultralytics)."""
    (gain_h, gain_w), (pad_w, pad_h) = ratio_pad
    b = boxes.astype(np.float32, copy=True)
    b[:, [0, 2]] = (b[:, [0, 2]] - pad_w) / gain_w
    b[:, [1, 3]] = (b[:, [1, 3]] - pad_h) / gain_h
    h, w = orig_hw
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    return b
