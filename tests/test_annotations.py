"""avjax-import: VGG-SS's JSON and Flickr-SoundNet's XML files, in their public
formats, become the labels and boxes CSVs avjax-prepare reads; annotated videos
the folder lacks are counted and named, and the command still succeeds."""
import json
import shutil

import pytest

from data_pipelines import decode, ingest
from tests.conftest import ROOT, run_python


@pytest.fixture
def videos(videos_dir, tmp_path):
  """Two of the session's videos, renamed as the benchmarks name their clips."""
  src = sorted((videos_dir / "validation").glob("*.mp4"))[:2]
  out = tmp_path / "videos"
  (out / "sub").mkdir(parents=True)
  shutil.copy(src[0], out / "zpWuikVorYg_000032.mp4")
  shutil.copy(src[1], out / "sub" / "gEvCUcZ6w88_000030.mp4")
  return out


def run_import(*args):
  r = run_python(["-m", "avjax.import_annotations", *map(str, args)], cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


def test_vggss_json_to_prepare_csvs(videos, tmp_path):
  width, height = decode.probe_frame_size(str(videos / "zpWuikVorYg_000032.mp4"))
  entries = [
      {"file": "zpWuikVorYg_000032", "class": "elk bugling",  # pixels of the video's frame
       "bbox": [[0, height / 4, width / 2, height], [width / 2, 0, width, height / 2]]},
      {"file": "gEvCUcZ6w88_000030", "class": "female speech, woman speaking",  # normalised
       "bbox": [[0.45, 0.190625, 0.584375, 0.478125]]},
      {"file": "ORaz32CQ29k_000130", "class": "coyote howling", "bbox": [[0.1, 0.1, 0.6, 0.8]]},
  ]
  (tmp_path / "vggss.json").write_text(json.dumps(entries))
  out = tmp_path / "csv"
  said = run_import("vggss", f"--annotations={tmp_path / 'vggss.json'}", f"--videos={videos}",
                    f"--output={out}")
  assert "imported 2 video(s), 3 box(es)" in said and "1 annotated video(s) not in" in said
  assert (out / "missing.txt").read_text() == "ORaz32CQ29k_000130\n"
  labels = ingest.read_labels(str(out / "labels.csv"))
  assert labels == {"zpWuikVorYg_000032.mp4": ["elk bugling"],
                    "sub/gEvCUcZ6w88_000030.mp4": ["female speech, woman speaking"]}
  boxes = ingest.read_boxes(str(out / "boxes.csv"))
  assert boxes["zpWuikVorYg_000032.mp4"] == [(0.25, 0.0, 1.0, 0.5, -1.0), (0.0, 0.5, 0.5, 1.0, -1.0)]
  assert boxes["sub/gEvCUcZ6w88_000030.mp4"] == [(0.190625, 0.45, 0.478125, 0.584375, -1.0)]


FLICKR_XML = """<annotation><filename>{id}.jpg</filename>
<object><bbox><name>0</name><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bbox></object>
<object><bbox><name>1</name><xmin>0</xmin><ymin>0</ymin><xmax>128</xmax><ymax>64</ymax></bbox></object>
</annotation>"""


def test_flickr_xml_to_boxes_csv(videos, tmp_path):
  xml = tmp_path / "Annotations"
  xml.mkdir()
  for stem in ("zpWuikVorYg_000032", "gEvCUcZ6w88_000030", "missing_clip"):
    (xml / f"{stem}.xml").write_text(FLICKR_XML.format(id=stem, x1=64, y1=32, x2=192, y2=256))
  (tmp_path / "ids.csv").write_text("zpWuikVorYg_000032\nmissing_clip\n")
  out = tmp_path / "csv"
  said = run_import("flickr", f"--annotations={xml}", f"--videos={videos}", f"--output={out}",
                    f"--ids={tmp_path / 'ids.csv'}")
  assert "imported 1 video(s), 2 box(es)" in said and not (out / "labels.csv").exists()
  assert (out / "missing.txt").read_text() == "missing_clip\n"
  assert ingest.read_boxes(str(out / "boxes.csv")) == {"zpWuikVorYg_000032.mp4": [
      (0.125, 0.25, 1.0, 0.75, -1.0), (0.0, 0.0, 0.25, 0.5, -1.0)]}


def test_a_file_not_in_the_format_is_one_line_naming_it(videos, tmp_path):
  (tmp_path / "bad.json").write_text(json.dumps([{"file": "x", "bbox": []}]))
  r = run_python(["-m", "avjax.import_annotations", "vggss", f"--annotations={tmp_path / 'bad.json'}",
                  f"--videos={videos}", f"--output={tmp_path / 'o'}"], cwd=ROOT)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode != 0 and len(lines) == 1, r.stderr
  assert f"{tmp_path / 'bad.json'}: not VGG-SS's format" in lines[0]


def test_ave_events_become_timed_labels(videos, tmp_path):
  shutil.copy(videos / "zpWuikVorYg_000032.mp4", videos / "RUhOCu3LNXM.mp4")
  (tmp_path / "Annotations.txt").write_text(
      "Category&VideoID&Quality&StartTime&EndTime\n"
      "Church bell&RUhOCu3LNXM&good&0&1\n"
      "Church bell&VWi2ENBuTbw&good&0&0\n"       # not in the folder
      "Male speech, man speaking&zpWuikVorYg_000032&good&0&0\n")  # an empty event
  out = tmp_path / "csv"
  said = run_import("ave", f"--annotations={tmp_path / 'Annotations.txt'}", f"--videos={videos}",
                    f"--output={out}")
  assert "imported 1 video(s), 0 box(es)" in said and "1 annotated video(s) not in" in said
  assert "1 annotation(s) with an empty segment left out" in said
  assert ingest.read_labels(str(out / "labels.csv")) == {"RUhOCu3LNXM.mp4": [["Church bell", 0.0, 1.0]]}
  assert (out / "missing.txt").read_text() == "VWi2ENBuTbw\n"


def test_ucf101_and_hmdb51_splits_become_labels_and_folds(videos, tmp_path):
  shutil.copy(videos / "zpWuikVorYg_000032.mp4", videos / "v_ApplyEyeMakeup_g08_c01.avi")
  shutil.copy(videos / "zpWuikVorYg_000032.mp4", videos / "v_Archery_g01_c01.avi")
  ucf = tmp_path / "ucfTrainTestlist"
  ucf.mkdir()
  (ucf / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
  (ucf / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
  (ucf / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g02_c01.avi\n")
  (ucf / "trainlist02.txt").write_text("Archery/v_Archery_g01_c01.avi 2\n")
  said = run_import("ucf101", f"--annotations={ucf}", f"--videos={videos}", f"--output={tmp_path / 'u'}")
  assert "imported 2 video(s)" in said and "1 annotated video(s) not in" in said
  assert ingest.read_labels(str(tmp_path / "u" / "labels.csv")) == {
      "v_ApplyEyeMakeup_g08_c01.avi": ["ApplyEyeMakeup"], "v_Archery_g01_c01.avi": ["Archery"]}
  assert (tmp_path / "u" / "folds.csv").read_text() == (
      "filename,split1,split2\nv_ApplyEyeMakeup_g08_c01.avi,train,\nv_Archery_g01_c01.avi,test,train\n")

  hmdb = tmp_path / "testTrainMulti_7030_splits"
  hmdb.mkdir()
  (hmdb / "brush_hair_test_split1.txt").write_text("v_ApplyEyeMakeup_g08_c01.avi 1 \nnope.avi 2\n")
  (hmdb / "cartwheel_test_split1.txt").write_text("v_Archery_g01_c01.avi 0\n")
  said = run_import("hmdb51", f"--annotations={hmdb}", f"--videos={videos}", f"--output={tmp_path / 'h'}")
  assert "imported 2 video(s)" in said and "1 annotated video(s) not in" in said
  assert (tmp_path / "h" / "folds.csv").read_text() == (
      "filename,split1\nv_ApplyEyeMakeup_g08_c01.avi,train\nv_Archery_g01_c01.avi,\n")


def test_esc50_sounds_import_prepare_audio_only_and_probe_by_their_folds(tmp_path):
  """ESC-50's meta/esc50.csv and audio/ folder, in their public layout: labels and
  the official folds; the wavs prepared with --audio_only; the audio linear probe
  cross-validated over those folds. A listed sound the folder lacks is counted."""
  import numpy as np
  import soundfile
  from avjax.evaluators import runner
  from data_pipelines import synthetic
  from tests.conftest import FRAME_SIZE, SAMPLE_RATE, TINY_SPECTROGRAM, tiny_config
  audio = tmp_path / "ESC-50" / "audio"
  audio.mkdir(parents=True)
  rows = ["filename,fold,target,category,esc10,src_file,take"]
  rng = np.random.default_rng(0)
  for fold in (1, 2, 3, 4):
    for target, (category, cls) in enumerate((("dog", 0), ("rain", 3))):
      name = f"{fold}-{100000 + 10 * fold + target}-A-{target}.wav"
      wave = synthetic.class_sound(cls, 2 * SAMPLE_RATE, SAMPLE_RATE, rng) * 0.1
      soundfile.write(audio / name, wave.astype(np.float32), SAMPLE_RATE)
      rows.append(f"{name},{fold},{target},{category},True,100000,A")
  rows.append("5-999999-A-0.wav,5,0,dog,True,999999,A")  # not in the folder
  meta = tmp_path / "ESC-50" / "meta" / "esc50.csv"
  meta.parent.mkdir()
  meta.write_text("\n".join(rows) + "\n")
  out = tmp_path / "csv"
  said = run_import("esc50", f"--annotations={meta}", f"--videos={audio}", f"--output={out}")
  assert "imported 8 video(s)" in said and "1 annotated video(s) not in" in said
  assert ingest.read_labels(str(out / "labels.csv"))["1-100010-A-0.wav"] == ["dog"]
  assert (out / "folds.csv").read_text().splitlines()[:2] == ["filename,fold",
                                                               "1-100010-A-0.wav,1"]
  assert (out / "missing.txt").read_text() == "5-999999-A-0\n"

  ingest.prepare(str(audio), str(tmp_path / "data" / "esc"), labels_csv=str(out / "labels.csv"),
                 settings=ingest.PrepareSettings(sample_rate=SAMPLE_RATE, frame_size=FRAME_SIZE,
                                                 spectrogram=TINY_SPECTROGRAM, audio_only=True),
                 files_per_shard=4, workers=1, quiet=True)
  config = tiny_config("avenet", tmp_path / "data", train_split="esc")
  config.evals.linear_probe.update(batch_size=8, split="esc", modalities="audio",
                                   folds_csv=str(out / "folds.csv"), fold_column="fold")
  m = runner.evaluate(config, str(tmp_path / "work"), evals=["linear_probe"], random_init=True,
                      pictures=False)["metrics"]
  accuracy = [v for k, v in m.items() if k.startswith("linear_probe_audio") and "accuracy" in k]
  assert accuracy and all(0 <= v <= 1 for v in accuracy), m
  (tmp_path / "bad.csv").write_text("filename,category\nx.wav,dog\n")
  r = run_python(["-m", "avjax.import_annotations", "esc50", f"--annotations={tmp_path / 'bad.csv'}",
                  f"--videos={audio}", f"--output={out}"], cwd=ROOT)
  assert r.returncode != 0 and "bad.csv: needs columns filename, fold, category" in r.stderr
