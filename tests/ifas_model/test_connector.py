"""The Globally Aware Connector (paper eq. 2): shapes, gradient flow, the no-GAC ablation, config checks."""

from __future__ import annotations

import pytest


def _config(**kw):
    from ifas_model.configuration import GACConfig

    base = dict(num_queries=5, hidden_size=24, num_attention_heads=4, depth=2, mlp_ratio=2.0,
                vision_hidden_size=16, num_global_tokens=3)
    base.update(kw)
    return GACConfig(**base)


def _inputs(batch=2, layers=3, patches=7, width=16):
    import torch

    torch.manual_seed(0)
    return torch.randn(batch, layers, width), torch.randn(batch, patches, width)


def test_output_is_m_plus_l_tokens_of_width_d():
    from ifas_model.connector import GloballyAwareConnector

    gac = GloballyAwareConnector(_config())
    cls_tokens, patches = _inputs()
    out = gac(cls_tokens, patches)
    assert out.shape == (2, 5 + 3, 24)
    assert gac.num_output_tokens == 8
    assert len(gac.blocks) == 2


def test_gradients_reach_queries_and_projections():
    from ifas_model.connector import GloballyAwareConnector

    gac = GloballyAwareConnector(_config())
    cls_tokens, patches = _inputs()
    gac(cls_tokens, patches).pow(2).mean().backward()
    for name in ("query_tokens", "global_projection.weight", "patch_projection.weight",
                 "blocks.0.self_attn.in_proj_weight", "blocks.1.cross_attn.in_proj_weight", "blocks.1.mlp.2.weight"):
        grad = dict(gac.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_global_tokens_carry_the_layer_cls_features():
    """Changing one layer's CLS token changes the output (Q_V enters through the projection)."""
    from ifas_model.connector import GloballyAwareConnector

    gac = GloballyAwareConnector(_config()).eval()
    cls_tokens, patches = _inputs()
    changed = cls_tokens.clone()
    changed[:, 1] += 3.0
    assert not gac(cls_tokens, patches).allclose(gac(changed, patches))


def test_no_gac_ablation_keeps_token_count_and_ignores_cls():
    from ifas_model.connector import GloballyAwareConnector

    gac = GloballyAwareConnector(_config(use_global_tokens=False)).eval()
    assert gac.global_projection is None and gac.extra_query_tokens.shape == (3, 24)
    cls_tokens, patches = _inputs()
    out = gac(cls_tokens, patches)
    assert out.shape == (2, 8, 24)
    assert out.allclose(gac(cls_tokens * 0 + 5.0, patches))  # the layer-CLS tokens play no part
    out.sum().backward()
    assert gac.extra_query_tokens.grad.abs().sum() > 0


def test_same_width_needs_no_patch_projection():
    import torch

    from ifas_model.connector import GloballyAwareConnector

    gac = GloballyAwareConnector(_config(hidden_size=16))
    assert isinstance(gac.patch_projection, torch.nn.Identity)


def test_wrong_number_of_layer_tokens_is_an_error():
    from ifas_model.connector import GloballyAwareConnector

    gac = GloballyAwareConnector(_config())
    cls_tokens, patches = _inputs(layers=4)
    with pytest.raises(ValueError, match="3 vision layers"):
        gac(cls_tokens, patches)


@pytest.mark.parametrize(("kw", "field"), [
    ({"hidden_size": 30, "num_attention_heads": 4}, "hidden_size"),
    ({"num_queries": 0}, "num_queries"),
    ({"depth": 0}, "depth"),
])
def test_bad_connector_settings_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        _config(**kw)


def test_ifas_config_ties_dimensions_and_validates():
    from ifas_model.configuration import IFASConfig

    cfg = IFASConfig(vision_config={"hidden_size": 32, "num_hidden_layers": 5, "num_attention_heads": 4,
                                    "intermediate_size": 64},
                     connector_config={"num_queries": 7, "hidden_size": 32, "num_attention_heads": 4},
                     text_config={"hidden_size": 32, "word_embed_proj_dim": 32, "num_attention_heads": 4})
    assert cfg.connector_config.num_global_tokens == 5
    assert cfg.connector_config.vision_hidden_size == 32
    assert cfg.image_token_count == 12
    assert cfg.lopsided_alpha == 0.7 and cfg.loss_type == "lopsided" and cfg.llm_training == "full"  # paper
    with pytest.raises(ValueError, match="lopsided_alpha"):
        IFASConfig(lopsided_alpha=1.5)
    with pytest.raises(ValueError, match="loss_type"):
        IFASConfig(loss_type="focal")
    with pytest.raises(ValueError, match="llm_training"):
        IFASConfig(llm_training="adapters")
    with pytest.raises(ValueError, match="vision_feature_layer"):
        IFASConfig(vision_config={"num_hidden_layers": 2}, connector_config={"vision_feature_layer": 0})
