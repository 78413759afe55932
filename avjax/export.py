"""avjax-export: a workdir's checkpoint -> a TensorFlow SavedModel of each tower.

  avjax-export --workdir=W --output=OUT [--checkpoint=best|latest|STEP]
      [--layer=embedding|features] [--hop=0.1] [--platforms=cpu,cuda,tpu] [--tflite]

OUT/audio/ (a model with an audio tower) serves
  embed_audio(waveform float32 [n, samples] at its sample_rate)
      -> {"embedding": [n, T, D], "timestamps": [T] seconds}
     windows of the training length centred on 0, hop, 2*hop..., zero-padded at
     the ends: what `avjax-embed audio` gives for the same waveform;
  embed_windows(windows float32 [N, window_samples]) -> {"embedding": [N, D]}
     the tower on windows the caller cut (long audio, streamed);
OUT/image/ (a model with a frame tower) serves
  embed_frames(images uint8 [n, H, W, 3]) -> {"embedding": [n, D]}
     resized and centre-cropped as the evaluation reader does.
Each module carries sample_rate, window_samples, hop_samples and embedding_size
as integer variables, and OUT/export.json says the same for people.

The model is lowered by jax2tf with native serialisation (StableHLO inside
XlaCallModule) for every platform in --platforms, with XLA's own convolutions
(config.model.conv="xla"), so a CPU host exports for TPU and GPU. The
spectrogram and the crops are TensorFlow ops around it. Loading needs
TensorFlow only. --tflite also writes OUT/audio.tflite (embed_windows) when
TFLite converts it and gives the SavedModel's numbers; otherwise it says why.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

import numpy as np

from data_pipelines import fs

PLATFORMS = ("cpu", "cuda", "tpu")
TOWERS = ("audio", "image")
TFLITE_RTOL = 1e-3  # a float32 STFT against the SavedModel's float64 one


def hop_samples(hop_s: float, sample_rate: int) -> int:
  """The hop in samples; it must be whole, for windows that start on a sample."""
  hop = hop_s * sample_rate
  if hop < 1 or abs(hop - round(hop)) > 1e-6:
    raise ValueError(f"--hop={hop_s}: must be a whole number of samples at {sample_rate} Hz "
                     f"(it is {hop:g})")
  return int(round(hop))


def frame_windows(waveform, window: int, hop: int):
  """TF: [n, L] -> ([n, L // hop + 1, window] windows centred on 0, hop, 2*hop...,
  zero-padded at the ends, count): `avjax.embed.stream_windows`' windows, in-graph."""
  import tensorflow as tf
  count = tf.shape(waveform)[1] // hop + 1
  padded = tf.pad(waveform, [[0, 0], [window // 2, window]])
  return tf.signal.frame(padded, window, hop)[:, :count], count


def _converted(fn, variables, platforms: Sequence[str]):
  """jax2tf of fn(variables, x) with a polymorphic leading dimension; the
  variables become the module's tf.Variables (not constants in the graph)."""
  import jax
  import tensorflow as tf
  from jax.experimental import jax2tf
  tf_vars = tf.nest.map_structure(lambda a: tf.Variable(np.asarray(a), trainable=False),
                                  jax.tree.map(np.asarray, dict(variables)))
  converted = jax2tf.convert(fn, polymorphic_shapes=[None, "(b, ...)"], with_gradient=False,
                             native_serialization_platforms=tuple(platforms))
  return tf_vars, lambda x: converted(tf_vars, x)


def _int_variable(value: int):
  import tensorflow as tf
  return tf.Variable(int(value), trainable=False, dtype=tf.int64)


def audio_module(emb, platforms: Sequence[str], hop: int):
  """A tf.Module serving embed_audio and embed_windows for `emb`'s audio tower."""
  import tensorflow as tf
  from data_pipelines import spectrogram as spectrogram_lib
  spec, window = emb.spectrogram, emb.window_samples
  module = tf.Module()
  module.variables_tree, tower = _converted(emb.audio_fn, emb.variables, platforms)

  def model_input(windows, stft_dtype=tf.float64):
    if emb.audio_input == "waveform":
      return windows
    return tf.expand_dims(spectrogram_lib.log_spectrogram(windows, spec, stft_dtype), -1)

  windows_spec = [tf.TensorSpec([None, window], tf.float32)]

  @tf.function(input_signature=windows_spec, autograph=False)
  def embed_windows(windows):
    return {"embedding": tower(model_input(windows))}

  # The same with a float32 STFT, for TFLite (which has no float64); not saved.
  module.embed_windows_float32 = tf.function(
      lambda windows: {"embedding": tower(model_input(windows, tf.float32))},
      input_signature=windows_spec, autograph=False)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)], autograph=False)
  def embed_audio(waveform):
    windows, count = frame_windows(waveform, window, hop)
    n = tf.shape(waveform)[0]
    flat = tower(model_input(tf.reshape(windows, [-1, window])))
    seconds = tf.cast(tf.range(count) * hop, tf.float32) / float(spec.sample_rate)
    return {"embedding": tf.reshape(flat, [n, count, -1]), "timestamps": seconds}

  module.embed_windows, module.embed_audio = embed_windows, embed_audio
  module.sample_rate = _int_variable(spec.sample_rate)
  module.window_samples = _int_variable(window)
  module.hop_samples = _int_variable(hop)
  size = embed_windows(tf.zeros([1, window]))["embedding"].shape[-1]
  module.embedding_size = _int_variable(size)
  return module, {"embed_audio": embed_audio, "embed_windows": embed_windows}, size


def image_module(emb, platforms: Sequence[str]):
  """A tf.Module serving embed_frames for `emb`'s frame tower."""
  import tensorflow as tf
  from data_pipelines import clip_ops
  spec = emb.data
  module = tf.Module()
  module.variables_tree, tower = _converted(emb.frame_fn, emb.variables, platforms)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
  def embed_frames(images):
    crops = tf.map_fn(lambda im: clip_ops.resize_crop(im, None, spec=spec, train=False), images,
                      fn_output_signature=tf.TensorSpec([spec.crop, spec.crop, 3], tf.uint8))
    return {"embedding": tower(crops)}

  module.embed_frames = embed_frames
  module.crop = _int_variable(spec.crop)
  size = embed_frames(tf.zeros([1, spec.crop, spec.crop, 3], tf.uint8))["embedding"].shape[-1]
  module.embedding_size = _int_variable(size)
  return module, {"embed_frames": embed_frames}, size


def towers(emb) -> list[str]:
  """The towers `emb`'s model has at its layer (SoundNet: audio; ambient: image)."""
  shapes = emb.fns.output_shapes()
  return [t for t, key in (("audio", f"audio_{emb.layer}"), ("image", f"frame_{emb.layer}"))
          if key in shapes]


def tflite_audio(module, window_samples: int, output: str) -> str:
  """OUT/audio.tflite: embed_windows with a float32 STFT, checked against the
  SavedModel's embed_windows; raises ValueError saying why when TFLite cannot
  convert or run it, or changes the numbers."""
  import tensorflow as tf
  fn = module.embed_windows_float32.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
  # Built-in ops only: TFLite's stock interpreter runs no TensorFlow ("Flex") op.
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  windows = np.random.default_rng(0).normal(0, 0.1, (2, window_samples)).astype(np.float32)
  path = fs.join(output, "audio.tflite")
  try:
    flat = converter.convert()
    interpreter = tf.lite.Interpreter(model_content=flat)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], windows.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], windows)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  except Exception as e:  # the converter's and interpreter's errors have no common type
    raise ValueError(f"{path}: TFLite cannot run the audio tower: "
                     f"{' '.join(str(e).split())[:300]}") from None
  want = module.embed_windows(windows)["embedding"].numpy()
  if not np.allclose(got, want, rtol=TFLITE_RTOL, atol=TFLITE_RTOL):
    raise ValueError(f"{path}: TFLite converts the audio tower but its embeddings differ "
                     f"(max abs difference {np.abs(got - want).max():.3g})")
  with fs.open(path, "wb") as f:
    f.write(flat)
  return path


def export(workdir: str, output: str, *, checkpoint: str = "best", layer: str = "embedding",
           hop: float = 0.1, platforms: Sequence[str] = PLATFORMS, tflite: bool = False) -> dict:
  """Writes OUT/<tower>/ SavedModels and OUT/export.json; -> that record."""
  import jax
  import tensorflow as tf
  from avjax.embed import Embedder
  bad = sorted(set(platforms) - set(PLATFORMS))
  if bad or not platforms:
    raise ValueError(f"--platforms={','.join(platforms)}: choose from {','.join(PLATFORMS)}")
  emb = Embedder(workdir, checkpoint=checkpoint, layer=layer, conv="xla")
  record = {"workdir": workdir, "step": emb.step, "layer": layer, "platforms": list(platforms),
            "model": emb.config.model.name, "jax": jax.__version__, "tensorflow": tf.__version__,
            "towers": {}}
  fs.makedirs(output)
  modules = {}
  for tower in towers(emb):
    if tower == "audio":
      hop_n = hop_samples(hop, emb.sample_rate)
      module, signatures, size = audio_module(emb, platforms, hop_n)
      info = {"sample_rate": emb.sample_rate, "window_samples": emb.window_samples,
              "hop_samples": hop_n, "functions": ["embed_audio", "embed_windows"]}
    else:
      module, signatures, size = image_module(emb, platforms)
      info = {"crop": emb.data.crop, "resize": emb.data.resize, "functions": ["embed_frames"]}
    path = fs.join(output, tower)
    tf.saved_model.save(module, path, signatures=signatures)
    record["towers"][tower] = {"path": path, "embedding_size": int(size), **info}
    modules[tower] = module
  if not record["towers"]:
    raise ValueError(f"{workdir}: the model gives no audio_{layer} or frame_{layer}; "
                     "try --layer=features")
  if tflite:
    if "audio" not in record["towers"]:
      raise ValueError(f"{workdir}: --tflite converts the audio tower, and the model has none")
    record["tflite"] = tflite_audio(modules["audio"], emb.window_samples, output)
  fs.write_text(fs.join(output, "export.json"), json.dumps(record, indent=1))
  return record


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="a training workdir (config.json + checkpoints)")
  p.add_argument("--output", required=True, help="folder for the SavedModels (local or gs://)")
  p.add_argument("--checkpoint", default="best", help="best, latest, or a step")
  p.add_argument("--layer", default="embedding", choices=("embedding", "features"))
  p.add_argument("--hop", type=float, default=0.1, help="embed_audio: seconds between windows")
  p.add_argument("--platforms", default=",".join(PLATFORMS),
                 help="platforms the model is lowered for, comma-separated")
  p.add_argument("--tflite", action="store_true", help="also write audio.tflite")
  p.add_argument("--verbose", action="store_true", help="on an error, show the traceback")
  return p.parse_args(argv)


def main(args: argparse.Namespace) -> None:
  record = export(args.workdir, args.output, checkpoint=args.checkpoint, layer=args.layer,
                  hop=args.hop, platforms=[p for p in args.platforms.split(",") if p],
                  tflite=args.tflite)
  towers_said = ", ".join(f"{t} ({v['embedding_size']}-d) -> {v['path']}"
                          for t, v in record["towers"].items())
  print(f"exported checkpoint step {record['step']} for {','.join(record['platforms'])}: "
        f"{towers_said}" + (f"; {record['tflite']}" if "tflite" in record else ""))


def run(argv: Sequence[str] | None = None) -> None:
  from avjax import cli
  cli.run_argparse("avjax-export", parse_args, main, argv)


if __name__ == "__main__":
  run()
