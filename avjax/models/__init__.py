"""Model families, built by name from `config.model`, and the contract of their outputs.

Every model is a flax.linen module called as `model(frames, audio, train)`
(frames [B,H,W,3] float32 normalised, or [B,T,H,W,3] for a model whose class
attribute `frame_input` is "frame_stack"; audio the batch key the model's class
attribute `audio_input` names, by default `spectrogram` [B,F,T,1] float32,
SoundNet's `waveform` [B,samples]; either may be None for one modality's
outputs) that returns a dict with keys from OUTPUTS, and declares the kind of
correspondence head it has (CORRESPONDENCE) as the class attribute
`correspondence`. Losses and evaluators read these keys, never
a model's internals.
"""
from __future__ import annotations

import jax.numpy as jnp

from avjax.models import conv as conv_lib

from avjax.models.ambient import AmbientSound
from avjax.models.ave import AVENet
from avjax.models.avol import AVOLNet
from avjax.models.classifier import FrameClassifier
from avjax.models.l3 import L3Net
from avjax.models.mae import MAE
from avjax.models.pretext import (ColourizationNet, ExemplarNet, RelativePositionNet,
                                  RotationNet, SimCLRNet)
from avjax.models.pretext_video import FrameOrderNet
from avjax.models.selavi import SeLaVi
from avjax.models.separation import SeparationNet
from avjax.models.sonorization import SonorizationNet
from avjax.models.soundnet import SoundNet
from avjax.models.sync import SyncNet

MODELS = {"l3": L3Net, "avenet": AVENet, "avolnet": AVOLNet, "selavi": SeLaVi,
          "ambient": AmbientSound, "frame_classifier": FrameClassifier, "soundnet": SoundNet,
          "sync": SyncNet, "rotation": RotationNet,
          "relative_position": RelativePositionNet, "simclr": SimCLRNet,
          "frame_order": FrameOrderNet, "colourization": ColourizationNet, "mae": MAE,
          "exemplar": ExemplarNet, "separation": SeparationNet, "sonorization": SonorizationNet}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

CORRESPONDENCE = {
    "softmax": "`logits` [B, 2]: class 1 = the audio belongs to the frame (L3-Net, AVE-Net)",
    "sigmoid": "`logits` [B]: > 0 = the audio belongs to the frame (AVOL-Net, max over the map), "
               "or is in sync with the frames (the sync network)",
    None: "no correspondence head (AV contrastive towers, SeLaVi, ambient sound, the "
          "frame-only pretext tasks)",
}

OUTPUTS = {
    "logits": "correspondence logits, per the model's `correspondence` kind",
    "frame_embedding": "[B, D] L2-normalised frame embedding",
    "audio_embedding": "[B, D] L2-normalised audio embedding",
    "frame_features": "[B, C] max-pooled last conv layer of the vision net (probes)",
    "audio_features": "[B, C] max-pooled last conv layer of the audio net (probes)",
    "frame_feature_map": "[B, h, w, C] last conv layer of the vision net",
    "frame_location_embeddings": "[B, h, w, D] the frame embedding head at every location",
    "frame_embedding_map": "[B, h, w, D] AVOL-Net's L2-normalised per-location embeddings",
    "heatmap": "[B, h, w] AVOL-Net's sigmoid localisation map, or the sync network's CAM "
               "averaged over time",
    "cam": "[B, t, h, w] the sync network's class activation map (its logit layer at every "
           "location of the last conv layer)",
    "fused_features": "[B, C] the sync network's last conv layer, pooled (audio and video fused)",
    "distance": "[B] AVE-Net's embedding distance",
    "frame_head_logits": "[heads, B, K] SeLaVi's cluster-head logits (frame)",
    "audio_head_logits": "[heads, B, K] SeLaVi's cluster-head logits (audio)",
    "frame_cluster_logits": "[B, K] head 0 of the frame cluster heads (clustering evaluator)",
    "audio_cluster_logits": "[B, K] head 0 of the audio cluster heads",
    "modality_keep": "[B, 2] SeLaVi's modality drop-out draws (frame, audio)",
    "sound_logits": "[B, targets] the ambient-sound network's prediction of the clip's sound "
                    "cluster (softmax) or code bits (sigmoid), from the frame alone",
    "frame_class_logits": "[B, classes] AVE-Net's shared classifier on the frame embedding, "
                          "or the frame classifier's (SoundNet's teacher)",
    "audio_step_logits": "[teachers] of [B, steps, classes]: SoundNet's conv8 head per teacher",
    "audio_class_logits": "[B, classes] AVE-Net's shared classifier on the audio embedding",
    "rotation_logits": "[4, B, 4] the rotation network's logits for each frame turned 0, 90, 180 "
                       "and 270 degrees",
    "relpos_logits": "[B, 8] the relative-position network's logits for where the neighbour "
                     "patch lies (pretext.RELPOS_OFFSETS)",
    "relpos_labels": "[B] where the neighbour patch was taken (its label)",
    "colour_logits": "[B, h, w, Q] the colourization network's ab-bin logits at each location",
    "colour_targets": "[B, h, w, Q] the soft-encoded ab bins of the frame's colour there",
    "colour_weights": "[B, h, w] each location's class-rebalancing weight",
    "mae_predictions": "[B, N, p*p*3] MAE's reconstruction of every patch",
    "mae_targets": "[B, N, p*p*3] every patch's pixels, normalised per patch",
    "mae_mask": "[B, N] 1 where MAE hid the patch from its encoder",
    "exemplar_logits": "[B, N] the exemplar network's surrogate-class logits",
    "exemplar_ids": "[B] the bank row (surrogate class) each transformed exemplar came from",
    "simclr_projections": "[2, B, D] L2-normalised projections of two augmented views",
    "order_logits": "[B, K] the frame-order network's logits: forwards or not, in order or not "
                    "(K = 2), or which of K sub-sequences is odd",
    "order_labels": "[B] the frame-order task's label of each example",
    "order_weights": "[B] which examples the frame-order loss counts (shuffle & learn: the "
                     "batch's higher-motion stacks)",
    "separation_logits": "[B, T, F] the separation network's mask logits, per STFT bin, of the "
                         "sound the frame shows in the mixture",
    "separation_targets": "[B, T, F] mix-and-separate's binary target: 1 where the clip's own "
                          "|STFT| is at least every other mixed clip's (training only)",
    "separation_weights": "[B, T, F] each bin's loss weight, log(1 + |mixture|) clipped "
                          "(training only)",
    "separation_waveform": "[B, samples] the frame's sound separated from the mixture: the "
                           "sigmoid mask times its STFT, inverted (inference only)",
    "separation_location_logits": "[B, h, w, T, F] the mask logits of every location's frame "
                                  "vector (inference only: avjax-separate's objects)",
    "sonorization_predictions": "[B, S, D] the sonorization network's sound features "
                                "(models/sonorization.py: steps_per_frame steps per frame)",
    "sonorization_targets": "[B, S, D] the same features of the window's own sound",
    "cluster_prior": "[K] SeLaVi's relative target cluster sizes, largest first (absent: equal)",
}


def audio_input(model) -> str:
  """The batch key a model takes as its audio: "spectrogram" or "waveform"."""
  return getattr(type(model), "audio_input", "spectrogram")


def frame_input(model) -> str:
  """The batch key a model takes as its frames: "frames" or "frame_stack"."""
  return getattr(type(model), "frame_input", "frames")


def build(model_config):
  """config.model -> flax module. Every key but `name`, `dtype`, `conv` and `remat` is a
  module field."""
  kwargs = dict(model_config)
  name = kwargs.pop("name")
  if name not in MODELS:
    raise ValueError(f"config.model.name: unknown model {name!r}; known: {sorted(MODELS)}")
  dtype = kwargs.pop("dtype", "float32")
  if dtype not in DTYPES:
    raise ValueError(f"config.model.dtype: {dtype!r} is not one of {sorted(DTYPES)}")
  cls = MODELS[name]
  fields = set(cls.__dataclass_fields__) - {"parent", "name"}
  conv = kwargs.pop("conv", "xla")
  conv_lib.ops(conv)  # an unknown or unusable choice fails here, in one line
  if "conv" in fields:  # the VGG towers' models; the others' convolutions are XLA's
    kwargs["conv"] = conv
  remat = bool(kwargs.pop("remat", False))
  if remat and "remat" not in fields:
    raise ValueError(f"config.model.remat: {cls.__name__} has no rematerialisation "
                     "(its activations are small)")
  if "remat" in fields:
    kwargs["remat"] = remat
  unknown = set(kwargs) - fields
  if unknown:
    raise ValueError(f"config.model: keys {sorted(unknown)} are not fields of {cls.__name__} "
                     f"(fields: {sorted(fields)})")
  return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()},
             dtype=DTYPES[dtype])
