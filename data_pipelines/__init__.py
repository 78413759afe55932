"""Data path: video files -> DMVR-format TFRecords -> tf.data audio-visual batches."""
