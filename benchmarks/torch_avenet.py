"""A PyTorch AVE-Net of the same shapes as avjax's, as a speed reference.

Only `benchmarks/train_step.py` imports this, and only when `torch` is
importable (the `bench` extra): nothing in avjax or its tests needs torch.

The same network as avjax.models.ave at paper scale: two VGG towers of four
[conv3x3-BN-ReLU] x 2 blocks (first conv stride 2, 2x2 max-pool between blocks),
global max pooling, FC-ReLU-FC 128-D L2-normalised embeddings, the 1->2 distance
calibration, AVC softmax cross-entropy plus symmetric InfoNCE, Adam. The update
also does what avjax's does on the device: uint8 frames to [0, 1] floats, a
random flip and brightness/contrast jitter.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
  return [nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False),
          nn.BatchNorm2d(cout, momentum=0.1), nn.ReLU(inplace=True)]


class VGGSubnet(nn.Sequential):
  def __init__(self, cin: int, widths=(64, 128, 256, 512), first_stride: int = 2):
    layers, c = [], cin
    for i, w in enumerate(widths):
      layers += _block(c, w, first_stride if i == 0 else 1) + _block(w, w, 1)
      if i < len(widths) - 1:
        layers.append(nn.MaxPool2d(2, 2))
      c = w
    super().__init__(*layers)


class Head(nn.Sequential):
  def __init__(self, cin: int = 512, dim: int = 128):
    super().__init__(nn.Linear(cin, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


class AVENet(nn.Module):
  def __init__(self):
    super().__init__()
    self.vision, self.audio = VGGSubnet(3), VGGSubnet(1)
    self.vision_head, self.audio_head = Head(), Head()
    self.calibration = nn.Linear(1, 2)

  def forward(self, frames, spectrogram):
    v = F.normalize(self.vision_head(torch.amax(self.vision(frames), dim=(2, 3))), dim=-1)
    a = F.normalize(self.audio_head(torch.amax(self.audio(spectrogram), dim=(2, 3))), dim=-1)
    distance = torch.sqrt(((v - a) ** 2).sum(-1, keepdim=True) + 1e-12)
    return self.calibration(distance), v, a


def _augment(frames_u8: torch.Tensor, flip, brightness, contrast) -> torch.Tensor:
  x = frames_u8.float() / 255.0
  x = torch.where(flip[:, None, None, None], x.flip(-1), x)
  mean = x.mean(dim=(1, 2, 3), keepdim=True)
  return ((x - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]).clamp(0, 1)


def _loss(logits, v, a, label, temperature: float = 0.1):
  avc = F.cross_entropy(logits, label)
  pos = label.bool()
  sim = v[pos] @ a[pos].T / temperature  # InfoNCE over the positive pairs
  target = torch.arange(sim.shape[0])
  return avc + 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def time_update(batch: int, crop: int, spec_shape: tuple[int, int], steps: int,
                channels_last: bool, threads: int | None = None) -> float:
  """Seconds per Adam update on random data, after two warm-up steps."""
  return time_steps(make_update(batch, crop, spec_shape, channels_last, threads), steps)


def time_steps(step, steps: int) -> float:
  """Seconds per call of `step` (PyTorch runs eagerly: each call has finished)."""
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - t) / steps


def make_update(batch: int, crop: int, spec_shape: tuple[int, int], channels_last: bool,
                threads: int | None = None):
  """A function that runs one Adam update on fixed random data, warmed up."""
  if threads:
    torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = AVENet()
  memory_format = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=memory_format)
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)
  frames = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8).to(
      memory_format=memory_format)
  # |STFT| windows [B, T, F] and gains, logged in the step as avjax's reader ships them.
  magnitude = torch.empty(batch, spec_shape[1], spec_shape[0]).exponential_()
  gain = torch.empty(batch).uniform_(0.5, 2.0)
  flip = torch.rand(batch) < 0.5
  brightness = torch.empty(batch).uniform_(-0.15, 0.15)
  contrast = torch.empty(batch).uniform_(0.7, 1.3)
  label = torch.arange(batch) % 2

  def step():
    opt.zero_grad(set_to_none=True)
    x = _augment(frames, flip, brightness, contrast).contiguous(memory_format=memory_format)
    spec = torch.log(magnitude * gain[:, None, None] + 1e-5).transpose(1, 2)[:, None]
    logits, v, a = model(x, spec.contiguous(memory_format=memory_format))
    loss = _loss(logits, v, a, label)
    loss.backward()
    opt.step()
    return loss

  model.train()
  for _ in range(2):
    step()
  return step
