"""The device mesh: one `data` axis over every device of every host."""
from __future__ import annotations

import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def make_mesh(config) -> Mesh:
  """The mesh of `config.mesh` (big_vision's style): `data` = -1 or the device count.

  Training is data parallel: every device holds the whole state and a slice of
  the global batch, so the data axis spans all devices.
  """
  size = int(config.get("mesh", {}).get("data", -1))
  n = jax.device_count()
  if size not in (-1, n):
    raise ValueError(f"config.mesh.data={size}: the data axis spans all {n} devices; use -1")
  return Mesh(mesh_utils.create_device_mesh((n,), devices=jax.devices()), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Arrays split along their leading (batch) axis over the data axis."""
  return NamedSharding(mesh, P(AXIS))
