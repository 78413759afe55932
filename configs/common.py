"""Shared config pieces. Experiments are `get_config(arg)` in sibling files."""
from __future__ import annotations

import ml_collections

PAPER_WIDTHS = (64, 128, 256, 512)
# avjax.losses.LOSSES's names, listed here so that loading a config imports no JAX
# (tests/test_contract.py checks that the two lists agree).
LOSS_NAMES = ("avc_softmax_xent", "avc_sigmoid_xent", "infonce", "hard_negatives", "selavi",
              "cosine_embedding", "shared_classifier", "sound_cluster_xent", "sound_bits_xent",
              "frame_class_xent", "soundnet_kl", "rotation_xent", "relpos_xent", "nt_xent",
              "order_xent", "colour_xent", "mae_pixels", "exemplar_xent",
              "separation_bce", "sonorization_robust")
TINY_WIDTHS = (16, 32, 64, 128)


def parse_arg(arg: str | None) -> ml_collections.ConfigDict:
  """"tiny" or "runlocal" -> CPU-sized run; "key=value,..." pairs set other flags."""
  out = ml_collections.ConfigDict({"tiny": False})
  for part in filter(None, (arg or "").split(",")):
    if part in ("tiny", "runlocal"):
      out.tiny = True
    elif "=" in part:
      k, v = part.split("=", 1)
      out[k] = v
    else:
      raise ValueError(f"config arg: unknown part {part!r} (expected 'tiny' or key=value)")
  return out


def data_config(tiny: bool) -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.dir = ""                 # folder of prepared splits; "" = the embedded default dataset
  d.train_split = "train"    # a folder under dir, or a glob of TFRecord shards
  d.eval_split = "validation"
  d.fps = 25.0               # used for shards that do not store it
  d.sample_rate = 48000
  d.spectrogram = ml_collections.ConfigDict(dict(
      win_length=480, hop_length=240, n_fft=512, log_offset=1e-5, seconds=1.0))
  d.resize = 256
  d.crop = 224
  d.negative_fraction = 0.5
  d.negatives = "stream"         # or "in_batch", or "shifted" (synchronisation)
  d.min_shift = 0.0              # shifted negatives: seconds from the aligned window
  d.both_examples = False        # shifted negatives: each clip as both its examples
  d.negatives_on_grid = True     # False: the offset shortcut, for ablations
  # How records are read (data_pipelines/records.py): "tfrecord" (TFRecordDataset;
  # the shuffle buffer holds records: a prepared 10 s paper-scale clip is several
  # MB) or "spans" (the opt-in avjax_cpu package: local shards' byte spans are
  # shuffled and each record read when it leaves the buffer). Files are also
  # shuffled every epoch.
  d.records = "tfrecord"
  d.shuffle_buffer = 256
  d.flip = True
  d.colour_jitter = 0.3
  d.zoom_out = 0.0               # > 0: frames shrunk by up to this onto a canvas (scale aug)
  d.gain_db = 3.0
  d.num_classes = 0              # 0: from the dataset manifest
  # Slice 1 s windows out of the |STFT| that prepare stored (same framing) rather
  # than parsing the waveform and running a float64 STFT per window; falls back
  # to computing it for shards without one and for off-grid negatives.
  d.stored_spectrogram = True
  # Pairs drawn from each record read: reading, checking and parsing a ~7 MB
  # paper-scale record of 10 s costs as much as many pairs' decoding, and a chip
  # consumes pairs faster than a host's cores decode them
  # (benchmarks/accelerator_plan.py --parts reader). Each pair has its own frame
  # and window (226 frame positions at 25 fps), and a clip's pairs land in
  # different batches (see data_pipelines.reader).
  d.examples_per_clip = 16
  d.audio = "spectrogram"        # or "waveform": the raw window (SoundNet)
  d.frame_stack = 0              # n > 0: also the frames under n segments of the window
  # tf.data autotuning of the reader's parallelism; off, each parallel stage may use
  # every core of the host (autotuning's own bookkeeping costs reader CPU time;
  # benchmarks/pipeline.py measures both).
  d.autotune = False
  if tiny:
    # 8 kHz, 32 ms window, 20 ms hop: 129x49, an eighth of the paper's 257x199
    # pixels, so that the audio net costs about what the 64 px vision net does.
    d.sample_rate = 8000
    d.spectrogram.update(win_length=256, hop_length=160, n_fft=256)
    d.resize, d.crop = 72, 64
    d.shuffle_buffer = 512
    d.examples_per_clip = 1  # 1.4 s clips: 5 distinct windows; the README figures
  return d


def tfds_probe() -> ml_collections.ConfigDict:
  """A probe's TFDS source (data_pipelines/tfds_reader.py); name "" = off."""
  return ml_collections.ConfigDict(dict(name="", split="test", train_split="", data_dir="",
                                        manual_dir="", download=False, audio="", image="",
                                        label="label"))


def base_config(model: dict, losses: dict, arg: str | None) -> ml_collections.ConfigDict:
  a = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.seed = 0
  # conv: "xla" (XLA's kernels everywhere) or "cpu_kernels" (the opt-in avjax_cpu
  # package: oneDNN and Winograd where a program is lowered for a CPU). remat: each
  # conv layer (VGG towers) or residual block (sync) recomputes its activations in
  # the backward pass instead of storing them: less memory, more compute.
  c.model = ml_collections.ConfigDict(dict(
      vision_widths=PAPER_WIDTHS, audio_widths=PAPER_WIDTHS, dtype="float32", conv="xla",
      remat=False, **model))
  c.data = data_config(a.tiny)
  # {loss name: weight} over every loss of avjax.losses.LOSSES; zero weight =
  # unused, so any loss can be switched on by an override or a sweep.
  c.losses = ml_collections.ConfigDict({**{name: 0.0 for name in LOSS_NAMES}, **losses})
  # hard_negatives: Chen et al. 2021's mask thresholds on the cosine map, mask
  # sharpness and softmax temperature (their values).
  c.loss_kwargs = ml_collections.ConfigDict({
      "infonce": {"temperature": 0.1, "pooling": "max", "topk": 0.1},
      "hard_negatives": {"positive": 0.65, "negative": 0.4, "sharpness": 0.03,
                         "temperature": 0.07}})
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", lr=1e-4, weight_decay=1e-5, b1=0.9, b2=0.999, grad_clip_norm=0.0))
  c.schedule = ml_collections.ConfigDict(dict(name="constant", warmup_steps=0))
  c.batch_size = 256          # global, over all devices and hosts
  # Data parallel over every device of every host (avjax.mesh.make_mesh).
  c.mesh = ml_collections.ConfigDict(dict(data=-1))
  c.total_steps = 200_000
  c.log_every = 100
  # best_metric: an evaluation metric (higher is better); its best checkpoint is
  # kept besides the last `keep`, and is what the evaluate command loads by default.
  c.checkpoint = ml_collections.ConfigDict(dict(every=2000, keep=3, async_save=True,
                                                best_metric="avc_accuracy"))
  # Warm start (big_vision's model_init): at step 0, the submodules named in
  # `modules` ("vision", or "theirs:ours,...") take their weights from another
  # training workdir's checkpoint ("best", "latest" or a step), e.g. a frame tower
  # trained audio-visually; "*" copies every submodule (a whole model of the same
  # shapes, e.g. one trained on other data). A resumed run restores its own checkpoint instead.
  c.init_from = ml_collections.ConfigDict(dict(workdir="", checkpoint="best", modules="vision"))
  c.evals = ml_collections.ConfigDict()
  c.evals.avc = ml_collections.ConfigDict(dict(every=5000, split="", batch_size=256))
  # The rest are off during training by default (every=0), e.g.
  # --config.evals.retrieval.every=1000; `python -m avjax.evaluate --evals=...`
  # runs any of them on a checkpoint. split "" = config.data.eval_split;
  # `pictures` = how many examples the evaluate command draws.
  # features: "embedding" (the models' embeddings, all four directions) or
  # "features" (each tower's max-pooled features, L2-normalised: what frame-only
  # pretext models have; the directions of the modalities the model gives).
  c.evals.retrieval = ml_collections.ConfigDict(dict(every=0, split="", batch_size=256, k=30,
                                                     graded=False, pictures=4,
                                                     features="embedding"))
  # Needs boxes; on the embedded dataset use split "test_crowded" (3-4 objects, one sounding).
  # scales: the frame enlarged by each factor too ("1,2": objects half the
  # training size met at the trained size); fusion: the scales' maps combined
  # per pixel by "max" (the widest response) or "mean" (what they agree on).
  # map: "similarity" (location embeddings' cosine with the audio embedding) or
  # "heatmap" (the model's own, AVOL-Net's sigmoid); evaluators/localisation.py.
  c.evals.localisation = ml_collections.ConfigDict(dict(every=0, split="", batch_size=256,
                                                        pictures=8, scales="1", fusion="max",
                                                        map="similarity"))
  # features: "features" (pooled conv features) or "embedding". Folds from
  # folds_csv's fold_column (matched on file_column's base name), else num_folds
  # folds by video; test_fold set (e.g. "test" with avjax-import ucf101's folds.csv
  # and fold_column="split1"): fit on the other folds, score that one only, and
  # leave out rows of no fold. C is scikit-learn's inverse L2 strength.
  # window_hop > 0 (seconds): every window of each clip, one per hop, and a clip's
  # prediction the mean decision value of its windows (SoundNet's protocol; one
  # host); window_seconds > 0: audio windows of that length instead of training's.
  # tfds.name: a TensorFlow Datasets classification dataset read instead of a
  # prepared split (data_pipelines/tfds_reader.py): its audio and/or image, the
  # label feature; train_split set = fit there and score `split` (official
  # splits), else k folds of `split`. Nothing downloads unless download=True.
  c.evals.linear_probe = ml_collections.ConfigDict(dict(
      every=0, split="", batch_size=256, modalities="audio,frame", features="features",
      folds_csv="", fold_column="fold", file_column="filename", test_fold="", num_folds=5, C=1.0,
      max_iter=1000, random_init=True, window_hop=0.0, window_seconds=0.0, tfds=tfds_probe()))
  # k-means on embeddings (k = number of classes when 0), or the model's cluster head.
  c.evals.clustering = ml_collections.ConfigDict(dict(every=0, split="", batch_size=256,
                                                      modalities="audio,frame", num_clusters=0,
                                                      tfds=tfds_probe()))
  # Synchronisation models: each clip's frames against its audio at offsets of
  # -max_offset..max_offset seconds, `step` apart; the chosen offset should be 0.
  c.evals.sync_offsets = ml_collections.ConfigDict(dict(every=0, split="", batch_size=256,
                                                        max_offset=1.0, step=0.2, tolerance=0.2))
  # Separation models (configs/separation.py): mixtures "pairs": each clip of the split
  # mixed with the clip half the split away, both separated; SI-SDR improvement over the mixture on
  # every clip (`clips` 0) or the first `clips`, and mir_eval's SDR / SIR / SAR on the
  # first `bss_eval_mixtures` mixtures (a quarter second each on a CPU).
  # mixtures "scenes": each clip's own sound mixes its annotated objects (the embedded
  # duets_test): each object is separated by the frame greyed outside its box
  # (speakers_csv) and scored against its stem (stems_dir/<video>_object<k>.flac;
  # "" = speakers.csv and stems/ beside the split's shards), the stems shifted by up to
  # max_lag s to line up with the decoded mixture (codec delays).
  c.evals.separation = ml_collections.ConfigDict(dict(every=0, split="", batch_size=256,
                                                      clips=0, bss_eval_mixtures=64,
                                                      mixtures="pairs", speakers_csv="",
                                                      stems_dir="", max_lag=0.05))
  # Active speaker detection from a sync model's CAM (avjax/evaluators/active_speaker.py):
  # speakers_csv "" = speakers.csv beside the split's shards (the embedded turns_test
  # has one); windows every window_hop s (0: one step of the map), each step's map
  # averaged over the windows that see it and, with `relative`, less its spatial mean;
  # tracks at the clip's max_objects strongest map peaks, each allowed to drift
  # track_radius cells; with `compete`, each object's score less the highest of the
  # other annotated objects' at that step.
  c.evals.active_speaker = ml_collections.ConfigDict(dict(
      every=0, split="", batch_size=256, speakers_csv="", window_hop=0.0, relative=True,
      max_objects=16, track_radius=0, compete=True))
  # Sonorization models (avjax/evaluators/sonorization.py): windows every window_hop s
  # (0: half a window); material and action probes (k folds by video) on the predicted
  # and the real sound's pooled features, for each group of label_groups; onsets are
  # flux peaks above onset_threshold of the clip's largest, onset_min_gap s apart, and
  # match within onset_tolerance s.
  c.evals.sonorization = ml_collections.ConfigDict(dict(
      every=0, split="", batch_size=256, window_hop=0.0,
      label_groups="material=wood,metal,glass,stone;action=hit,scrape", num_folds=5, C=1.0,
      max_iter=1000, onset_threshold=0.5, onset_min_gap=0.2, onset_tolerance=0.1))
  # A jax.profiler trace of steps start_step .. start_step + num_steps - 1 into dir
  # ("" = WORKDIR/profile); num_steps 0 = off (avjax/tracing.py).
  c.profile = ml_collections.ConfigDict(dict(start_step=10, num_steps=0, dir=""))
  c.progress_bar = True
  if a.tiny:
    c.model.vision_widths = TINY_WIDTHS
    c.model.audio_widths = TINY_WIDTHS
    c.batch_size = 64
    c.total_steps = 1200
    # A short run needs a higher peak rate and an annealed end (see README).
    c.optimizer.lr = 2e-3
    c.schedule.update(name="warmup_cosine", warmup_steps=50)
    c.log_every = 50
    c.checkpoint.every = 300
    c.evals.avc.every = 300
    c.evals.avc.batch_size = 100
    for name in ("retrieval", "localisation", "linear_probe", "clustering", "sync_offsets",
                 "separation", "active_speaker", "sonorization"):
      c.evals[name].batch_size = 100
  return c


def without_correspondence(c: ml_collections.ConfigDict, *, evaluator: str,
                           best_metric: str) -> ml_collections.ConfigDict:
  """For methods that train no correspondence head (contrastive, self-labelling):
  every pair is a positive, `evaluator` validates on AVC's schedule instead of
  AVC, and `best_metric` picks the best checkpoint."""
  c.data.negative_fraction = 0.0
  c.evals[evaluator].every = c.evals.avc.every
  c.evals.avc.every = 0
  c.checkpoint.best_metric = best_metric
  return c


def frame_order_config(task: str, arg=None, **model) -> ml_collections.ConfigDict:
  """A video pretext baseline (avjax/models/pretext_video.py): the frame tower over
  each frame of `frame_stack` frames under the 1 s window; on the tiny scale the
  embedded dataset's time-structured splits (objects that swell and fade at their
  own times), which hold the motion frame order needs."""
  c = base_config(model=dict(name="frame_order", task=task, hidden=512, **model),
                  losses={"order_xent": 1.0}, arg=arg)
  del c.model["audio_widths"]  # frames only
  c.data.frame_stack = 10
  c.evals.linear_probe.modalities = "frame"
  c.evals.clustering.modalities = "frame"
  if parse_arg(arg).tiny:
    c.data.update(train_split="sync_train", eval_split="sync_validation", frame_stack=8)
    # 8 consecutive frames at 25 fps: a swell's sudden onset and slower fade
    # (synthetic.EVENT_SWELL) span a few frames, which 8 frames a second skip.
    c.data.spectrogram.seconds = 8 / 25
    c.batch_size = 32  # x 8 frames through the tower
    c.model.hidden = 64
  return without_correspondence(c, evaluator="linear_probe",
                                best_metric="linear_probe_frame_accuracy_mean")
