"""ΔmAP50-95 of two detection sets on the same images, with a paired bootstrap interval.

COCO's box evaluation matches detections to ground truth per (image, category), then
accumulates precision/recall over all images. The per-image matches are computed once
(``match_images``, the greedy COCO matching at the ten IoU thresholds, area "all", 100
detections per image and category), saved with the job (``matches*.npz``), and a resample of
the images is then a weighting of those matches: an image drawn c times counts each of its
detections and ground-truth boxes c times. That is exact (up to the order of detections with
equal scores) and needs no second COCO pass, so a few hundred resamples of 206 images take
seconds. Both rows are resampled with the same image draws (a paired bootstrap), which is
what makes a 0.3 pt difference on 206 images readable at all.

numpy only at import: the report layer reads ``Matches`` files and calls ``paired_delta``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

IOU_THRS = np.linspace(0.5, 0.95, 10)  # COCO's ten thresholds
REC_THRS = np.linspace(0.0, 1.0, 101)  # COCO's 101 recall points
MAX_DETS = 100  # per image and category, COCO's last maxDets
_EPS = np.spacing(1)


@dataclass(frozen=True)
class Matches:
    """One detection set's COCO matches, per detection and per image (area "all")."""

    image_ids: np.ndarray  # (I,) sorted image ids
    cat_ids: np.ndarray  # (K,) the ground truth's category ids
    npig: np.ndarray  # (I, K) ground-truth boxes that count (not crowd) per image, category
    det_image: np.ndarray  # (D,) index into image_ids
    det_cat: np.ndarray  # (D,) index into cat_ids
    det_score: np.ndarray  # (D,)
    tp: np.ndarray  # (T, D) matched a counted box at IoU threshold t
    ignored: np.ndarray  # (T, D) matched a crowd box at t: neither true nor false positive

    def save(self, path: Path) -> Path:
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)})
        return path

    @classmethod
    def load(cls, path: Path) -> Matches:
        with np.load(path) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})

    def map50_95(self) -> float:
        """COCO mAP50-95 of these matches (equal to the COCO evaluator's on the same images)."""
        return float(_map(self, np.ones((1, len(self.image_ids))), exact=True)[0])


def _iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of xywh boxes; a crowd box scores intersection over the detection's area."""
    dx2, dy2 = d[:, 0] + d[:, 2], d[:, 1] + d[:, 3]
    gx2, gy2 = g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    iw = np.minimum(dx2[:, None], gx2[None]) - np.maximum(d[:, None, 0], g[None, :, 0])
    ih = np.minimum(dy2[:, None], gy2[None]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    da, ga = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(crowd[None], da[:, None], da[:, None] + ga[None] - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(iou: np.ndarray, gt_ig: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, ...]:
    """COCO's greedy matching of score-ordered detections to ignore-ordered boxes, all ten
    thresholds at once: a detection takes the free box of highest IoU >= t, a counted box
    before a crowd one (the last of equal IoUs, as COCO's loop does)."""
    t_n, (d_n, g_n) = len(IOU_THRS), iou.shape
    thr = np.minimum(IOU_THRS, 1 - 1e-10)[:, None]
    taken = np.zeros((t_n, g_n), bool)
    tp = np.zeros((t_n, d_n), bool)
    ig = np.zeros((t_n, d_n), bool)
    rows = np.arange(t_n)
    for d in np.flatnonzero(iou.max(1, initial=0) >= thr[0, 0]):
        ok = (~taken | crowd[None]) & (iou[d][None] >= thr)
        counted = ok & ~gt_ig[None]
        pick = np.where(counted.any(1, keepdims=True), counted, ok)
        found = pick.any(1)
        if not found.any():
            continue
        score = np.where(pick, iou[d][None], -1.0)
        m = g_n - 1 - np.argmax(score[:, ::-1], 1)
        t = rows[found]
        taken[t, m[found]] = True
        ig[t, d] = gt_ig[m[found]]
        tp[t, d] = ~gt_ig[m[found]]
    return tp, ig


def match_images(gt: dict, dets: list[dict], image_ids: list[int]) -> Matches:
    """The per-image COCO matches of ``dets`` (COCO results) on ``image_ids`` of ``gt``."""
    ids = np.array(sorted(set(image_ids)), np.int64)
    cats = np.array(sorted(int(c["id"]) for c in gt["categories"]), np.int64)
    img_ix = {int(v): i for i, v in enumerate(ids)}
    cat_ix = {int(v): k for k, v in enumerate(cats)}
    boxes: dict[tuple[int, int], list[dict]] = {}
    for a in gt["annotations"]:
        if a["image_id"] in img_ix:
            boxes.setdefault((img_ix[a["image_id"]], cat_ix[a["category_id"]]), []).append(a)
    found: dict[tuple[int, int], list[dict]] = {}
    for r in dets:
        if r["image_id"] in img_ix:
            found.setdefault((img_ix[r["image_id"]], cat_ix[r["category_id"]]), []).append(r)
    npig = np.zeros((len(ids), len(cats)), np.int64)
    parts: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for key in sorted(set(boxes) | set(found)):
        g = boxes.get(key, [])
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in g], bool)
        order = np.argsort(crowd, kind="mergesort")  # counted boxes first, as COCO sorts
        crowd = crowd[order]
        npig[key] = int((~crowd).sum())
        d = found.get(key, [])
        if not d:
            continue
        scores = np.array([r["score"] for r in d], np.float64)
        keep = np.argsort(-scores, kind="mergesort")[:MAX_DETS]
        scores = scores[keep]
        t_n = len(IOU_THRS)
        if g:
            gb = np.array([g[i]["bbox"] for i in order], np.float64).reshape(-1, 4)
            db = np.array([d[i]["bbox"] for i in keep], np.float64).reshape(-1, 4)
            tp, ig = _match(_iou(db, gb, crowd), crowd, crowd)
        else:
            tp = ig = np.zeros((t_n, len(keep)), bool)
        parts.append((key[0], key[1], scores, tp, ig))
    if not parts:
        empty = np.zeros(0, np.int64)
        no_t = np.zeros((len(IOU_THRS), 0), bool)
        return Matches(ids, cats, npig, empty, empty, np.zeros(0), no_t, no_t)
    return Matches(
        image_ids=ids,
        cat_ids=cats,
        npig=npig,
        det_image=np.concatenate([np.full(len(p[2]), p[0]) for p in parts]),
        det_cat=np.concatenate([np.full(len(p[2]), p[1]) for p in parts]),
        det_score=np.concatenate([p[2] for p in parts]),
        tp=np.concatenate([p[3] for p in parts], 1),
        ignored=np.concatenate([p[4] for p in parts], 1),
    )


def _curves(m: Matches, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per IoU threshold, category ``k``'s precision/recall curve reduced to its true
    positives: (the image of each, in COCO's order; (J, I) false positives of each image
    between one true positive and the next). Precision falls at every false positive and
    rises only at a true positive, and COCO reads the envelope at the first point reaching a
    recall, always a true positive: so these points give the same AP as the whole curve, for
    any weighting of the images."""
    sel = np.flatnonzero(m.det_cat == k)
    n_img = len(m.image_ids)
    if not len(sel):
        return [(np.zeros(0, np.int64), np.zeros((0, n_img)))] * len(IOU_THRS)
    # COCO's order: images ascending, each by score, then a stable sort by score
    sel = sel[np.lexsort((-m.det_score[sel], m.det_image[sel]))]
    sel = sel[np.argsort(-m.det_score[sel], kind="mergesort")]
    img = m.det_image[sel]
    out = []
    for t in range(len(IOU_THRS)):
        tp, fp = m.tp[t, sel], ~m.tp[t, sel] & ~m.ignored[t, sel]
        n_tp = int(tp.sum())
        before = np.cumsum(tp)[fp]  # true positives ranked above each false positive
        keep = before < n_tp  # those after the last true positive change nothing
        flat = before[keep] * n_img + img[fp][keep]
        fps = np.bincount(flat, minlength=n_tp * n_img).reshape(n_tp, n_img).astype(np.float64)
        out.append((img[tp], fps))
    return out


def _first_at_least(rc: np.ndarray, exact: bool) -> np.ndarray:
    """(B, R) index of the first recall >= each of COCO's recall points, per row of a (B, J)
    non-decreasing ``rc``. Exact: one searchsorted per row (the point estimate); otherwise
    one searchsorted of all rows laid end to end (rows offset by 2, recall <= 1), which can
    differ from exact only where a recall equals a recall point to the last bit."""
    n_rows, n = rc.shape
    if exact:
        return np.stack([np.searchsorted(r, REC_THRS, side="left") for r in rc])
    off = 2.0 * np.arange(n_rows)[:, None]
    flat = np.searchsorted((rc + off).ravel(), (REC_THRS[None] + off).ravel(), side="left")
    return flat.reshape(n_rows, -1) - n * np.arange(n_rows)[:, None]


def _map(m: Matches, weights: np.ndarray, exact: bool = False) -> np.ndarray:
    """mAP50-95 for each row of ``weights`` (B, I): how often each image is drawn."""
    b_n, t_n = len(weights), len(IOU_THRS)
    wt = np.ascontiguousarray(weights.T)  # (I, B)
    ap_sum = np.zeros(b_n)
    n_valid = np.zeros(b_n)
    for k in range(len(m.cat_ids)):
        npig = weights @ m.npig[:, k].astype(np.float64)  # (B,)
        valid = npig > 0
        n_valid += valid * t_n  # a category with boxes but no true positive scores 0
        for tp_img, fps in _curves(m, k):
            if not len(tp_img):
                continue
            tps = np.cumsum(wt[tp_img], 0).T  # (B, J)
            fpc = np.cumsum(fps @ wt, 0).T
            rc = tps / np.maximum(npig, 1)[:, None]
            pr = tps / (tps + fpc + _EPS)
            pr = np.maximum.accumulate(pr[:, ::-1], 1)[:, ::-1]  # the precision envelope
            idx = _first_at_least(rc, exact)
            j_n = pr.shape[1]
            q = np.take_along_axis(pr, np.minimum(idx, j_n - 1), 1) * (idx < j_n)
            ap_sum += q.mean(1) * valid
    return np.where(n_valid > 0, ap_sum / np.maximum(n_valid, 1), 0.0)


@dataclass(frozen=True)
class Delta:
    """mAP50-95 of a row minus its reference's (fractions), with the paired interval."""

    delta: float
    lo: float
    hi: float
    resamples: int
    images: int

    def within_noise(self) -> bool:
        return self.lo <= 0.0 <= self.hi

    def crosses(self, budget: float) -> bool:
        """The interval holds a loss of exactly ``budget`` (a fraction): within budget or not
        is not settled by these images."""
        return self.lo <= -budget <= self.hi


def paired_delta(
    row: Matches, ref: Matches, resamples: int = 300, seed: int = 0, level: float = 0.95
) -> Delta:
    """``row`` - ``ref`` mAP50-95 with a paired percentile bootstrap interval over images."""
    if not np.array_equal(row.image_ids, ref.image_ids):
        raise ValueError(
            f"the rows were scored on different images ({len(row.image_ids)} vs "
            f"{len(ref.image_ids)}): a paired interval needs the same ones"
        )
    if not np.array_equal(row.cat_ids, ref.cat_ids):
        raise ValueError("the rows were scored against different categories")
    n = len(row.image_ids)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    diffs = _map(row, weights) - _map(ref, weights)
    a = (1 - level) / 2
    lo, hi = np.quantile(diffs, [a, 1 - a])
    return Delta(row.map50_95() - ref.map50_95(), float(lo), float(hi), resamples, n)
