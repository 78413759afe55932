"""The linear probe on a TFDS dataset by name, at random init, in a process of its
own (epath picks its gs:// backend once per process, so a bucket test cannot
switch it within pytest's):

  python tests/scripts/tfds_probe.py DATA_DIR WORKDIR TFDS_JSON

TFDS_JSON: the config.evals.linear_probe.tfds keys to set. The tests' TFDS
builders are registered first. Prints the metrics as JSON; errors in one line.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from avjax import cli  # noqa: E402
from avjax.evaluators import runner  # noqa: E402
from tests import tfds_builders  # noqa: E402,F401 (registers the builders)
from tests.conftest import tiny_config  # noqa: E402


def probe(data_dir: str, workdir: str, tfds_json: str) -> None:
  config = tiny_config("avenet", data_dir, total_steps=1)
  config.evals.linear_probe.update(batch_size=16, max_iter=200)
  config.evals.linear_probe.tfds.update(json.loads(tfds_json))
  out = runner.evaluate(config, workdir, evals=["linear_probe"], random_init=True,
                        pictures=False)["metrics"]
  print(json.dumps(out))


if __name__ == "__main__":
  cli.with_one_line_errors("tfds_probe", probe)(*sys.argv[1:4])
