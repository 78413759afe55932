"""Clustering quality: NMI, ARI and Hungarian-matched accuracy against labels.

A model with a cluster head (`<modality>_cluster_logits`, as SeLaVi has) is
scored on its own assignments; otherwise each modality's embeddings are
clustered with k-means (k = the number of classes unless set), which scores
how well the embedding space separates the classes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import sklearn.cluster

from avjax import maths
from avjax import metrics
from avjax.evaluators import base


class Clustering(base.Evaluator):
  def setup(self):
    self.require_labels("clustering")
    modalities = self.modalities = self.parse_modalities("clustering")

    @jax.jit
    def assignments(variables, batch):
      out = self.apply(variables, batch)
      res = {}
      for m in modalities:
        if f"{m}_cluster_logits" in out:
          res[m] = jnp.argmax(out[f"{m}_cluster_logits"], -1)
        elif f"{m}_embedding" in out:
          res[m] = maths.l2_normalize(out[f"{m}_embedding"])
        else:
          res[m] = maths.l2_normalize(out[f"{m}_features"])
      return res

    self._assignments = assignments

  def run(self, variables) -> dict:
    g = self.gather(self._assignments, variables, host_keys=("labels",))
    y, one = base.single_labels(g["labels"])
    k = self.config.num_clusters or self.reader.num_classes
    out = {}
    for m in self.modalities:
      x = g[m][one]
      clusters = x if x.ndim == 1 else sklearn.cluster.KMeans(
          k, n_init=10, random_state=self.seed).fit_predict(x.astype(np.float64))
      out.update({f"clustering_{m}_{name}": v
                  for name, v in metrics.clustering_scores(y, clusters).items()})
    return out
