"""Config overrides that make each method quick in the shared tests (fewer epochs, smaller buffers)."""

#: method name -> config overrides used by the conformance tests
TEST_CONFIGS = {
    'aper': {"epochs": 3, "batch_size": 16},
    'cfsl': {"epochs": 5, "hidden": (32,)},
    'codyra': {"epochs": 4, "hidden": (32,), "rank": 4, "lr": 0.01, "batch_size": 16},
    'dkvb': {"epochs": 3, "num_codebooks": 16, "pairs_per_codebook": 16, "dim_keys": 4, "init_epochs": 3,
                   "batch_size": 32},
    'dst': {"epochs": 3, "batch_size": 16, "hidden": (32,), "update_every": 4, "density": 0.5},
    'fscil-tricks': {"base_epochs": 3, "hidden": 32, "subnet_steps": 2, "batch_size": 32},
    'hle': {"buffer_size": 40, "epochs": 2},
    'hypernet': {"epochs": 5, "batch_size": 16, "hidden": (16,), "chunk_size": 64, "lstm_hidden": 16,
                   "emb_dim": 8, "chunk_emb_dim": 8},
    'lame': {"inner": "ncm"},
    'lora-seq': {"epochs": 4, "hidden": (32,), "rank": 4, "lr": 0.01, "batch_size": 16},
    'mamba-fscil': {"tokens": 2, "mid_channels": 16, "d_state": 4, "base_epochs": 10, "batch_size": 16, "lr": 0.01,
                   "inc_steps": 5},
    'onpro': {"buffer_size": 40, "buffer_batch_size": 16, "epochs": 2, "lr": 0.005},
    'prd': {"epochs": 3, "batch_size": 32, "lr": 0.05},
    'slca': {"epochs": 3, "milestones": (2,), "ca_epochs": 2, "ca_samples": 32},
    'tame': {"batch_size": 8, "epochs": 5, "hidden": (32,), "selector_hidden": (32,),
                   "selector_epochs": 30, "selector_prune_epochs": 5, "prune_epochs": 5, "buffer_size": 64,
                   "prune_buffer_size": 32},
}
