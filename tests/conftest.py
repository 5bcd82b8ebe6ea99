import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("ORACLE_TEST_THREADS", "1")))

from tests.helpers import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama():
    return build_tiny_model("llama")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random Llama saved to disk, loadable like any local checkpoint."""
    from oracle.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama")
