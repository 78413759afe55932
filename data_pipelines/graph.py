"""How the pipelines' functions enter tf.data graphs.

They are plain graph code (tf.cond and tf.where for data-dependent choices;
Python branches only on static settings), so autograph's source transformation
adds nothing but time: about 9 s of tracing for every reader built, measured on
the tiny configs (cProfile of a two-step training run).
"""
import tensorflow as tf

graph_fn = tf.autograph.experimental.do_not_convert
