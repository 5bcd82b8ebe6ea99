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


@pytest.fixture(scope="session")
def toy_oracle_dirs(tmp_path_factory):
    """(the shipped toy-world oracle, a copy of it configured for the embedding site)."""
    import json
    import shutil

    from oracle.defaults import default_oracle
    from worlds.toy.world import TOY_WORLD

    layer_dir = default_oracle()
    embedding_dir = tmp_path_factory.mktemp("toy_oracle") / "oracle_embedding"
    shutil.copytree(layer_dir, embedding_dir)
    config_path = embedding_dir / "oracle_config.json"
    config = json.loads(config_path.read_text())
    config["injection_site"] = "embedding"
    config["base_model"] = str(TOY_WORLD / "target")
    config_path.write_text(json.dumps(config))
    return layer_dir, embedding_dir


@pytest.fixture(scope="session")
def toy_vllm_engine(toy_oracle_dirs, tmp_path_factory):
    """THE vLLM engine of the test session (start-up costs a minute): the toy world's oracle.

    Every vLLM test shares it; none closes it (the fixture does, at the session's end), so the
    tests pass in any order.
    """
    pytest.importorskip("vllm", reason="vLLM is not installed (scripts/setup.sh --vllm)")
    from oracle.engines import create_engine

    engine = create_engine(
        "vllm",
        oracle=str(toy_oracle_dirs[0]),
        dtype="float32",
        max_model_len=256,  # the toy target's max_position_embeddings
        cache_dir=tmp_path_factory.mktemp("vllm_merged"),
    )
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def toy_hf_engine(toy_oracle_dirs):
    from oracle.engines import create_engine

    return create_engine("hf", oracle=str(toy_oracle_dirs[0]), dtype="float32", device="cpu")
