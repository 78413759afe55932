"""Cross-modal and same-modal retrieval: nDCG@k and recall@k in four directions.

im-im, im-aud, aud-im, aud-aud over a held-out split's embeddings; relevance is
label overlap (binary, or graded by the number of shared labels). Each query's
own clip is left out of the database in every direction, so a pair cannot
retrieve itself.
"""
from __future__ import annotations


import jax
import numpy as np

from avjax import maths
from avjax import metrics
from avjax import visualise
from avjax.evaluators import base
from data_pipelines import fs

DIRECTIONS = (("im_im", "frame", "frame"), ("im_aud", "frame", "audio"),
              ("aud_im", "audio", "frame"), ("aud_aud", "audio", "audio"))


class Retrieval(base.Evaluator):
  def setup(self):
    self.require_labels("retrieval")
    kind = self.config.get("features", "embedding")
    if kind not in ("embedding", "features"):
      raise ValueError(f"config.evals.retrieval.features: {kind!r} is not embedding or features")

    @jax.jit
    def embed(variables, batch):
      out = self.apply(variables, batch)
      if kind == "features":  # whichever towers the model has
        return {m: maths.l2_normalize(out[f"{m}_features"]) for m in ("frame", "audio")
                if f"{m}_features" in out}
      missing = {"frame_embedding", "audio_embedding"} - set(out)
      if missing:
        raise ValueError(f"retrieval needs {sorted(missing)} from the model (L3-Net: set "
                         "config.model.contrastive_dim; frame-only models: "
                         "config.evals.retrieval.features='features')")
      return {"frame": out["frame_embedding"], "audio": out["audio_embedding"]}

    self._embed = embed

  def scores(self, variables, host_keys: tuple[str, ...] = ()):
    """-> ({direction: leave-self-out scores [N, N]}, relevance [N, N], gathered
    embeddings, labels and `host_keys`)."""
    g = self.gather(self._embed, variables, host_keys=("labels", *host_keys))
    emb = {m: g[m].astype(np.float64) for m in ("frame", "audio") if m in g}
    relevance = metrics.label_relevance(g["labels"], g["labels"], graded=self.config.graded)
    np.fill_diagonal(relevance, 0.0)  # the query's own clip is not in its database
    scores = {name: metrics.leave_self_out(emb[q] @ emb[d].T) for name, q, d in DIRECTIONS
              if q in emb and d in emb}
    return scores, relevance, g

  def run(self, variables) -> dict:
    scores, relevance, _ = self.scores(variables)
    out, k = {}, self.config.k
    for name, s in scores.items():
      out[f"retrieval_{name}_ndcg@{k}"] = metrics.ndcg_at_k(s, relevance, k)
      out[f"retrieval_{name}_recall@{k}"] = metrics.recall_at_k(s, relevance, k)
    return out

  def pictures(self, variables, out_dir: str) -> list[str]:
    """Grids for the first queries: a frame's and a sound's top-5 frames (im-im, aud-im)."""
    # The database's uint8 frames come with the embeddings; spectrograms of the queries only.
    scores, relevance, g = self.scores(variables, host_keys=("frames",))
    frames, n = g["frames"], self.config.pictures
    specs = self.gather(lambda v, b: {}, variables, inputs=(), host_keys=("spectrogram",),
                        limit=n)["spectrogram"]
    paths = []
    for q in range(min(n, len(frames))):
      for name, query in (("im_im", frames[q]), ("aud_im", specs[q, ..., 0])):
        if name not in scores:
          continue
        top = np.argsort(-scores[name][q], kind="stable")[:5]
        paths.append(visualise.retrieval_grid(
            query, frames[top], relevance[q, top] > 0,
            fs.join(out_dir, f"retrieval_{name}_{q:03d}.png"),
            title=f"{name.replace('_', ' -> ')}  query {q}"))
    return paths
