"""SoundNet: the student's shape rules, the distillation loss, and the
teacher -> student chain through the trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import losses, models
from avjax.models import soundnet
from configs import soundnet as soundnet_config
from tests.conftest import tiny_config


def test_paper_settings_give_four_label_steps():
  """20 s at 22,050 Hz -> conv8 gives 4 steps, by the rule and by the model itself."""
  c = soundnet_config.get_config()
  m = models.build(c.model)
  n = int(c.data.spectrogram.seconds * c.data.sample_rate)
  assert n == 441000
  rule = soundnet.output_steps(n, kernels=m.kernels, strides=m.strides, pools=m.pools,
                               head_kernel=m.head_kernel, head_stride=m.head_stride)
  out = jax.eval_shape(lambda: m.init_with_output(jax.random.PRNGKey(0), None,
                                                  jnp.zeros((1, n)))[0])
  assert rule == 4 == c.data.frame_stack
  assert [h.shape for h in out["audio_step_logits"]] == [(1, 4, 1000)]
  assert out["audio_features"].shape == (1, 256)  # pool5's channels


@pytest.mark.parametrize("n", [8000, 12345, 30000])
def test_output_steps_rule_matches_the_model(n):
  c = soundnet_config.get_config("tiny")
  m = models.build(c.model)
  out = jax.eval_shape(lambda: m.init_with_output(jax.random.PRNGKey(0), None,
                                                  jnp.zeros((1, n)))[0])
  assert out["audio_step_logits"][0].shape[1] == soundnet.output_steps(
      n, kernels=m.kernels, strides=m.strides, pools=m.pools, head_kernel=m.head_kernel,
      head_stride=m.head_stride)


def test_short_windows_give_features_only_and_cannot_train():
  """The probe's 1 s windows at paper scale have no conv8 step: features only;
  initialising or training on them is a clear error."""
  m = models.build(soundnet_config.get_config().model)
  with pytest.raises(ValueError, match="lengthen config.data.spectrogram.seconds"):
    m.init(jax.random.PRNGKey(0), None, jnp.zeros((1, 22050)))
  variables = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), None, jnp.zeros((1, 441000))))
  out = jax.eval_shape(lambda v: m.apply(v, None, jnp.zeros((2, 22050))), variables)
  assert set(out) == {"audio_features"} and out["audio_features"].shape == (2, 256)
  with pytest.raises(ValueError, match="before conv8"):
    jax.eval_shape(lambda v: m.apply(v, None, jnp.zeros((2, 22050)), train=True,
                                     mutable=["batch_stats"]), variables)


def test_soundnet_kl_equals_a_hand_computation():
  p = np.array([[[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]]], np.float32)      # [B=1, steps=2, K=3]
  logits = np.array([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]], np.float32)
  p2 = np.array([[[0.25, 0.75], [1.0, 0.0]]], np.float32)             # a second teacher
  logits2 = np.array([[[0.0, 1.0], [2.0, 0.0]]], np.float32)

  def kl(p, logits):
    q = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    terms = [pi * np.log(pi / qi) for pi, qi in zip(p.ravel(), q.ravel()) if pi > 0]
    return sum(terms) / p.shape[1]  # mean over steps

  got = losses.soundnet_kl(outputs={"audio_step_logits": [logits, logits2]},
                           batch={"teacher_probs": [p, p2]})
  np.testing.assert_allclose(got, kl(p, logits) + kl(p2, logits2), rtol=1e-5)
  # A student that matches its teacher pays nothing.
  assert float(losses.soundnet_kl(outputs={"audio_step_logits": [np.log(p2 + 1e-30)]},
                                  batch={"teacher_probs": [p2]})) < 1e-6
  with pytest.raises(ValueError, match="2 teachers"):
    losses.soundnet_kl(outputs={"audio_step_logits": [logits]}, batch={"teacher_probs": [p, p2]})


def test_frame_class_xent_shares_a_multi_label_clips_mass():
  logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]], np.float32)
  labels = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], np.int32)  # the third has no label
  batch = {"labels": labels, "label": np.ones(3, np.int32)}
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = (-log_q[0, 0] - 0.5 * (log_q[1, 1] + log_q[1, 2])) / 2
  got = losses.frame_class_xent(outputs={"frame_class_logits": logits}, batch=batch)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_teacher_then_student_train_through_the_trainer(data_dir, tmp_path, capsys):
  """A frame classifier trains; SoundNet distils it (the teacher's posteriors
  reach the loss), and is validated by the audio linear probe."""
  from avjax import input as input_lib
  from avjax import train
  teacher = tiny_config("frame_classifier", data_dir, total_steps=2, log_every=1)
  classes = input_lib.make_reader(teacher.data, "train", global_batch=8, seed=0).num_classes
  teacher.model.classifier_classes = classes
  teacher.evals.linear_probe.num_folds = 2
  train.train_and_evaluate(teacher, str(tmp_path / "teacher"))
  student = tiny_config("soundnet", data_dir, total_steps=2, log_every=1)
  student.teachers.objects.workdir = str(tmp_path / "teacher")
  student.model.head_classes = (classes,)
  student.evals.linear_probe.num_folds = 2
  metrics = train.train_and_evaluate(student, str(tmp_path / "student"))
  assert "teacher objects: frame_class_logits" in capsys.readouterr().out
  assert 0.0 <= metrics["linear_probe_audio_accuracy_mean"] <= 1.0
  assert "linear_probe_random_init_audio_accuracy_mean" in metrics


def test_teacher_mistakes_are_named(data_dir, tmp_path):
  from avjax import config_check, train
  student = tiny_config("soundnet", data_dir, total_steps=1)
  with pytest.raises(ValueError, match="config.teachers.objects.workdir: empty"):
    train.train_and_evaluate(student, str(tmp_path / "a"))
  student.model.head_classes = (12, 5)
  with pytest.raises(config_check.ConfigError, match="one entry per teacher"):
    config_check.check(student)


def test_one_paper_scale_update_step():
  """The paper's network, window and 4 steps: one update on two examples lowers
  nothing to NaN and moves the weights."""
  from tests.conftest import one_update
  c = soundnet_config.get_config()
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(1000), size=(2, 4)).astype(np.float32)
  batch = {"frames": np.zeros((2, 8, 8, 3), np.uint8),
           "waveform": rng.normal(0, 0.1, (2, 441000)).astype(np.float32),
           "teacher_probs": [probs], "label": np.ones(2, np.int32)}
  state, new, metrics = one_update(c, batch)
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
  before, after = state.params["conv1"]["kernel"], new.params["conv1"]["kernel"]
  assert float(jnp.abs(after - before).max()) > 0


def test_selavi_cluster_heads_teach_soundnet(data_dir, tmp_path):
  """The fully self-supervised chain: SeLaVi's frame cluster head is the teacher."""
  from avjax import predict, train
  teacher = tiny_config("selavi", data_dir, total_steps=2, log_every=1)
  teacher.evals.clustering.every = 0
  train.train_and_evaluate(teacher, str(tmp_path / "selavi"))
  shapes = predict.model_fns(models.build(teacher.model), teacher.data).output_shapes()
  student = tiny_config("soundnet", data_dir, total_steps=2, log_every=1)
  student.teachers.objects.update(workdir=str(tmp_path / "selavi"),
                                  output="frame_cluster_logits", checkpoint="latest")
  student.model.head_classes = (shapes["frame_cluster_logits"].shape[-1],)
  student.evals.linear_probe.every = 0
  train.train_and_evaluate(student, str(tmp_path / "student"))
  student.model.head_classes = (3,)
  with pytest.raises(ValueError, match=r"head_classes=\(3,\): the teachers \(objects\) give"):
    train.train_and_evaluate(student, str(tmp_path / "other"))
