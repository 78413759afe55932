"""Every config's update step, and the AVE-Net, sync and SoundNet forwards, lower
with jax.export for TPU and for CUDA on this CPU host, with the opt-in CPU
kernels chosen (config.model.conv="cpu_kernels"), and hold no custom call but
JAX's own: the kernels are chosen at lowering (platform_dependent), so a program
exported for an accelerator carries none of them."""
import importlib
import pkgutil
import platform
import re
import sys

import jax
import pytest
from jax import export

import configs
from avjax import input as input_lib
from avjax import mesh as mesh_lib
from avjax import predict, train

CONFIGS = sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                 if not m.ispkg and m.name != "common")
PLATFORMS = (("tpu",), ("cuda",))
BATCH = 2


def custom_calls(mlir: str) -> set[str]:
  """The targets of the program's custom calls (`stablehlo.custom_call @T`)."""
  return set(re.findall(r"custom_call @([\w.]+)", mlir))


def jax_own(target: str) -> bool:
  """Targets JAX's own lowering emits and guarantees across serialisations
  (sharding annotations, shape assertions, ...): export's own list."""
  from jax._src.export._export import _CUSTOM_CALL_TARGETS_GUARANTEED_STABLE
  return target in _CUSTOM_CALL_TARGETS_GUARANTEED_STABLE


def paper_config(name: str):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.model.conv = "cpu_kernels"
  if config.model.get("classifier_classes") == 0:  # the labelled baselines: the data's classes
    config.model.classifier_classes = config.data.num_classes = 10
  return config


@pytest.fixture(scope="module", autouse=True)
def cpu_kernels_present():
  """The point is a program traced with the CPU kernels on: they must be there
  (the `test` extra brings oneDNN; CI has a compiler)."""
  if not (sys.platform == "linux" and platform.machine() == "x86_64"):
    pytest.skip("no oneDNN wheel for this platform")
  from avjax_cpu import onednn
  assert onednn.available(), onednn.unavailable()


def assert_exports_clean(fn, *args):
  for platforms in PLATFORMS:
    mlir = export.export(fn, platforms=platforms)(*args).mlir_module()
    foreign = sorted(t for t in custom_calls(mlir) if not jax_own(t))
    assert not foreign, (platforms, foreign)


@pytest.mark.parametrize("name", CONFIGS)
def test_update_step_exports_for_accelerators(name):
  config = paper_config(name)
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  assert_exports_clean(fns.update, fns.shapes, input_lib.train_batch_shapes(config, BATCH))


def test_the_cpu_lowering_does_hold_the_kernels():
  """The same update lowered for the CPU holds them: the test above would pass
  vacuously if the kernels were never traced."""
  config = paper_config("avenet")
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  mlir = fns.update.lower(fns.shapes, input_lib.train_batch_shapes(config, BATCH)).as_text()
  assert {"avjax_winograd_conv", "avjax_onednn_conv_forward"} <= custom_calls(mlir)


@pytest.mark.parametrize("name", ["avenet", "sync", "soundnet"])
def test_forward_exports_for_accelerators(name):
  config = paper_config(name)
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  frames, audio = predict.dummy_inputs(config.data, BATCH, fns.model_fns.audio_input,
                                       fns.model_fns.frame_input)
  variables = train.variables_of(fns.shapes)
  as_spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
  assert_exports_clean(jax.jit(fns.model_fns.predict), variables, as_spec(frames), as_spec(audio))
