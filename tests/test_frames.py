"""Device-side frame preparation against the TensorFlow image ops it stands for."""
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from avjax import frames, step_inputs
from data_pipelines.spectrogram import SpectrogramSpec


def test_colour_matrix_equals_the_ops_it_replaces():
  r = np.random.default_rng(0)
  image = r.uniform(0.1, 0.9, (8, 8, 3)).astype(np.float32)
  b, c, s = 0.05, 1.2, 0.7
  expected = tf.image.adjust_contrast(tf.constant(image) + b, c)
  grey = tf.image.rgb_to_grayscale(expected)
  expected = grey + s * (expected - grey)
  m, o = frames.colour_matrix(b, c, s, image.mean(axis=(0, 1)))
  np.testing.assert_allclose(image @ np.asarray(m) + np.asarray(o), expected, atol=1e-5)


def test_to_model_frames_flips_jitters_clips_and_normalises():
  r = np.random.default_rng(1)
  crops = r.integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
  augment = {"aug_flip": np.array([True, False, True]),
             "aug_brightness": np.array([0.1, -0.05, 0.0], np.float32),
             "aug_contrast": np.array([1.2, 0.8, 1.0], np.float32),
             "aug_saturation": np.array([0.7, 1.3, 1.0], np.float32)}
  out = np.asarray(jax.jit(frames.to_model_frames)(jnp.asarray(crops), augment))
  for i in range(3):
    x = tf.constant(crops[i], tf.float32) / 255.0
    if augment["aug_flip"][i]:
      x = tf.image.flip_left_right(x)
    x = tf.image.adjust_contrast(x + augment["aug_brightness"][i], augment["aug_contrast"][i])
    grey = tf.image.rgb_to_grayscale(x)
    x = tf.clip_by_value(grey + augment["aug_saturation"][i] * (x - grey), 0.0, 1.0)
    expected = (x.numpy() - frames.IMAGENET_MEAN) / frames.IMAGENET_STD
    np.testing.assert_allclose(out[i], expected, atol=1e-5, err_msg=str(i))


def test_without_draws_only_normalises_and_float_passes_through():
  crops = np.full((1, 2, 2, 3), 255, np.uint8)
  out = np.asarray(frames.to_model_frames(jnp.asarray(crops)))
  np.testing.assert_allclose(out[0, 0, 0], (1 - np.array(frames.IMAGENET_MEAN)) / frames.IMAGENET_STD,
                             rtol=1e-6)
  already = jnp.ones((1, 2, 2, 3), jnp.float32)
  assert frames.to_model_frames(already) is already
  spec = SpectrogramSpec(sample_rate=8000, win_length=256, hop_length=160, n_fft=256)
  magnitude = np.full((1, spec.num_frames, spec.num_bins), 6.0, np.float32)
  batch = step_inputs.model_inputs(
      {"frames": jnp.asarray(crops), "label": jnp.ones(1), "stft_magnitude": magnitude,
       "aug_gain": jnp.full(1, 0.5), "aug_flip": jnp.zeros(1, bool),
       "aug_brightness": jnp.zeros(1), "aug_contrast": jnp.ones(1),
       "aug_saturation": jnp.ones(1)}, spec)
  assert set(batch) == {"frames", "label", "spectrogram"} and batch["frames"].dtype == jnp.float32
  assert batch["spectrogram"].shape == (1, spec.num_bins, spec.num_frames, 1)
  np.testing.assert_allclose(batch["spectrogram"], np.log(3.0 + spec.log_offset), rtol=1e-6)


def test_zoom_out_shrinks_onto_a_mean_colour_canvas():
  x = np.zeros((2, 16, 16, 3), np.float32)
  x[:, 4:12, 4:12] = 1.0  # a white square, a quarter of the frame, in the middle
  z = np.array([[1.0, 0.5, 0.5], [0.5, 0.0, 1.0]], np.float32)  # as is; half size, top right
  y = np.asarray(frames.zoom_out(jnp.asarray(x), jnp.asarray(z)))
  np.testing.assert_allclose(y[0], x[0], atol=1e-6)
  np.testing.assert_allclose(y[1, 8:], 0.25, atol=1e-6)   # the canvas: the frame's mean
  np.testing.assert_allclose(y[1, :, :8], 0.25, atol=1e-6)
  top_right = y[1, :8, 8:, 0]
  assert top_right[3:5, 3:5].min() > 0.99 and top_right[0].max() < 0.01  # the square, 4 px
  assert abs(top_right.sum() - 16.0) < 0.5  # a quarter of the area: 8x8 px -> 4x4 px
  # In the step: drawn per frame, applied between the flip and the colour jitter.
  u8 = (x * 255).astype(np.uint8)
  draws = {"aug_flip": np.zeros(2, bool), "aug_brightness": np.zeros(2, np.float32),
           "aug_contrast": np.ones(2, np.float32), "aug_saturation": np.ones(2, np.float32)}
  plain = frames.to_model_frames(jnp.asarray(u8), draws)
  zoomed = frames.to_model_frames(jnp.asarray(u8), {**draws, "aug_zoom": jnp.asarray(z)})
  np.testing.assert_allclose(zoomed[0], plain[0], atol=1e-5)
  np.testing.assert_allclose(zoomed[1], frames.normalise(jnp.asarray(y[1])), atol=1e-5)
