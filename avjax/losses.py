"""Pure, keyword-only losses over (model outputs, batch), chosen by name.

Each returns per-example values with `reduction=False`, else the mean over the
examples that `batch["mask"]` keeps (all, when there is no mask).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from avjax import maths


def _mask(batch, n):
  return batch.get("mask", jnp.ones((n,), jnp.float32)).astype(jnp.float32)


def _reduce(per_example, weights, reduction):
  if not reduction:
    return per_example
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def avc_softmax_xent(*, outputs, batch, reduction=True):
  """2-way softmax cross-entropy on `logits` [B, 2] against `label` (L3, AVE)."""
  logits = outputs["logits"].astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def avc_sigmoid_xent(*, outputs, batch, reduction=True):
  """Binary cross-entropy on the max-pooled correspondence logit [B] (AVOL)."""
  logits = outputs["logits"].astype(jnp.float32)
  per = optax.sigmoid_binary_cross_entropy(logits, batch["label"].astype(jnp.float32))
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def location_scores(outputs):
  """[B, B, h, w] score of every location of frame i against audio j, from a
  model's per-location frame embedding map (AVOL); cosines when both are unit."""
  v = outputs["frame_embedding_map"].astype(jnp.float32)
  a = outputs["audio_embedding"].astype(jnp.float32)
  return jnp.einsum("ihwd,jd->ijhw", v, a)


def pair_similarities(outputs, pooling: str = "max", topk: float = 0.1):
  """[B, B] similarity of frame i with audio j from a model's embeddings.

  With an embedding map (AVOL), the locations' scores are pooled into the pair's
  (maths.pool_map): "max", the best location's (the multiple-instance rule of
  AVOL-Net and EZ-VSL), or "topk", the mean of the best `topk` fraction, which
  trains more of the object than its peak.
  """
  if "frame_embedding_map" in outputs:
    return maths.pool_map(location_scores(outputs), pooling, topk=topk,
                          key="config.loss_kwargs.infonce.pooling")
  return (outputs["frame_embedding"].astype(jnp.float32)
          @ outputs["audio_embedding"].astype(jnp.float32).T)


def infonce(*, outputs, batch, temperature=0.1, pooling="max", topk=0.1, reduction=True):
  """Bidirectional InfoNCE over the corresponding pairs of the batch.

  Rows with `label` 1 are positives; every other corresponding pair's audio (or
  frame) serves as a negative, so one batch gives B-1 negatives per positive.
  `pooling`, `topk`: how an embedding map's locations make a pair's similarity
  (pair_similarities).
  """
  sim = pair_similarities(outputs, pooling, topk) / temperature
  n = sim.shape[0]
  valid = (batch["label"] == 1).astype(jnp.float32) * _mask(batch, n)
  big_neg = jnp.finfo(jnp.float32).min / 4
  sim = jnp.where(valid[None, :] > 0, sim, big_neg)
  diag = jnp.diagonal(sim)
  v2a = jax.nn.logsumexp(sim, axis=1) - diag
  a2v = jax.nn.logsumexp(jnp.where(valid[:, None] > 0, sim, big_neg), axis=0) - diag
  per = 0.5 * (v2a + a2v)
  per = jnp.where(valid > 0, per, 0.0)
  return _reduce(per, valid, reduction)


def hard_negatives(*, outputs, batch, positive=0.65, negative=0.4, sharpness=0.03,
                   temperature=0.07, reduction=True):
  """Hard negatives from the same frame (Chen et al., "Localizing Visual Sounds the
  Hard Way", CVPR 2021), on a model's per-location embeddings.

  With S the cosine map of a frame's locations against an audio, a soft mask
  sigmoid((S - positive) / sharpness) picks where the sound is and
  1 - sigmoid((S - negative) / sharpness) the background. The positive is the
  mask-weighted mean of S on the own pair; the negatives are the own frame's
  background (the hard one: it trains the map to fall off outside the object,
  not only to peak on it) and the other corresponding pairs' masked means.
  Frame-anchored softmax cross-entropy, as the paper's.
  """
  if "frame_embedding_map" not in outputs:
    raise ValueError("config.losses.hard_negatives: needs a model with a per-location frame "
                     f"embedding map (avolnet); the model gives {sorted(outputs)}")
  s = location_scores(outputs)                               # frame i, audio j

  def masked_mean(values, weights):
    return jnp.sum(values * weights, axis=(-2, -1)) / (jnp.sum(weights, axis=(-2, -1)) + 1e-30)

  pairs = masked_mean(s, jax.nn.sigmoid((s - positive) / sharpness))      # [B, B]
  own = jnp.diagonal(s).transpose(2, 0, 1)                                 # [B, h, w]
  # sigmoid(-x), not 1 - sigmoid(x): the latter rounds to 0 on a map without
  # background, which would then count as no hard negative at all.
  background = masked_mean(own, jax.nn.sigmoid((negative - own) / sharpness))
  n = s.shape[0]
  valid = (batch["label"] == 1).astype(jnp.float32) * _mask(batch, n)
  big_neg = jnp.finfo(jnp.float32).min / 4
  others = jnp.where((valid[None, :] > 0) & ~jnp.eye(n, dtype=bool), pairs, big_neg)
  logits = jnp.concatenate([jnp.diagonal(pairs)[:, None], background[:, None], others],
                           axis=1) / temperature
  per = jax.nn.logsumexp(logits, axis=1) - logits[:, 0]
  per = jnp.where(valid > 0, per, 0.0)
  return _reduce(per, valid, reduction)


def sinkhorn(log_scores, *, weights, iterations: int = 3, log_marginal=None):
  """Sinkhorn-Knopp in the log domain: scores [..., B, K] -> assignments Q of the
  same shape whose rows sum to 1 and whose columns hold the target shares of
  the examples, sum_b weights_b * Q_bk = sum(weights) * exp(log_marginal_k)
  (equal shares, 1/K, when `log_marginal` [..., 1, K] is None). Rows with
  weight 0 take no part in the column totals (padding, negative pairs)."""
  k = log_scores.shape[-1]
  total = jnp.maximum(jnp.sum(weights), 1.0)
  if log_marginal is None:
    log_marginal = jnp.full((1, k), -jnp.log(float(k)))
  # A large finite value rather than -inf keeps an all-zero batch free of NaNs.
  log_w = jnp.where(weights > 0, jnp.log(jnp.maximum(weights, 1e-30)), -1e9)[:, None]
  log_q = log_scores - jax.nn.logsumexp(log_scores, axis=-1, keepdims=True)
  for _ in range(iterations):
    log_q = (log_q - jax.nn.logsumexp(log_q + log_w, axis=-2, keepdims=True)
             + jnp.log(total) + log_marginal)
    log_q = log_q - jax.nn.logsumexp(log_q, axis=-1, keepdims=True)
  return jnp.exp(log_q)


def marginal_to_masses(prior, log_scores, weights):
  """Log target shares [..., 1, K]: the prior's shares (any order) given to the
  clusters by rank, the largest share to the cluster that now holds the most
  mass, as SeLaVi's released code sorts them. The shares enter Sinkhorn as
  column totals proportional to the prior; the released code divides by them
  (r = 1 / target), which gives the currently largest cluster the smallest
  share: inverted for any skewed prior (avjax tests the direction)."""
  mass = jnp.einsum("...bk,b->...k", jax.nn.softmax(log_scores, axis=-1), weights)
  rank = jnp.argsort(jnp.argsort(-mass, axis=-1), axis=-1)  # 0 = the largest cluster
  shares = jnp.sort(prior / jnp.sum(prior))[::-1]
  return jnp.log(shares)[rank][..., None, :]


def selavi(*, outputs, batch, sharpness=2.0, iterations=3, reduction=True):
  """SeLaVi's self-labelling cross-entropy, averaged over heads and modalities.

  Each head's pseudo-labels are the Sinkhorn-Knopp partition (equal, or by the
  model's `cluster_prior` sorted to the current cluster masses) of
  sharpness * (the kept modalities' summed log-probabilities) over the
  corresponding pairs of the global batch, with no gradient through them; both
  modalities' heads are trained to predict them. With cosine logits over a
  temperature tau, sharpness = tau / epsilon gives SwAV's exp(cos / epsilon);
  the default is epsilon = 0.05 at tau = 0.1. Much sharper, three iterations no
  longer equalise the clusters and the labels follow the predictions.
  """
  log_p = {m: jax.nn.log_softmax(outputs[f"{m}_head_logits"].astype(jnp.float32), axis=-1)
           for m in ("frame", "audio")}  # [heads, B, K]
  keep = outputs["modality_keep"].astype(jnp.float32)
  n = keep.shape[0]
  valid = (batch["label"] == 1).astype(jnp.float32) * _mask(batch, n)
  joint = sharpness * (keep[None, :, 0, None] * log_p["frame"]
                       + keep[None, :, 1, None] * log_p["audio"])
  log_marginal = None
  if "cluster_prior" in outputs:  # the model's prior over cluster sizes (uniform: none)
    log_marginal = marginal_to_masses(outputs["cluster_prior"], joint, valid)
  q = jax.lax.stop_gradient(sinkhorn(joint, weights=valid, iterations=iterations,
                                     log_marginal=log_marginal))
  per = -0.5 * jnp.sum(q * (log_p["frame"] + log_p["audio"]), axis=-1).mean(axis=0)
  return _reduce(jnp.where(valid > 0, per, 0.0), valid, reduction)


def _labelled_pairs(batch, n):
  """Rows that are corresponding pairs and carry at least one class label."""
  labels = batch["labels"].astype(jnp.float32)
  valid = (batch["label"] == 1).astype(jnp.float32) * _mask(batch, n)
  return labels, valid * (jnp.sum(labels, axis=-1) > 0)


def cosine_embedding(*, outputs, batch, margin=0.2, reduction=True):
  """Cosine cross-modal embedding loss (Suris et al., "Cross-modal embeddings for
  video and audio retrieval", ECCV-W 2018), a labelled baseline.

  A clip's frame and audio are a pair: 1 - cos. A frame and another clip's
  audio that share no class label are a non-pair: max(0, cos - margin) /
  (1 - margin). Each labelled pair of the batch takes the mean over its
  non-pairs in both directions (its frame against others' audio, its audio
  against others' frames). Needs `labels` (multi-hot) in the batch.
  """
  v = maths.l2_normalize(outputs["frame_embedding"])
  a = maths.l2_normalize(outputs["audio_embedding"])
  cos = v @ a.T
  n = cos.shape[0]
  labels, valid = _labelled_pairs(batch, n)
  non_pair = (labels @ labels.T == 0) * valid[:, None] * valid[None, :]
  hinge = jax.nn.relu(cos - margin) / (1.0 - margin) * non_pair
  mean_over = lambda x, axis: jnp.sum(x, axis) / jnp.maximum(jnp.sum(non_pair, axis), 1.0)
  per = (1.0 - jnp.diagonal(cos)) + 0.5 * (mean_over(hinge, 1) + mean_over(hinge, 0))
  return _reduce(jnp.where(valid > 0, per, 0.0), valid, reduction)


def shared_classifier(*, outputs, batch, reduction=True):
  """The classification term of Suris et al.: one linear classifier shared by
  both modalities' embeddings (`<modality>_class_logits`), multi-label sigmoid
  cross-entropy against the clip's `labels`, averaged over classes and the two
  modalities. Its weight in config.losses is the paper's lambda."""
  labels, valid = _labelled_pairs(batch, batch["label"].shape[0])
  per = 0.5 * sum(
      optax.sigmoid_binary_cross_entropy(outputs[f"{m}_class_logits"].astype(jnp.float32),
                                         labels).mean(axis=-1) for m in ("frame", "audio"))
  return _reduce(jnp.where(valid > 0, per, 0.0), valid, reduction)


def sound_cluster_xent(*, outputs, batch, reduction=True):
  """Ambient sound: softmax cross-entropy of `sound_logits` [B, k] against the
  clip's sound cluster (`sound_target` [B, 1])."""
  logits = outputs["sound_logits"].astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits, batch["sound_target"][:, 0])
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def sound_bits_xent(*, outputs, batch, reduction=True):
  """Ambient sound, the paper's binary code: per-bit sigmoid cross-entropy of
  `sound_logits` [B, bits] against `sound_target` [B, bits], mean over bits."""
  logits = outputs["sound_logits"].astype(jnp.float32)
  bits = batch["sound_target"].astype(jnp.float32)
  per = optax.sigmoid_binary_cross_entropy(logits, bits).mean(axis=-1)
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def frame_class_xent(*, outputs, batch, reduction=True):
  """A supervised frame classifier (SoundNet's teacher): softmax cross-entropy
  of `frame_class_logits` [B, classes] against the clip's labels, a multi-label
  clip's mass shared equally among its labels; clips without a label and
  non-corresponding pairs count zero."""
  labels, valid = _labelled_pairs(batch, batch["label"].shape[0])
  target = labels / jnp.maximum(jnp.sum(labels, axis=-1, keepdims=True), 1.0)
  per = optax.softmax_cross_entropy(outputs["frame_class_logits"].astype(jnp.float32), target)
  return _reduce(jnp.where(valid > 0, per, 0.0), valid, reduction)


def rotation_xent(*, outputs, batch, reduction=True):
  """Rotation prediction (Gidaris et al. 2018): 4-way softmax cross-entropy of
  `rotation_logits` [4, B, 4] against each frame's rotation, averaged over the
  four rotations of a frame."""
  logits = outputs["rotation_logits"].astype(jnp.float32)
  labels = jnp.broadcast_to(jnp.arange(logits.shape[0])[:, None], logits.shape[:2])
  per = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), axis=0)
  return _reduce(per, _mask(batch, logits.shape[1]), reduction)


def relpos_xent(*, outputs, batch, reduction=True):
  """Relative position (Doersch et al. 2015): 8-way softmax cross-entropy of
  `relpos_logits` [B, 8] against `relpos_labels` [B]."""
  logits = outputs["relpos_logits"].astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits, outputs["relpos_labels"])
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def nt_xent(*, outputs, batch, temperature=0.1, reduction=True):
  """SimCLR's NT-Xent over the global batch: each of the 2B L2-normalised views
  `simclr_projections` [2, B, D] against the other view of its frame, with the
  other 2B - 2 views as negatives. Inside jit over a mesh the batch axis is the
  global one, so the negatives include every device's views."""
  z = outputs["simclr_projections"].astype(jnp.float32)
  b = z.shape[1]
  z = z.reshape(2 * b, -1)
  sim = z @ z.T / temperature
  mask = jnp.tile(_mask(batch, b), 2)
  big_neg = jnp.finfo(jnp.float32).min / 4
  sim = jnp.where(jnp.eye(2 * b, dtype=bool) | (mask[None, :] == 0), big_neg, sim)
  partner = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
  per = jax.nn.logsumexp(sim, axis=1) - sim[jnp.arange(2 * b), partner]
  per = 0.5 * (per[:b] + per[b:])
  return _reduce(per, mask[:b], reduction)


def order_xent(*, outputs, batch, reduction=True):
  """The frame-order tasks (arrow of time, shuffle & learn, odd-one-out): softmax
  cross-entropy of `order_logits` [B, K] against `order_labels` [B], over the
  examples `order_weights` counts."""
  logits = outputs["order_logits"].astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits, outputs["order_labels"])
  weights = outputs["order_weights"] * _mask(batch, logits.shape[0])
  return _reduce(jnp.where(weights > 0, per, 0.0), weights, reduction)


def colour_xent(*, outputs, batch, reduction=True):
  """Colourization (Zhang et al. 2016): the multinomial cross-entropy of
  `colour_logits` [B, h, w, Q] against the soft-encoded `colour_targets`, each
  location weighted by `colour_weights` (class rebalancing), averaged over
  locations."""
  logits = outputs["colour_logits"].astype(jnp.float32)
  per = -jnp.sum(outputs["colour_targets"] * jax.nn.log_softmax(logits, axis=-1), axis=-1)
  per = jnp.mean(per * outputs["colour_weights"], axis=(1, 2))
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def mae_pixels(*, outputs, batch, reduction=True):
  """MAE (He et al. 2022): mean squared error of `mae_predictions` against the
  per-patch normalised `mae_targets`, on the hidden patches (`mae_mask`) only."""
  pred, target = outputs["mae_predictions"], outputs["mae_targets"]
  mask = outputs["mae_mask"]
  per_patch = jnp.mean((pred.astype(jnp.float32) - target) ** 2, axis=-1)
  per = jnp.sum(per_patch * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
  return _reduce(per, _mask(batch, pred.shape[0]), reduction)


def exemplar_xent(*, outputs, batch, reduction=True):
  """Exemplar networks (Dosovitskiy et al. 2014): softmax cross-entropy of
  `exemplar_logits` [B, N] against each transformed exemplar's class `exemplar_ids`."""
  logits = outputs["exemplar_logits"].astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits, outputs["exemplar_ids"])
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


def separation_bce(*, outputs, batch, reduction=True):
  """Mix-and-separate (Zhao et al. 2018): binary cross-entropy of the mask logits
  `separation_logits` [B, T, F] against the binary `separation_targets`, each bin
  weighted by `separation_weights` (log(1 + |mixture|), clipped), averaged over bins."""
  logits = outputs["separation_logits"].astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits, outputs["separation_targets"])
  per = jnp.mean(bce * outputs["separation_weights"], axis=(1, 2))
  return _reduce(per, _mask(batch, logits.shape[0]), reduction)


# The robust loss's eps (Owens et al. 2016): the log flattens residuals below about
# 1/25, so that a few hard steps do not dominate, as a squared error lets them.
SONORIZATION_EPS = 1.0 / 25 ** 2


def sonorization_robust(*, outputs, batch, reduction=True):
  """Visually Indicated Sounds' robust regression: log(eps + ||s_t - s_hat_t||^2) of
  the predicted sound features `sonorization_predictions` [B, S, D] against the
  window's `sonorization_targets`, averaged over steps."""
  pred = outputs["sonorization_predictions"].astype(jnp.float32)
  err = jnp.sum((pred - outputs["sonorization_targets"].astype(jnp.float32)) ** 2, axis=-1)
  per = jnp.mean(jnp.log(SONORIZATION_EPS + err), axis=-1)
  return _reduce(per, _mask(batch, pred.shape[0]), reduction)


def soundnet_kl(*, outputs, batch, reduction=True):
  """SoundNet's distillation: KL(teacher || student) of each teacher's class
  posteriors `teacher_probs[t]` [B, steps, K_t] (avjax/teacher.py) and the
  student's head `audio_step_logits[t]` [B, steps, K_t], averaged over steps and
  summed over teachers (the paper sums its ImageNet and Places terms)."""
  students, teachers = outputs["audio_step_logits"], batch["teacher_probs"]
  if len(students) != len(teachers):
    raise ValueError(f"SoundNet has {len(students)} heads (config.model.head_classes) but "
                     f"{len(teachers)} teachers (config.teachers)")
  per = 0.0
  for logits, p in zip(students, teachers):
    log_q = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    p = p.astype(jnp.float32)
    kl = jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - log_q), 0.0), axis=-1)
    per = per + jnp.mean(kl, axis=-1)
  return _reduce(per, _mask(batch, students[0].shape[0]), reduction)


LOSSES = {
    "avc_softmax_xent": avc_softmax_xent,
    "avc_sigmoid_xent": avc_sigmoid_xent,
    "infonce": infonce,
    "hard_negatives": hard_negatives,
    "selavi": selavi,
    "cosine_embedding": cosine_embedding,
    "shared_classifier": shared_classifier,
    "sound_cluster_xent": sound_cluster_xent,
    "sound_bits_xent": sound_bits_xent,
    "frame_class_xent": frame_class_xent,
    "soundnet_kl": soundnet_kl,
    "rotation_xent": rotation_xent,
    "relpos_xent": relpos_xent,
    "nt_xent": nt_xent,
    "order_xent": order_xent,
    "colour_xent": colour_xent,
    "mae_pixels": mae_pixels,
    "exemplar_xent": exemplar_xent,
    "separation_bce": separation_bce,
    "sonorization_robust": sonorization_robust,
}


def get(name):
  if name not in LOSSES:
    raise ValueError(f"config.losses: unknown loss {name!r}; known: {sorted(LOSSES)}")
  return LOSSES[name]


# The AVC loss of each kind of correspondence head (avjax.models.CORRESPONDENCE).
AVC_LOSS = {"softmax": "avc_softmax_xent", "sigmoid": "avc_sigmoid_xent"}


def avc_predictions(outputs, correspondence: str):
  """Predicted correspondence (1/0) from a head of kind `correspondence`."""
  logits = outputs["logits"]
  if correspondence == "softmax":
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return (logits > 0).astype(jnp.int32)


# The models whose outputs carry `frame_embedding_map` (hard_negatives needs it).
MAP_MODELS = ("avolnet",)


def check_for_model(weights: dict, correspondence: str | None, model_name: str,
                    classifier_classes: int = 0) -> None:
  """A config's losses must fit the model's heads: an AVC loss needs the head of
  its kind, the shared-classifier term a classifier."""
  if "hard_negatives" in weights and model_name not in MAP_MODELS:
    raise ValueError(f"config.losses.hard_negatives: model {model_name!r} has no per-location "
                     f"frame embedding map; use one of {MAP_MODELS}")
  for kind, name in AVC_LOSS.items():
    if name in weights and correspondence != kind:
      has = f"a {correspondence} head" if correspondence else "no correspondence head"
      fit = f"; use {AVC_LOSS[correspondence]}" if correspondence else ""
      raise ValueError(f"config.losses.{name}: model {model_name!r} has {has}{fit}")
  if "shared_classifier" in weights and not classifier_classes:
    raise ValueError("config.losses.shared_classifier: the model has no shared classifier; "
                     "set config.model.classifier_classes to the number of classes")
