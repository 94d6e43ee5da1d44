"""A small conv net with the structure the quantizer looks for (Conv+BN blocks, a residual
Bottleneck, a Concat, a Detect head with a DFL), fast enough for unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from qexp.interfaces import Deployable
from qexp.plugins import load_plugins

load_plugins()  # the quantizers and observers these tests drive register when their modules load


class Conv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, c), Conv(c, c), True

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class DFL(nn.Module):
    def __init__(self, c1=4):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)

    def forward(self, x):
        return self.conv(x.softmax(1))


class Detect(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.box = nn.Conv2d(c, 4, 1)
        self.cls = nn.Conv2d(c, 3, 1)
        self.dfl = DFL(4)

    def forward(self, x):
        b, c = self.box(x), self.cls(x)
        return torch.cat([self.dfl(b), c.sigmoid()], 1).flatten(2)


class TinyYolo(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(Conv(3, 8, 3, 2), Bottleneck(8), Conv(8, 16, 3, 2), Detect(16))

    def forward(self, x):
        y0 = self.model[0](x)
        y1 = self.model[1](y0)
        y2 = self.model[2](torch.cat([y1, y0], 1)[:, :8])
        return self.model[3](y2)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.fixture
def tiny() -> TinyYolo:
    torch.manual_seed(0)
    return randomize_bn(TinyYolo())


class TinyDetector:
    """The Detector face of TinyYolo: export through the TorchScript ONNX exporter."""

    name = "tiny"
    stride = 4
    num_classes = 3

    def __init__(self, module: nn.Module):
        self.module = module

    def raw(self, out):
        return out

    def export_onnx(self, module, path, imgsz, batch):
        torch.onnx.export(
            module.eval(),
            (torch.zeros(batch, 3, imgsz, imgsz),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["output0"],
        )
        return path


@pytest.fixture
def tiny_detector(tiny) -> TinyDetector:
    return TinyDetector(tiny)


class ImageData:
    """Calibration images: smooth random fields in [0, 1] (seeded)."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.calls = 0

    def calibration(self, imgsz, num=None):
        self.calls += 1
        g = torch.Generator().manual_seed(self.seed)
        out = []
        for _ in range(num or 4):
            x = torch.rand(1, 3, imgsz // 4, imgsz // 4, generator=g)
            x = nn.functional.interpolate(x, size=(imgsz, imgsz), mode="bilinear")
            out.append(x.numpy())
        return out


def ort_run(path: Path | str, x: np.ndarray) -> np.ndarray:
    """The first output of the ONNX at ``path`` for input ``x`` on ONNX Runtime's CPU."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def export_and_run(
    deploy: Deployable, directory: Path, x: np.ndarray
) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """Export ``deploy`` into ``directory``, check the ONNX, and run ``x`` through it and through
    the torch module: (model, ORT output, torch raw output) for the test to compare."""
    path = deploy.export(directory)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    with torch.no_grad():
        want = deploy.detector.raw(deploy.module(torch.from_numpy(x))).numpy()
    return model, ort_run(path, x), want
