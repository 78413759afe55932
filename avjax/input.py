"""From a config to per-host readers and global, mesh-sharded batches."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import default_dataset
from data_pipelines import reader as reader_lib

# Host-only fields: strings or bookkeeping the models never see.
HOST_ONLY = ("video_id", "audio_video_id", "audio_start", "fps", "filename")


def data_dir(data_config, split: str) -> str:
  """config.data.dir, or the embedded default dataset with `split` built (on first use)."""
  if data_config.dir:
    return data_config.dir
  if split not in default_dataset.SPLITS:
    raise ValueError(f"split {split!r}: the embedded default dataset has only "
                     f"{sorted(default_dataset.SPLITS)}; set config.data.dir for other data")
  s = data_config.spectrogram
  return default_dataset.ensure(sample_rate=data_config.sample_rate,
                                frame_size=data_config.resize, fps=data_config.fps,
                                splits=(split,),
                                stft=(s.win_length, s.hop_length, s.n_fft)
                                if data_config.stored_spectrogram else None)


def make_reader(data_config, split: str, *, global_batch: int, seed: int) -> reader_lib.Reader:
  if global_batch % jax.process_count():
    raise ValueError(f"batch size {global_batch} is not divisible by {jax.process_count()} hosts")
  files = reader_lib.resolve_files(data_dir(data_config, split), split)
  return reader_lib.Reader(files, spec=reader_lib.reader_spec_from_config(data_config),
                           batch_size=global_batch // jax.process_count(), seed=seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count())


def to_global(local_batch: dict, sharding) -> dict:
  """Host-local numpy batch -> global jax.Arrays sharded along the batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items() if k not in HOST_ONLY}


def dummy_inputs(data_config, batch: int = 1):
  """Zero frames and spectrogram of the shapes `data_config` gives (for model.init)."""
  spec = reader_lib.reader_spec_from_config(data_config).spectrogram
  frames = jnp.zeros((batch, data_config.crop, data_config.crop, 3), jnp.float32)
  spectrogram = jnp.zeros((batch, *spec.shape, 1), jnp.float32)
  return frames, spectrogram


def init_variables(model, data_config, rng: jax.Array) -> dict:
  """A model's variables at random initialisation from `rng` (the trainer's init
  uses the same rule, so PRNGKey(config.seed) gives the run's step-0 weights)."""
  init_rng, _ = jax.random.split(rng)
  return model.init(init_rng, *dummy_inputs(data_config), train=False)
