"""The core's fixtures (a small embedded-style dataset) serve these tests too."""
from tests.conftest import data_dir, videos_dir  # noqa: F401
