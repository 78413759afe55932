"""Self-supervision from frame order: the video pretext baselines, on the same VGG
frame tower (`vision_widths`) applied to each frame of the reader's frame stacks
[B, T, H, W, 3] (config.data.frame_stack, as the sync network reads them).

- Arrow of time (Pickup et al., CVPR 2014; Wei et al., CVPR 2018): each stack
  forwards or reversed, drawn per example; the frames' pooled features, in
  order, through two layers say which (losses.order_xent).
- Shuffle & Learn (Misra, Zitnick & Hebert, ECCV 2016): five frames a < b < c <
  d < e of a stack; the triplet (b, c, d) is in order, (b, a, d) or (b, e, d) is
  not; the three frames' features, concatenated, through two layers say which.
  As the paper samples from high-motion windows, only the batch's stacks with
  more motion (frame differences) than its median count in the loss.
- Odd-One-Out (Fernando et al., CVPR 2017): N sub-sequences of L frames of a
  stack, one with its frames out of order; each is encoded by the sum of its
  consecutive frames' feature differences (its last frame's features less its
  first's, so only those two are computed), and the N encodings, concatenated,
  through two layers say which one is odd (an N-way softmax).

Their draws come from the step's "dropout" key. Evaluation (train=False) runs
the tower on each stack's middle frame: `frame_features` are what the probes read.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import vgg

TASKS = ("arrow_of_time", "shuffle_and_learn", "odd_one_out")


def reverse_some(key, stacks):
  """-> (stacks with some reversed in time, labels [B]: 1 = forwards)."""
  forwards = jax.random.bernoulli(key, 0.5, (stacks.shape[0],))
  out = jnp.where(forwards[:, None, None, None, None], stacks, stacks[:, ::-1])
  return out, forwards.astype(jnp.int32)


def shuffle_and_learn_indices(key, batch: int, length: int):
  """-> (frame indices [B, 3], labels [B]: 1 = in order). Five sorted distinct
  frames a < b < c < d < e of each stack; half the triplets are (b, c, d), the
  others (b, a, d) or (b, e, d), as the paper builds its negatives."""
  if length < 5:
    raise ValueError(f"shuffle & learn needs stacks of at least 5 frames; got {length}")
  k_pick, k_label, k_side = jax.random.split(key, 3)
  scores = jax.random.uniform(k_pick, (batch, length))
  five = jnp.sort(jnp.argsort(scores, axis=1)[:, :5], axis=1)   # a, b, c, d, e
  in_order = jax.random.bernoulli(k_label, 0.5, (batch,))
  outside = jnp.where(jax.random.bernoulli(k_side, 0.5, (batch,)), five[:, 0], five[:, 4])
  middle = jnp.where(in_order, five[:, 2], outside)
  return jnp.stack([five[:, 1], middle, five[:, 3]], axis=1), in_order.astype(jnp.int32)


def motion(stacks):
  """[B, T, H, W, C] -> [B]: mean absolute difference of consecutive frames."""
  return jnp.mean(jnp.abs(stacks[:, 1:] - stacks[:, :-1]), axis=(1, 2, 3, 4))


def above_median(values):
  """[B] -> [B] float32 weights: 1 for values above the batch's median, else 0."""
  return (values > jnp.median(values)).astype(jnp.float32)


def odd_one_out_indices(key, batch: int, length: int, clips: int, clip_length: int):
  """-> (frame indices [B, N, L], labels [B]: which of the N sub-sequences is odd).
  Each sub-sequence is L sorted distinct frames of the stack; the odd one's are
  put in a random order other than the sorted one."""
  if length < clip_length or clip_length < 3:
    raise ValueError(f"odd-one-out: sub-sequences of {clip_length} frames (at least 3) from "
                     f"stacks of {length}")
  k_pick, k_odd, k_perm = jax.random.split(key, 3)
  scores = jax.random.uniform(k_pick, (batch, clips, length))
  seqs = jnp.sort(jnp.argsort(scores, axis=-1)[..., :clip_length], axis=-1)
  odd = jax.random.randint(k_odd, (batch,), 0, clips)
  # A random order of the odd one's frames that is never the sorted one: a random
  # permutation, then swapped with its reverse when it came out sorted.
  perm = jnp.argsort(jax.random.uniform(k_perm, (batch, clip_length)), axis=-1)
  identity = jnp.all(perm == jnp.arange(clip_length), axis=-1, keepdims=True)
  perm = jnp.where(identity, perm[:, ::-1], perm)
  shuffled = jnp.take_along_axis(seqs[jnp.arange(batch), odd], perm, axis=-1)
  seqs = seqs.at[jnp.arange(batch), odd].set(shuffled)
  return seqs, odd


def sequence_ends(indices):
  """[..., L] frame indices of sub-sequences -> [..., 2]: each one's first and last."""
  return jnp.stack([indices[..., 0], indices[..., -1]], axis=-1)


def sum_of_differences(ends):
  """[..., 2, C] features of a sub-sequence's first and last frames -> [..., C]: the
  sum of its consecutive frames' feature differences, which telescopes to the last
  less the first. Only the two ends go through the tower: the middle frames' features
  would cancel (a third of the tower's work at L = 3, half at the paper's L = 4)."""
  return ends[..., 1, :] - ends[..., 0, :]


def gather_frames(stacks, indices):
  """stacks [B, T, ...], indices [B, ...] -> frames [B, ..., H, W, C]."""
  return jax.vmap(lambda s, i: s[i])(stacks, indices)


class FrameOrderNet(vgg.Towers):
  frame_input: ClassVar[str] = "frame_stack"
  correspondence: ClassVar[str | None] = None
  task: str = "arrow_of_time"  # one of TASKS
  hidden: int = 512
  clips: int = 6        # odd-one-out: N sub-sequences, and their length L
  clip_length: int = 4

  @nn.compact
  def __call__(self, stacks, spectrogram, train: bool = False):
    del spectrogram
    if stacks is None:
      return {}
    if self.task not in TASKS:
      raise ValueError(f"config.model.task: {self.task!r} is not one of {', '.join(TASKS)}")
    b, t = stacks.shape[:2]
    tower = self.subnet(self.vision_widths, "vision")
    fc1 = nn.Dense(self.hidden, dtype=self.dtype, name="fc1")
    classes = self.clips if self.task == "odd_one_out" else 2
    fc2 = nn.Dense(classes, dtype=self.dtype, name="fc2")

    def features(frames):  # [..., H, W, C] -> [..., C]
      lead = frames.shape[:-3]
      pooled = vgg.global_max_pool(tower(frames.reshape(-1, *frames.shape[-3:]), train))
      return pooled.reshape(*lead, pooled.shape[-1])

    if not train:  # the middle frame (the head runs on it so that init makes it)
      middle = features(stacks[:, t // 2])
      width = {"arrow_of_time": t, "shuffle_and_learn": 3, "odd_one_out": self.clips}[self.task]
      fc2(nn.relu(fc1(jnp.tile(middle, (1, width)))))
      return {"frame_features": middle.astype(jnp.float32)}
    key = self.make_rng("dropout")
    weights = jnp.ones((b,), jnp.float32)
    if self.task == "arrow_of_time":
      shown, labels = reverse_some(key, stacks)
      x = features(shown).reshape(b, -1)
    elif self.task == "shuffle_and_learn":
      indices, labels = shuffle_and_learn_indices(key, b, t)
      x = features(gather_frames(stacks, indices)).reshape(b, -1)
      weights = above_median(motion(stacks))
    else:
      indices, labels = odd_one_out_indices(key, b, t, self.clips, self.clip_length)
      x = sum_of_differences(features(gather_frames(stacks, sequence_ends(indices))))
      x = x.reshape(b, -1)
    logits = fc2(nn.relu(fc1(x)))
    return {"order_logits": logits.astype(jnp.float32), "order_labels": labels,
            "order_weights": weights}
