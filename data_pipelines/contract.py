"""The batch contract: every key a reader batch carries, its dtype, shape and meaning.

The reader (data_pipelines/reader.py) produces host batches of these keys;
avjax/input.py ships the device keys to the mesh, avjax/step_inputs.py turns a
training batch's uint8 crops, |STFT| windows and augmentation draws into the
models' inputs inside the jitted step, and models and losses read the rest.
Shapes are per example (the batch axis comes first; with config.data.both_examples
a training batch's FRAME_KEYS hold one row per clip, B / 2, for the examples at
rows 2i and 2i + 1, and the step repeats them); names in them are sizes
fixed by the reader's spec: `crop` (frame side), `bins` and `frames` (the
log-spectrogram's), `classes` (the manifest's labels).

A method that needs another key (a cluster target, a time shift) adds it here
first; `check` holds real batches to this table in tests/test_contract.py.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

TRAIN, EVAL = "train", "eval"


@dataclasses.dataclass(frozen=True)
class Key:
  dtype: str                 # numpy dtype name; "string" for bytes
  shape: tuple               # per example: ints or size names
  meaning: str
  modes: tuple = (TRAIN, EVAL)
  device: bool = True        # False: host bookkeeping, never sent to the accelerator
  augmentation: bool = False  # a random draw that the jitted step applies (avjax.step_inputs)
  optional: bool = False     # only in the batches of a method that asks for it
  # The audio input: a batch carries the spectrogram keys or the waveform keys
  # (config.data.audio), so each is required only in the absence of the other.
  audio: str = ""            # "spectrogram" or "waveform": the kind of audio this key serves


KEYS: dict[str, Key] = {
    "frames": Key("uint8", ("crop", "crop", 3),
                  "an RGB crop; avjax.frames turns it into normalised float32 in the step"),
    "aug_flip": Key("bool", (), "flip this frame horizontally", (TRAIN,), augmentation=True),
    "aug_brightness": Key("float32", (), "brightness offset on [0, 1] RGB", (TRAIN,),
                          augmentation=True),
    "aug_contrast": Key("float32", (), "contrast factor around the frame's mean", (TRAIN,),
                        augmentation=True),
    "aug_saturation": Key("float32", (), "saturation factor (blend with grey)", (TRAIN,),
                          augmentation=True),
    "aug_zoom": Key("float32", (3,), "zoom-out: scale of the frame on its canvas, and its "
                    "offset down and across as fractions of the room left",
                    (TRAIN,), augmentation=True, optional=True),
    "frame_stack": Key("uint8", ("stack", "crop", "crop", 3),
                       "the frames at the centres of config.data.frame_stack equal segments of "
                       "the audio window, cropped as `frames` (SoundNet's teacher inputs)",
                       optional=True),
    "spectrogram": Key("float32", ("bins", "frames", 1),
                       "log |STFT| of the 1 s window paired with the frame", (EVAL,),
                       audio="spectrogram"),
    # Training ships |STFT| and its gain, and the step takes the log (avjax/step_inputs.py):
    # on the host the log was a quarter of the reader's work per example.
    "stft_magnitude": Key("float32", ("frames", "shipped_bins"),
                          "|STFT| of the 1 s window paired with the frame, before its gain; "
                          "the step turns it into `spectrogram`. Its bins past `bins` are zero "
                          "padding (reader.shipped_bins), which the step drops", (TRAIN,),
                          audio="spectrogram"),
    "aug_gain": Key("float32", (), "the audio window's random gain (+-config.data.gain_db), "
                    "a factor on stft_magnitude", (TRAIN,), augmentation=True,
                    audio="spectrogram"),
    "waveform": Key("float32", ("samples",), "the raw audio window paired with the frame, "
                    "gain applied (config.data.audio='waveform': SoundNet's input)", audio="waveform"),
    "label": Key("int32", (), "1 = the audio comes from the frame's video (with shifted "
                 "negatives: 1 = in sync)", (TRAIN,)),
    "video_id": Key("int32", (), "hash of the frame's source file", device=False),
    "clip_id": Key("int32", (), "hash of the frame's clip (file and start time; "
                   "data_pipelines.sound_targets.clip_key)", (TRAIN,), device=False),
    "sound_target": Key("int32", ("target_dims",), "the frame's clip's ambient-sound target: "
                        "[1] cluster index, or [bits] 0/1 (config.data.sound_targets)", (TRAIN,),
                        optional=True),
    "audio_video_id": Key("int32", (), "hash of the audio's source file", (TRAIN,), device=False),
    "audio_start": Key("float32", (), "start of the audio window in its clip, seconds",
                       device=False),
    "audio_shift": Key("float32", (), "seconds the audio window is moved from the frames' "
                       "(shifted negatives; 0 for a positive)", (TRAIN,), device=False,
                       optional=True),
    "fps": Key("float32", (), "frame rate of the clip", device=False),
    # Evaluation: every clip once, in file order, padded to whole batches.
    "neg_spectrogram": Key("float32", ("bins", "frames", 1),
                           "the next clip's window: this frame's negative pair", (EVAL,),
                           audio="spectrogram"),
    "neg_waveform": Key("float32", ("samples",), "neg_spectrogram's window as a waveform "
                        "(config.data.audio='waveform')", (EVAL,), audio="waveform"),
    "neg_label": Key("int32", (), "1 if the next clip is of the same video (with shifted "
                     "negatives: 0, the clip's own window out of sync)", (EVAL,)),
    "labels": Key("int32", ("classes",), "multi-hot class labels of the frame's clip (zeros: "
                  "none); the labelled baselines' losses read them, self-supervised ones never do"),
    "box": Key("float32", (4,), "sounding-object box in the crop (ymin, xmin, ymax, xmax) "
               "in 0..1; -1s when the clip has none", (EVAL,)),
    "filename": Key("string", (), "the clip's source file", (EVAL,), device=False),
    "clip_index": Key("int32", (), "the clip's position in the split (with evaluation windows, "
                      "the clip the window belongs to)", (EVAL,), device=False),
    "audio_offset": Key("float32", (), "seconds the audio window is moved from the frames' (0 "
                        "but in the sync offset evaluation)", (EVAL,), device=False),
    "mask": Key("float32", (), "1 = a real clip, 0 = padding of the last batch", (EVAL,)),
}


def keys(mode: str) -> dict[str, Key]:
  return {name: k for name, k in KEYS.items() if mode in k.modes}


AUGMENT_KEYS = tuple(name for name, k in KEYS.items() if k.augmentation)
HOST_ONLY = tuple(name for name, k in KEYS.items() if not k.device)
# What a training example's frame brings: its crops and their draws.
FRAME_KEYS = ("frames", "frame_stack") + tuple(n for n in AUGMENT_KEYS if not KEYS[n].audio)
AUDIO_KEYS = {kind: tuple(n for n, k in KEYS.items() if k.audio == kind)
              for kind in ("spectrogram", "waveform")}


def frame_rows(batch: int, both_examples: bool) -> int:
  """Rows of a training batch's FRAME_KEYS: one per clip, half the examples where
  each clip gives both its examples (config.data.both_examples)."""
  return batch // 2 if both_examples else batch


def violations(batch: Mapping[str, np.ndarray], mode: str, sizes: Mapping[str, int]) -> list[str]:
  """What in a host batch breaks the contract (empty: nothing); `sizes` gives
  the named sizes, `batch` its batch size as `sizes["batch"]`, and where the
  frame keys hold fewer rows (both_examples) their count as `sizes["frame_rows"]`."""
  wanted = keys(mode)
  audio = "waveform" if "waveform" in batch else "spectrogram"
  absent_audio = {k for kind, names in AUDIO_KEYS.items() if kind != audio for k in names}
  out = [f"missing {k!r}" for k, key in wanted.items()
         if k not in batch and not key.optional and k not in absent_audio]
  out += [f"unexpected {k!r} beside {audio!r}" for k in absent_audio if k in batch]
  out += [f"unexpected {k!r}" for k in batch if k not in wanted]
  for name, k in wanted.items():
    if name not in batch:
      continue
    v = np.asarray(batch[name])
    rows = sizes.get("frame_rows", sizes["batch"]) if name in FRAME_KEYS else sizes["batch"]
    shape = (rows, *(sizes[d] if isinstance(d, str) else d for d in k.shape))
    if v.shape != shape:
      out.append(f"{name!r}: shape {v.shape}, expected {shape}")
    kind_ok = v.dtype.kind in "SO" if k.dtype == "string" else v.dtype == np.dtype(k.dtype)
    if not kind_ok:
      out.append(f"{name!r}: dtype {v.dtype}, expected {k.dtype}")
  return out
