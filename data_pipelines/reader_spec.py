"""What the reader needs from `config.data`, with its checks, apart from the
reader's TensorFlow code: the config check builds one before any data is
touched, and a bad command line then fails without importing TensorFlow."""
from __future__ import annotations

import dataclasses

from data_pipelines import spectrogram as spectrogram_lib


@dataclasses.dataclass(frozen=True)
class ReaderSpec:
  """What the reader needs from `config.data`, as a plain frozen record."""
  spectrogram: spectrogram_lib.SpectrogramSpec
  fps: float = 25.0                 # for shards that do not store their frame rate
  resize: int = 256                 # shorter side before cropping
  crop: int = 224
  negative_fraction: float = 0.5
  # "stream", "in_batch" (another clip's window), or "shifted" (this clip's own
  # window at least `min_shift` seconds away: synchronisation; label 0 = out of sync).
  negatives: str = "stream"
  min_shift: float = 0.0
  # Shifted negatives: each clip read gives both its examples, in sync and shifted,
  # one after the other in the batch (the paper's both_examples): half the clips
  # decoded per example, the costly part of a frame stack's reader.
  both_examples: bool = False
  negatives_on_grid: bool = True
  shuffle_buffer: int = 1024
  flip: bool = True
  colour_jitter: float = 0.3        # 0 disables
  # Zoom-out: each training frame shrunk by a factor in [1 - zoom_out, 1] onto a
  # canvas of its mean colour (avjax.frames.zoom_out), so objects appear smaller
  # than the data shows them; 0 disables.
  zoom_out: float = 0.0
  gain_db: float = 3.0              # random gain range (+/-) in dB; 0 disables
  num_classes: int = 0              # 0: from the manifest
  # Slice windows out of the |STFT| that prepare stored, instead of parsing the
  # waveform and recomputing it; the Reader turns it on where the shards allow.
  stored_spectrogram: bool = False
  # Training pairs drawn from each record read (different frames and windows).
  # Reading, checking and parsing a record costs more than one pair's decode;
  # a 10 s paper-scale clip has ~9 distinct 1 s windows to give.
  examples_per_clip: int = 1
  # Join each training clip's ambient-sound target (SPLIT/sound_targets.json) into
  # the batch as `sound_target` (data_pipelines.sound_targets).
  sound_targets: str = ""   # "", "clusters" or "bits"
  sound_k: int = 0          # clusters, or bits
  # The audio the batches carry: "spectrogram" (log |STFT|) or "waveform" (the
  # raw window, SoundNet's input; read from the stored waveform).
  audio: str = "spectrogram"
  # n > 0: training and evaluation examples also carry `frame_stack`, the frames
  # at the centres of n equal segments of the audio window (SoundNet's teachers
  # label each of its n output steps from one).
  frame_stack: int = 0
  # tf.data's autotuning of each stage's parallelism. Off, every parallel stage may
  # use all of the host's cores (`reader.dataset_options`); benchmarks/pipeline.py
  # measures what its bookkeeping costs.
  autotune: bool = False
  # Where records come from: a name in data_pipelines/records.py's SOURCES.
  records: str = "tfrecord"

  @property
  def shortest_clip(self) -> float:
    """Seconds a clip must hold: the audio window and, with shifted negatives,
    the shift on either side of it."""
    return self.spectrogram.seconds + (2 * self.min_shift if self.negatives == "shifted" else 0.0)

  def __post_init__(self):
    if self.records not in ("tfrecord", "spans"):
      raise ValueError(f"config.data.records must be 'tfrecord' or 'spans', got {self.records!r}")
    if self.audio not in ("spectrogram", "waveform"):
      raise ValueError(f"config.data.audio must be 'spectrogram' or 'waveform', got {self.audio!r}")
    if self.audio == "waveform" and self.stored_spectrogram:
      raise ValueError("config.data.audio='waveform' reads the stored waveform: set "
                       "config.data.stored_spectrogram=False")
    if self.frame_stack < 0:
      raise ValueError(f"config.data.frame_stack must be >= 0, got {self.frame_stack}")
    if self.negatives not in ("stream", "in_batch", "shifted"):
      raise ValueError("config.data.negatives must be 'stream', 'in_batch' or 'shifted', got "
                       f"{self.negatives!r}")
    if self.negatives == "shifted" and not self.min_shift > 0:
      raise ValueError(f"config.data.min_shift must be > 0 with shifted negatives, got {self.min_shift}")
    if self.both_examples and (self.negatives != "shifted" or self.negative_fraction != 0.5):
      raise ValueError("config.data.both_examples pairs each clip with its own window and its "
                       "shifted one: it needs negatives='shifted' and negative_fraction=0.5, got "
                       f"{self.negatives!r} and {self.negative_fraction}")
    if not 0.0 <= self.zoom_out < 1.0:
      raise ValueError(f"config.data.zoom_out must be in [0, 1), got {self.zoom_out}")
    if not 0.0 <= self.negative_fraction < 1.0:
      raise ValueError(f"config.data.negative_fraction must be in [0, 1), got {self.negative_fraction}")
    if self.examples_per_clip < 1:
      raise ValueError(f"config.data.examples_per_clip must be >= 1, got {self.examples_per_clip}")
