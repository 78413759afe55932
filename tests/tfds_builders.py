"""TFDS builders shared by test modules (test_tfds_probe, test_cloud_storage).

TFDS registers a builder class by name when it is defined, so it is defined in
this one module, which every test imports by the same name, not in a test
module that pytest imports under a name of its own.
"""
import io
import wave

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import synthetic

RATE = 16000  # the files' rate; the tiny model's is 8 kHz, so the reader resamples
PER_CLASS = {"train": 8, "test": 4}


def write_wavs(root, split: str) -> None:
  rng = np.random.default_rng(0 if split == "train" else 1)
  (root / split).mkdir(parents=True)
  for cls, name in enumerate(synthetic.CLASSES):
    for i in range(PER_CLASS[split]):
      x = 0.3 * synthetic.class_sound(cls, int(1.5 * RATE), RATE, rng)
      with wave.open(str(root / split / f"{name}_{i}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


class AvjaxTones(tfds.core.GeneratorBasedBuilder):
  """Each embedded-dataset class's timbre, at random pitches, as wav files."""
  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Written by write_wavs."

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "audio": tfds.features.Audio(sample_rate=RATE, dtype=np.int16),
        "label": tfds.features.ClassLabel(names=list(synthetic.CLASSES))}))

  def _split_generators(self, dl_manager):
    return {s: self._generate_examples(dl_manager.manual_dir / s) for s in PER_CLASS}

  def _generate_examples(self, folder):
    for path in sorted(folder.glob("*.wav")):  # an epath: local, or gs:// (test_cloud_storage)
      with wave.open(io.BytesIO(path.read_bytes())) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
      yield path.name, {"audio": samples, "label": path.name.rsplit("_", 1)[0]}
