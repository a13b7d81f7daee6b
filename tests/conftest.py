"""Test-wide settings: one torch thread (fast and stable on 2-core machines), no progress bars."""

import hashlib
import os

import pytest

os.environ.setdefault("LIFELONG_THREADS", "1")
# the workspace's real data (../shared/data beside the repository), where the library looks for it: LIFELONG_DATA
_SHARED_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data"
)
if os.path.isdir(_SHARED_DATA):
    os.environ.setdefault("LIFELONG_DATA", _SHARED_DATA)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(int(os.environ["LIFELONG_THREADS"]))
    yield


@pytest.fixture
def blobs():
    """Four well-separated Gaussian classes in 8 dimensions."""
    from lifelong.data import make_blobs

    return make_blobs(num_classes=4, per_class=40, dim=8, seed=0)


def shared_path(*parts: str) -> str:
    """Path under the workspace's shared/ folder (../shared from the repo root)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(root), "shared", *parts)


CLINC = shared_path("data", "clinc150")
needs_clinc = pytest.mark.skipif(
    not os.path.isfile(os.path.join(CLINC, "data_full.json")),
    reason="the shared CLINC150 copy is not next to the repository",
)


class HashEncoder:
    """Deterministic fake sentence encoder (8-d vectors from each text's hash): no model, instant."""

    fingerprint = "hash-encoder-v1"
    identity = {"name": "hash"}

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        import numpy as np
        import torch

        self.calls += 1
        b = np.frombuffer(b"".join(hashlib.sha256(t.encode()).digest()[:8] for t in texts), dtype=np.uint8)
        return torch.tensor(b.reshape(len(texts), 8), dtype=torch.float32) / 255.0


def interrupt_learning_at(monkeypatch, cls, index: int) -> None:
    """Make ``cls.learn`` raise KeyboardInterrupt (a Ctrl-C) at experience ``index``; undo with monkeypatch.undo."""
    original = cls.learn

    def dies(self, experience):
        if experience.index == index:
            raise KeyboardInterrupt
        return original(self, experience)

    monkeypatch.setattr(cls, "learn", dies)


# ---- a tiny text model and text data (methods that train inside a transformer) -----------------
WORDS = "book a flight to paris cancel my card balance please what is the weather today tomorrow rain sun".split()


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    """A 2-layer, 16-wide random BERT with a 23-word vocabulary, saved as a local Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer.from_pretrained(str(folder))  # reads vocab.txt (any transformers version)
    assert len(tokenizer) == len(vocab)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(str(folder))
    return folder


def text_data():
    """Four topics of 4-word sentences over WORDS (24 train / 8 test each), raw texts in meta."""
    import numpy as np
    import torch

    from lifelong.data import Dataset

    rng = np.random.default_rng(0)
    topics = [WORDS[0:5], WORDS[5:9], WORDS[9:14], WORDS[14:18]]
    texts, labels = [], []
    for c, words in enumerate(topics):
        for _ in range(32):  # 24 train / 8 test sentences per class: one test sentence is 1/16 of a task
            texts.append(" ".join(rng.choice(words, size=4)))
            labels.append(c)
    y = torch.tensor(labels)
    tr = torch.tensor([i % 4 != 0 for i in range(len(y))])
    x = torch.zeros(len(y), 3)  # stand-in sentence features, as a frozen-encoder loader would give
    return Dataset(
        "topics",
        x[tr],
        y[tr],
        x[~tr],
        y[~tr],
        ["travel", "bank", "weather", "sky"],
        meta={
            "texts_train": [t for t, k in zip(texts, tr) if k],
            "texts_test": [t for t, k in zip(texts, tr) if not k],
        },
    )


@pytest.fixture
def token_stream(tiny_text_model):
    """Two experiences of two topics each, as token ids of the tiny BERT's tokenizer."""
    from lifelong.data.tokens import text_token_dataset
    from lifelong.scenarios import class_incremental

    return class_incremental(text_token_dataset(text_data(), encoder=tiny_text_model, max_length=16), tasks=2, seed=0)
