"""The probes read a TFDS dataset by name: GeneratorBasedBuilders over generated
scenes and wav files, built with TFDS's own download_and_prepare into a local
data_dir, probed with their official train/test splits by a briefly trained tiny
AVE-Net and by the same network at random initialisation; an unprepared dataset
is named, and nothing is downloaded."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from avjax.evaluators import runner
from data_pipelines import synthetic
from tests.conftest import tiny_config
from tests.tfds_builders import RATE

pytestmark = pytest.mark.xdist_group("test_tfds_probe")

SCENES = {"train": synthetic.SplitSpec("train", 240, seed=71, silent_probs=(1.0,)),
          "test": synthetic.SplitSpec("test", 120, seed=72, silent_probs=(1.0,))}


class AvjaxScenes(tfds.core.GeneratorBasedBuilder):
  """Scenes of one embedded-dataset object each: the middle frame, the sound and
  the object's class, as TFDS's Image, Audio and ClassLabel features."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(64, 64, 3)),
        "audio": tfds.features.Audio(sample_rate=RATE, dtype=np.int16),
        "label": tfds.features.ClassLabel(names=list(synthetic.CLASSES))}))

  def _split_generators(self, dl_manager):
    return {s: self._generate_examples(split) for s, split in SCENES.items()}

  def _generate_examples(self, split):
    video = synthetic.VideoSpec(size=64, sample_rate=RATE)
    for i in range(split.num_clips):
      frames, sound, cls, _ = synthetic.make_scene(split, i, video)
      yield i, {"image": frames[len(frames) // 2], "label": cls,
                "audio": (np.clip(sound, -1, 1) * 32767).astype(np.int16)}


@pytest.fixture(scope="module")
def more_clips(tmp_path_factory):
  """Prepared training clips, 10x the session fixture's: enough for the frame
  tower to learn the objects' classes in a minute."""
  from tests.conftest import generate_and_prepare
  root = tmp_path_factory.mktemp("more_clips")
  generate_and_prepare(synthetic.SplitSpec("train", 240, seed=81), root / "videos",
                       root / "prepared" / "train", files_per_shard=24)
  return root / "prepared"


@pytest.mark.slow
def test_linear_probe_reads_a_tfds_dataset_by_name(more_clips, tmp_path):
  """A tiny AVE-Net trained for a minute, probed on a TFDS dataset by name with
  its official splits: well above chance on both towers, where the same network
  at random initialisation is near chance on frames."""
  from avjax import train
  AvjaxScenes(data_dir=str(tmp_path / "tfds")).download_and_prepare()
  config = tiny_config("avenet", more_clips, total_steps=1000, log_every=1000, batch_size=16)
  config.data.eval_split = "train"  # no evaluation runs while training
  # The tiny config's own widths: tiny_config's (4, 8, 8, 8) learn too little here.
  config.model.vision_widths = config.model.audio_widths = (16, 32, 64, 128)
  config.evals.avc.every = 0
  config.checkpoint.update(every=1000, async_save=False)
  train.train_and_evaluate(config, str(tmp_path / "w"))
  probe = config.evals.linear_probe
  probe.update(batch_size=16, max_iter=200)
  probe.tfds.update(name="avjax_scenes", split="test", train_split="train",
                    data_dir=str(tmp_path / "tfds"))
  record = runner.evaluate(config, str(tmp_path / "w"), evals=["linear_probe"],
                           checkpoint="latest", pictures=False)
  out = record["metrics"]
  assert record["step"] == 1000
  assert out["linear_probe_examples"] == SCENES["test"].num_clips
  assert out["linear_probe_folds"] == 1
  chance = 1 / len(synthetic.CLASSES)
  # Seeds 0-2's figures are in the README's TFDS paragraph.
  assert out["linear_probe_random_init_frame_accuracy_mean"] < 2.5 * chance
  assert out["linear_probe_frame_accuracy_mean"] > out[
      "linear_probe_random_init_frame_accuracy_mean"] + 0.10
  # Random conv features already separate the sounds' timbres (as the embedded
  # dataset's: SoundNet's README row); training still adds to them.
  assert out["linear_probe_audio_accuracy_mean"] > out[
      "linear_probe_random_init_audio_accuracy_mean"]


def test_an_unprepared_tfds_dataset_is_named_without_downloading(data_dir, tmp_path):
  config = tiny_config("avenet", data_dir, total_steps=1)
  config.evals.linear_probe.tfds.update(name="avjax_tones", data_dir=str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="tfds 'avjax_tones' is not prepared in .*download=True"):
    runner.evaluate(config, str(tmp_path), evals=["linear_probe"], random_init=True,
                    pictures=False)


class AvjaxShapes(tfds.core.GeneratorBasedBuilder):
  """Short videos of one embedded-dataset shape each, as TFDS's Video feature."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "video": tfds.features.Video(shape=(None, 40, 40, 3)),
        "label": tfds.features.ClassLabel(names=list(synthetic.CLASSES[:3]))}))

  def _split_generators(self, dl_manager):
    return {"test": self._generate_examples()}

  def _generate_examples(self):
    for cls in range(3):
      for i in range(4):
        mask = synthetic.shape_mask(cls, 40, angle=0.3 * i)
        frames = np.zeros((3, 40, 40, 3), np.uint8)
        frames[:, mask] = 255
        yield f"{cls}_{i}", {"video": frames, "label": cls}


def test_clustering_reads_a_tfds_video_dataset_by_its_middle_frames(data_dir, tmp_path):
  AvjaxShapes(data_dir=str(tmp_path / "data")).download_and_prepare()
  config = tiny_config("avenet", data_dir, total_steps=1)
  config.evals.clustering.update(batch_size=8)
  config.evals.clustering.tfds.update(name="avjax_shapes", data_dir=str(tmp_path / "data"))
  out = runner.evaluate(config, str(tmp_path / "w"), evals=["clustering"], random_init=True,
                        pictures=False)["metrics"]
  assert set(out) == {"clustering_frame_nmi", "clustering_frame_ari", "clustering_frame_accuracy"}
  assert 0.0 <= out["clustering_frame_nmi"] <= 1.0
