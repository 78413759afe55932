"""Cross-modal and same-modal retrieval: nDCG@k and recall@k in four directions.

im-im, im-aud, aud-im, aud-aud over a held-out split's embeddings; relevance is
label overlap (binary, or graded by the number of shared labels). Each query's
own clip is left out of the database in every direction, so a pair cannot
retrieve itself.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from avjax import input as input_lib
from avjax import metrics

DIRECTIONS = (("im_im", "frame", "frame"), ("im_aud", "frame", "audio"),
              ("aud_im", "audio", "frame"), ("aud_aud", "audio", "audio"))


class Retrieval:

  def __init__(self, eval_config, *, model, mesh, data_config, default_split: str):
    self.reader = input_lib.make_reader(
        data_config, eval_config.split or default_split,
        global_batch=eval_config.batch_size, seed=0)
    if not self.reader.num_classes:
      raise ValueError("config.evals.retrieval needs labels: the split's manifest lists none")
    self.k, self.graded = eval_config.k, eval_config.graded
    self.sharding = NamedSharding(mesh, P("data"))

    @jax.jit
    def embed(variables, frames, spectrogram):
      out = model.apply(variables, frames, spectrogram, train=False)
      missing = {"frame_embedding", "audio_embedding"} - set(out)
      if missing:
        raise ValueError(f"retrieval needs {sorted(missing)} from the model "
                         "(L3-Net: set config.model.contrastive_dim)")
      return out["frame_embedding"], out["audio_embedding"]

    self._embed = embed

  def embeddings(self, variables):
    """-> frame [N, D], audio [N, D], labels [N, C] for this host's clips."""
    frames, audios, labels = [], [], []
    for local in self.reader.eval_iterator():
      batch = input_lib.to_global({k: local[k] for k in ("frames", "spectrogram")}, self.sharding)
      f, a = jax.device_get(self._embed(variables, batch["frames"], batch["spectrogram"]))
      keep = local["mask"] > 0
      frames.append(np.asarray(f)[keep])
      audios.append(np.asarray(a)[keep])
      labels.append(local["labels"][keep])
    return np.concatenate(frames), np.concatenate(audios), np.concatenate(labels)

  def run(self, variables) -> dict:
    if jax.process_count() > 1:
      raise NotImplementedError("retrieval gathers embeddings on one host; run it single-process")
    frame, audio, labels = self.embeddings(variables)
    emb = {"frame": frame.astype(np.float64), "audio": audio.astype(np.float64)}
    relevance = metrics.label_relevance(labels, labels, graded=self.graded)
    np.fill_diagonal(relevance, 0.0)  # the query's own clip is not in its database
    out = {}
    for name, q, d in DIRECTIONS:
      scores = metrics.leave_self_out(emb[q] @ emb[d].T)
      out[f"retrieval_{name}_ndcg@{self.k}"] = metrics.ndcg_at_k(scores, relevance, self.k)
      out[f"retrieval_{name}_recall@{self.k}"] = metrics.recall_at_k(scores, relevance, self.k)
    return out
