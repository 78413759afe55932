"""A model as the functions that evaluators, the embed command and benchmarks call.

The trainer builds them once (`model_fns`) and hands them to the evaluators, as
big_vision hands its evaluators `predict_fn`s: an evaluator never builds or
holds the model, so it runs on any checkpoint's variables, trained or at
initialisation, and the same functions serve `avjax-evaluate` and `avjax-embed`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax import frames as frames_lib
from avjax import input as input_lib
from avjax import models


@dataclasses.dataclass(frozen=True)
class ModelFns:
  # (variables, frames, spectrogram) -> the model's outputs dict (models/__init__.py),
  # in inference mode. frames: the reader's uint8 crops (normalised here) or float;
  # either input may be None for one modality's outputs.
  predict: Callable
  # rng -> variables at random initialisation: the trainer's step-0 weights for
  # PRNGKey(config.seed) when called as `jit_once(init)`; traceable.
  init: Callable
  # () -> {output key: ShapeDtypeStruct} of a joint call (abstract: no compute).
  output_shapes: Callable
  # The model's declared correspondence head: "softmax", "sigmoid", or None.
  correspondence: str | None
  name: str  # the model's class name, for messages
  # The batch keys of the model's inputs: "spectrogram" or "waveform"; "frames"
  # or "frame_stack".
  audio_input: str = "spectrogram"
  frame_input: str = "frames"


def dummy_inputs(data_config, batch: int = 1, audio_input: str = "spectrogram",
                 frame_input: str = "frames"):
  """Zero frames and audio of the shapes `data_config` gives (for model.init)."""
  spec = input_lib.reader_spec(data_config)
  stack = (spec.frame_stack,) if frame_input == "frame_stack" else ()
  frames = jnp.zeros((batch, *stack, spec.crop, spec.crop, 3), jnp.float32)
  if audio_input == "waveform":
    return frames, jnp.zeros((batch, spec.spectrogram.num_samples), jnp.float32)
  return frames, jnp.zeros((batch, *spec.spectrogram.shape, 1), jnp.float32)


def jit_once(fn: Callable, **jit_kwargs) -> Callable:
  """`jax.jit` for a function that runs once per job, such as initialisation.
  On CPU it compiles at LLVM optimisation level 1 instead of 2: the threefry
  bits behind every initialiser are most of an init's compile, for a program
  that then runs for milliseconds, and level 1 compiles them faster and gives
  the same bits (eight configs compared). Level 0 does not give the same bits,
  and XLA:CPU's gradients of long 1-D convolutions come out NaN there: not used.
  On accelerators it is plain `jax.jit`."""
  options = {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None
  return jax.jit(fn, compiler_options=options, **jit_kwargs)


def init_rngs(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The one rule that splits a run's seed key: (model init, training state rng)."""
  model_rng, state_rng = jax.random.split(rng)
  return model_rng, state_rng


def model_fns(model: nn.Module, data_config) -> ModelFns:
  audio_input, frame_input = models.audio_input(model), models.frame_input(model)
  to_model = (frames_lib.stack_to_model_frames if frame_input == "frame_stack"
              else frames_lib.to_model_frames)

  def predict(variables, frames, audio):
    if frames is not None:
      frames = to_model(frames)
    return model.apply(variables, frames, audio, train=False)

  def dummy():
    return dummy_inputs(data_config, 1, audio_input, frame_input)

  def init(rng):
    return model.init(init_rngs(rng)[0], *dummy(), train=False)

  def output_shapes():
    return jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), *dummy(), False)[0])

  return ModelFns(predict=predict, init=init, output_shapes=output_shapes,
                  correspondence=type(model).correspondence, name=type(model).__name__,
                  audio_input=audio_input, frame_input=frame_input)
