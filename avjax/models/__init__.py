"""Model families, built by name from `config.model`."""
from __future__ import annotations

import jax.numpy as jnp

from avjax.models.ave import AVENet
from avjax.models.avol import AVOLNet
from avjax.models.l3 import L3Net
from avjax.models.selavi import SeLaVi

MODELS = {"l3": L3Net, "avenet": AVENet, "avolnet": AVOLNet, "selavi": SeLaVi}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(model_config):
  """config.model -> flax module. Every key but `name` and `dtype` is a module field."""
  kwargs = dict(model_config)
  name = kwargs.pop("name")
  if name not in MODELS:
    raise ValueError(f"config.model.name: unknown model {name!r}; known: {sorted(MODELS)}")
  dtype = kwargs.pop("dtype", "float32")
  if dtype not in DTYPES:
    raise ValueError(f"config.model.dtype: {dtype!r} is not one of {sorted(DTYPES)}")
  cls = MODELS[name]
  fields = set(cls.__dataclass_fields__) - {"parent", "name"}
  unknown = set(kwargs) - fields
  if unknown:
    raise ValueError(f"config.model: keys {sorted(unknown)} are not fields of {cls.__name__} "
                     f"(fields: {sorted(fields)})")
  return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()},
             dtype=DTYPES[dtype])
