"""Linear probes on frozen features, with k-fold cross-validation.

Each modality's pooled features (`<modality>_features`, or the embeddings with
`features="embedding"`) feed a multinomial logistic regression, fitted in JAX
with L-BFGS on the objective scikit-learn's LogisticRegression minimises
(mean cross-entropy + ||W||^2 / (2 C N), bias unpenalised), on standardised
features. Folds come from a CSV column, as ESC-50's `fold`, or from the video
so that clips of one video never straddle folds. The same network at random
initialisation is probed beside the trained one.

`window_hop` > 0 is SoundNet's clip-level protocol: features of every window
of each clip (one every `window_hop` seconds), the classifier fitted on the
training folds' windows, and a clip's prediction the argmax of the mean
decision value over its windows.
"""
from __future__ import annotations

import csv
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from avjax import predict
from avjax.evaluators import base
from data_pipelines import fs


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter"))
def fit_logistic_regression(x, y, *, num_classes: int, C: float = 1.0, max_iter: int = 1000,
                            tol: float = 1e-6):
  """Multinomial logistic regression. x [N, D], y [N] int -> (W [D, K], b [K])."""
  n = x.shape[0]

  def objective(params):
    w, b = params
    logits = x @ w + b
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return xent + jnp.sum(w * w) / (2.0 * C * n)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(params, updates), state

  def keep_going(carry):
    _, state = carry
    count = otu.tree_get(state, "count")
    err = otu.tree_norm(otu.tree_get(state, "grad"))
    return (count == 0) | ((count < max_iter) & (err >= tol))

  params = (jnp.zeros((x.shape[1], num_classes), jnp.float32), jnp.zeros((num_classes,), jnp.float32))
  params, _ = jax.lax.while_loop(keep_going, step, (params, opt.init(params)))
  return params


def standardise(train: np.ndarray, test: np.ndarray):
  mean, std = train.mean(0), train.std(0)
  std = np.where(std > 1e-8, std, 1.0)
  return (train - mean) / std, (test - mean) / std


def probe_decisions(x_train, y_train, x_test, *, num_classes: int, C: float,
                    max_iter: int) -> np.ndarray:
  """Fits on one part -> decision values [N_test, K] on the other (features
  standardised on the train part)."""
  x_train, x_test = standardise(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
  w, b = fit_logistic_regression(jnp.asarray(x_train, jnp.float32), jnp.asarray(y_train, jnp.int32),
                                 num_classes=num_classes, C=C, max_iter=max_iter)
  return np.asarray(jnp.asarray(x_test, jnp.float32) @ w + b)


def probe_accuracy(x_train, y_train, x_test, y_test, *, num_classes: int, C: float,
                   max_iter: int) -> float:
  """Fits on one part, returns accuracy on the other."""
  pred = probe_decisions(x_train, y_train, x_test, num_classes=num_classes, C=C,
                         max_iter=max_iter).argmax(1)
  return float(np.mean(pred == y_test))


def clip_accuracy(decisions: np.ndarray, y: np.ndarray, clips: np.ndarray) -> float:
  """Windows' decision values [N, K] -> the accuracy of clip predictions, each
  the argmax of the mean decision value over its windows (SoundNet's protocol)."""
  ids, inverse = np.unique(clips, return_inverse=True)
  sums = np.zeros((len(ids), decisions.shape[1]))
  np.add.at(sums, inverse, decisions)
  label = np.zeros(len(ids), y.dtype)
  label[inverse] = y
  return float(np.mean(sums.argmax(1) == label))


def cross_validate(x, y, folds, *, num_classes: int, C: float, max_iter: int,
                   clips: np.ndarray | None = None, held_out=None) -> list[float]:
  """Accuracy on each fold (or each of `held_out`) with the others as training
  data. With `clips` (one id per row, rows being windows of those clips):
  clip-level accuracy."""
  accs = []
  for f in np.unique(folds) if held_out is None else held_out:
    test = folds == f
    d = probe_decisions(x[~test], y[~test], x[test], num_classes=num_classes, C=C,
                        max_iter=max_iter)
    accs.append(float(np.mean(d.argmax(1) == y[test])) if clips is None
                else clip_accuracy(d, y[test], clips[test]))
  return accs


def folds_from_csv(path: str, filenames, *, file_column: str, fold_column: str) -> np.ndarray:
  """Each clip's fold from a CSV keyed by file name (ESC-50's meta/esc50.csv layout).

  Clips are matched on their source file's base name, so the CSV may hold bare
  names while the shards store paths relative to the prepared folder.
  """
  with fs.open(path, "r") as f:
    rows = list(csv.DictReader(f))
  for col in (file_column, fold_column):
    if rows and col not in rows[0]:
      raise ValueError(f"{path}: no column {col!r} (columns: {list(rows[0])})")
  fold_of = {os.path.basename(r[file_column]): r[fold_column] for r in rows}
  names = [os.path.basename(base.text(n)) for n in filenames]
  missing = sorted({n for n in names if n not in fold_of})
  if missing:
    raise ValueError(f"{path}: no {fold_column!r} for {len(missing)} clip file(s), e.g. "
                     f"{missing[:3]}")
  return np.array([fold_of[n] for n in names])


class LinearProbe(base.Evaluator):
  def setup(self):
    self.require_labels("linear_probe")
    c = self.config
    self.modalities = self.parse_modalities("linear_probe")
    if c.features not in ("features", "embedding"):
      raise ValueError(f"config.evals.linear_probe.features: {c.features!r}; use features, embedding")
    if not c.folds_csv and c.num_folds < 2:
      raise ValueError("config.evals.linear_probe.num_folds must be at least 2")
    keys = {m: f"{m}_{c.features}" for m in self.modalities}

    @jax.jit
    def features(variables, batch):
      out = self.apply(variables, batch)
      missing = sorted(set(keys.values()) - set(out))
      if missing:
        raise ValueError(f"linear_probe: the model gives no {missing}")
      return {m: out[k].astype(jnp.float32) for m, k in keys.items()}

    self._features = features
    self._random_init = None

  def folds(self, filenames, video_ids) -> np.ndarray:
    c = self.config
    if c.folds_csv:
      return folds_from_csv(c.folds_csv, filenames, file_column=c.file_column,
                            fold_column=c.fold_column)
    return np.asarray(video_ids) % c.num_folds

  def held_out(self) -> tuple[list | None, bool]:
    """(the folds scored, or None for every fold in turn; whether the folds come
    from the batches): a TFDS dataset's official split, or config.test_fold."""
    tfds = self.config.get("tfds")
    if tfds is not None and tfds.name and tfds.train_split:
      return [b"test"], True
    test_fold = self.config.get("test_fold", "")
    return ([test_fold] if test_fold else None), False

  def probe(self, variables, prefix: str) -> dict:
    hop = self.config.window_hop
    held_out, from_batches = self.held_out()
    g = self.gather(self._features, variables, window_hop=hop,
                    host_keys=("labels", "filename", "video_id", "clip_index",
                               *(("fold",) if from_batches else ())))
    y, one = base.single_labels(g["labels"])
    folds = g["fold"][one] if from_batches else self.folds(g["filename"][one], g["video_id"][one])
    # With a test fold, rows of no fold ("": an official split leaves the video out)
    # are neither fitted nor scored.
    used = (folds != "") & (folds != b"") if held_out else np.ones(len(folds), bool)
    y, folds = y[used], folds[used]
    clips = g["clip_index"][one][used] if hop > 0 else None
    if held_out and not np.isin(folds, held_out).any():
      raise ValueError(f"config.evals.linear_probe: no clip is in the test fold {held_out[0]!r}")
    out = {}
    for m in self.modalities:
      accs = cross_validate(g[m][one][used], y, folds, num_classes=self.reader.num_classes,
                            C=self.config.C, max_iter=self.config.max_iter, clips=clips,
                            held_out=held_out)
      out[f"{prefix}_{m}_accuracy_mean"] = float(np.mean(accs))
      out[f"{prefix}_{m}_accuracy_std"] = float(np.std(accs))
    out[f"{prefix}_folds"] = int(len(held_out) if held_out else len(np.unique(folds)))
    scored = np.isin(folds, held_out) if held_out else np.ones(len(folds), bool)
    out[f"{prefix}_examples"] = int(len(np.unique(clips[scored])) if hop > 0 else scored.sum())
    if hop > 0:
      out[f"{prefix}_windows"] = int(scored.sum())
    return out

  def run(self, variables) -> dict:
    out = self.probe(variables, "linear_probe")
    if self.config.random_init:
      if self._random_init is None:
        self._random_init = predict.jit_once(self.fns.init)(jax.random.PRNGKey(self.seed))
      out.update({k: v for k, v in self.probe(self._random_init, "linear_probe_random_init").items()
                  if "accuracy" in k})
    return out
