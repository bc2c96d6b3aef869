"""lmlab.transformer_config: every field checked on creation, presets, round trips, and what a
config's key/value cache costs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmlab.transformer_config import TransformerConfig, kv_cache_bytes_per_token


def test_kv_cache_bytes_per_token() -> None:
    assert kv_cache_bytes_per_token(TransformerConfig.smollm2()) == 2 * 30 * 3 * 64 * 4
    assert kv_cache_bytes_per_token(TransformerConfig.smollm2(num_kv_heads=9),
                                    torch.bfloat16) == 2 * 30 * 9 * 64 * 2
    with pytest.raises(TypeError, match="^config"):
        kv_cache_bytes_per_token({"num_layers": 2})


@pytest.mark.parametrize("field,value,error,match", [
    ("d_model", 30, ValueError, "d_model: must be a multiple of num_heads=4"),
    ("num_kv_heads", 3, ValueError, "num_kv_heads: must divide num_heads=4"),
    ("num_kv_heads", 8, ValueError, "num_kv_heads: expected an int <= 4"),
    ("num_heads", 0, ValueError, "num_heads: expected an int >= 1"),
    ("vocab_size", 2.0, TypeError, "vocab_size: expected an int"),
    ("context_length", -1, ValueError, "context_length"),
    ("norm", "batchnorm", ValueError, r"norm: expected one of \('layernorm', 'rmsnorm'\)"),
    ("norm_placement", "middle", ValueError, "norm_placement: expected one of"),
    ("position", "alibi", ValueError, "position: expected one of"),
    ("ffn", "geglu", ValueError, "ffn: expected one of"),
    ("norm_eps", 0.0, ValueError, "norm_eps"),
    ("norm_eps", float("nan"), ValueError, "norm_eps"),
    ("dropout", 1.0, ValueError, "dropout"),
    ("rope_base", 1.0, ValueError, "rope_base"),
    ("tie_embeddings", 1, TypeError, "tie_embeddings: expected True or False"),
    ("residual", "no", TypeError, "residual: expected True or False, got str 'no'"),
    ("block_norms", 0, TypeError, "block_norms: expected True or False, got int 0"),
    ("type_vocab_size", -1, ValueError, "type_vocab_size"),
    ("d_ff", 0, ValueError, "d_ff"),
])
def test_config_rejects_bad_values(field: str, value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=f"^{match}"):
        TransformerConfig.tiny(**{field: value})


def test_config_is_frozen_and_round_trips() -> None:
    config = TransformerConfig.smollm2()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 3  # type: ignore[misc]
    assert TransformerConfig.from_dict(config.to_dict()) == config
    assert config.head_dim == 64 and config.num_kv_heads == 3
    with pytest.raises(ValueError, match=r"^config: unknown fields \['width'\]"):
        TransformerConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="^position: rotary needs an even head_dim"):
        TransformerConfig.tiny(d_model=12, num_heads=4, position="rotary")


def test_config_helpers_reject_unknown_fields_and_bad_types() -> None:
    with pytest.raises(ValueError, match=r"^overrides: unknown fields \['width'\]"):
        TransformerConfig.tiny(width=3)
    with pytest.raises(ValueError, match=r"^changes: unknown fields \['width'\]"):
        TransformerConfig.tiny().replace(width=3)
    with pytest.raises(TypeError, match="^values: expected a dict"):
        TransformerConfig.from_dict([("d_model", 3)])
    with pytest.raises(TypeError, match="^dtype: expected a torch.dtype"):
        kv_cache_bytes_per_token(TransformerConfig.tiny(), "float32")
