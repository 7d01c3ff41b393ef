"""The Globally Aware Connector (GAC, paper eq. 2): layer-CLS queries and learnable queries read the patches.

Read top to bottom: `GACBlock` is one pass of eq. 2 (MSA over all queries, MCA into the patch features, MLP,
each pre-LayerNorm with a residual); `GloballyAwareConnector` builds the queries and stacks the blocks.

    G_V = (g_1, ..., g_L)        CLS token of each of the L encoder layers (embedding output excluded)
    Q_V = Linear(G_V)            (B, L, D)
    Q   = Concat(Q_P, Q_V)       (B, M + L, D), Q_P the M learnable queries
    Q'  = Q + MSA(LN(Q))
    Q'' = Q' + MCA(LN(Q'), LN(X_V))      X_V = patch tokens of one vision layer (CLS excluded)
    X_T = Q'' + MLP(LN(Q''))

The paper lets the whole Q' attend to X_V (eq. 2), so the global queries also read the patches; we follow the
equation. The projection of X_T to the LLM width lives in the model (`language_projection`), as in BLIP-2.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .configuration import GACConfig

logger = logging.getLogger(__name__)


class GACBlock(nn.Module):
    """One block of eq. 2: pre-LN self-attention, pre-LN cross-attention into X_V, pre-LN MLP, all residual."""

    def __init__(self, config: GACConfig) -> None:
        super().__init__()
        d, heads, eps = config.hidden_size, config.num_attention_heads, config.layer_norm_eps
        self.ln_self = nn.LayerNorm(d, eps=eps)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=config.attention_dropout, batch_first=True)
        self.ln_cross_q = nn.LayerNorm(d, eps=eps)
        self.ln_cross_kv = nn.LayerNorm(d, eps=eps)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=config.attention_dropout, batch_first=True)
        self.ln_mlp = nn.LayerNorm(d, eps=eps)
        hidden = int(round(d * config.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, queries: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """queries (B, M + L, D), patches (B, N, D) -> X_T (B, M + L, D)."""
        q = self.ln_self(queries)
        queries = queries + self.self_attn(q, q, q, need_weights=False)[0]  # Q'
        kv = self.ln_cross_kv(patches)
        queries = queries + self.cross_attn(self.ln_cross_q(queries), kv, kv, need_weights=False)[0]  # Q''
        return queries + self.mlp(self.ln_mlp(queries))  # X_T


@torch.no_grad()
def init_connector_module(module: nn.Module, std: float) -> None:
    """Init of one module of the connector: truncated normal (``std``) for linears, attention projections and
    the learnable queries; LayerNorms to identity. Used by `GloballyAwareConnector.reset_parameters` and by the
    model's ``_init_weights`` (which transformers calls module by module)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.trunc_normal_(module.in_proj_weight, std=std)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, GloballyAwareConnector):
        for param in (module.query_tokens, module.extra_query_tokens):
            if param is not None:
                nn.init.trunc_normal_(param, std=std)


class GloballyAwareConnector(nn.Module):
    """GAC: M learnable queries plus L projected layer-CLS tokens, refined against the patch features.

    With ``use_global_tokens=False`` (the paper's "without GAC" ablation) Q_V is replaced by L more learnable
    queries, so the token count M + L is unchanged and no layer-CLS token is used.
    """

    def __init__(self, config: GACConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.query_tokens = nn.Parameter(torch.zeros(config.num_queries, d))  # Q_P (M, D)
        if config.use_global_tokens:
            self.global_projection = nn.Linear(config.vision_hidden_size, d)  # G_V -> Q_V
            self.extra_query_tokens = None
        else:
            self.global_projection = None
            self.extra_query_tokens = nn.Parameter(torch.zeros(config.num_global_tokens, d))  # (L, D)
        # X_V enters at width D; a projection only when the vision width differs.
        self.patch_projection = (
            nn.Linear(config.vision_hidden_size, d) if config.vision_hidden_size != d else nn.Identity()
        )
        self.blocks = nn.ModuleList(GACBlock(config) for _ in range(config.depth))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Truncated-normal init (std = initializer_range) of queries and linears; LayerNorms to identity."""
        for module in self.modules():
            init_connector_module(module, self.config.initializer_range)

    @property
    def num_output_tokens(self) -> int:
        """M + L."""
        return self.config.num_output_tokens

    def forward(self, cls_tokens: torch.Tensor, patch_features: torch.Tensor) -> torch.Tensor:
        """Run eq. 2.

        Args:
            cls_tokens: G_V, the CLS token of each vision layer, (B, L, W) with W the vision width. Ignored
                (only its batch size is read) when ``use_global_tokens`` is False.
            patch_features: X_V, the patch tokens of one vision layer, (B, N, W).

        Returns:
            X_T, (B, M + L, D).
        """
        batch = patch_features.shape[0]
        q_p = self.query_tokens.unsqueeze(0).expand(batch, -1, -1)  # (B, M, D)
        if self.global_projection is not None:
            if cls_tokens.shape[1] != self.config.num_global_tokens:
                raise ValueError(
                    f"the GAC expects the CLS tokens of {self.config.num_global_tokens} vision layers, "
                    f"got {cls_tokens.shape[1]}"
                )
            q_v = self.global_projection(cls_tokens.to(q_p.dtype))  # (B, L, D)
        else:
            q_v = self.extra_query_tokens.unsqueeze(0).expand(batch, -1, -1)  # (B, L, D)
        queries = torch.cat([q_p, q_v], dim=1)  # Q: (B, M + L, D)
        patches = self.patch_projection(patch_features.to(q_p.dtype))  # (B, N, D)
        for block in self.blocks:
            queries = block(queries, patches)
        return queries  # X_T: (B, M + L, D)
