"""iFormer (Inception Transformer, Si et al., NeurIPS 2022), iFormer-Small by default.

Re-implemented from SEED-NOTES §2. Each block's token mixer splits its channels: a
high-frequency part (max-pool and depthwise-conv branches) and a low-frequency part
(softmax self-attention, on 2x-pooled tokens in stages 1-2), fused by a depthwise conv and
a 1x1 projection. Faithful quirks kept: layer scale only in stages 3-4, attention heads
indexed by the global block number.

Differences from the reference code, on purpose:
- Position embeddings are parameters of their stage module, so they stay in
  `parameters()` and the state_dict wherever the stage is placed (the seed's pipeline
  model lost them from both, and they never trained).
- The low-frequency branch upsamples to the exact input size and reshapes with the true
  height and width, so non-square and odd-sized maps work (the reference needed square
  maps of even size); on the reference inputs the result is the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from hpml_bench.models.base import MODELS, ModelConfig

HEAD_DIM = 32


@dataclass
class IFormerConfig(ModelConfig):
    name: str = "iformer"
    input_size: int = 224
    img_size: int = 224  # position embeddings are sized for this; other sizes interpolate
    depths: list[int] = field(default_factory=lambda: [3, 3, 9, 3])  # blocks per stage
    embed_dims: list[int] = field(default_factory=lambda: [96, 192, 320, 384])  # channels per stage
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 10, 12])  # attention heads per stage
    # Attention heads of each block, by global block index (low_dim = heads x 32).
    attention_heads: list[int] = field(default_factory=lambda: [1] * 3 + [3] * 3 + [7] * 4 + [9] * 5 + [11] * 3)
    pool_sizes: list[int] = field(default_factory=lambda: [2, 2, 1, 1])  # attention pooling per stage (1 = none)
    layer_scale_stages: list[int] = field(default_factory=lambda: [2, 3])  # 0-based: stages 3 and 4
    layer_scale_init: float = 1e-6  # initial LayerScale value of the stages in layer_scale_stages
    mlp_ratio: float = 4.0  # hidden width of each block's MLP, relative to the stage's channels
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly to this over the blocks

    min_input_size: ClassVar[int] = 9  # stage 2's 2x2 attention pooling needs a 2x2 map


class HighMixer(nn.Module):
    """Two halves: 1x1 conv -> depthwise 3x3 -> GELU, and max-pool -> 1x1 conv -> GELU."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.half = half
        self.conv = nn.Sequential(nn.Conv2d(half, 2 * half, 1, bias=False),
                                  nn.Conv2d(2 * half, 2 * half, 3, padding=1, groups=2 * half, bias=False), nn.GELU())
        self.pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(half, 2 * half, 1), nn.GELU())

    def forward(self, x):
        return torch.cat([self.conv(x[:, : self.half]), self.pool(x[:, self.half:])], dim=1)


class LowMixer(nn.Module):
    """Softmax self-attention over (optionally average-pooled) positions."""

    def __init__(self, dim: int, heads: int, pool_size: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.pool = nn.AvgPool2d(pool_size, stride=pool_size, count_include_pad=False) if pool_size > 1 else nn.Identity()

    def forward(self, x):
        b, c, h, w = x.shape
        pooled = self.pool(x)
        ph, pw = pooled.shape[-2], pooled.shape[-1]
        tokens = pooled.flatten(2).transpose(1, 2)  # [B, N, C]
        q, k, v = self.qkv(tokens).reshape(b, ph * pw, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(2, 3).reshape(b, c, ph, pw)
        return F.interpolate(out, size=(h, w), mode="nearest") if (ph, pw) != (h, w) else out


class Mixer(nn.Module):
    """Inception mixer on channels-last tokens [B, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, attention_heads: int, pool_size: int):
        super().__init__()
        self.low_dim = attention_heads * (dim // num_heads)
        self.high_dim = dim - self.low_dim
        fused = self.low_dim + 2 * self.high_dim
        self.high_mixer = HighMixer(self.high_dim)
        self.low_mixer = LowMixer(self.low_dim, attention_heads, pool_size)
        self.conv_fuse = nn.Conv2d(fused, fused, 3, padding=1, groups=fused, bias=False)
        self.proj = nn.Conv2d(fused, dim, 1)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        x = torch.cat([self.high_mixer(x[:, : self.high_dim]), self.low_mixer(x[:, self.high_dim:])], dim=1)
        x = x + self.conv_fuse(x)
        return self.proj(x).permute(0, 2, 3, 1)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, attention_heads: int, pool_size: int, mlp_ratio: float,
                 drop_path: float, layer_scale: float | None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mixer = Mixer(dim, num_heads, attention_heads, pool_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = StochasticDepth(drop_path, "row")
        self.use_layer_scale = layer_scale is not None
        if layer_scale is not None:
            self.layer_scale_1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.layer_scale_2 = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        if self.use_layer_scale:
            x = x + self.drop_path(self.layer_scale_1 * self.mixer(self.norm1(x)))
            return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    """Patch embedding (NCHW -> channels-last), + position embedding, then blocks."""

    def __init__(self, embed: nn.Module, grid: int, dim: int, blocks: list[Block]):
        super().__init__()
        self.embed = embed
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        x = self.embed(x)
        return self.blocks(x + self._pos_embed(x.shape[1], x.shape[2]))

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == tuple(self.pos_embed.shape[1:3]):
            return self.pos_embed
        resized = F.interpolate(self.pos_embed.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
        return resized.permute(0, 2, 3, 1)


class ToChannelsLast(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ToChannelsFirst(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def _first_embed(c_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, dim // 2, 3, stride=2, padding=1), nn.BatchNorm2d(dim // 2), nn.GELU(),
                         nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), ToChannelsLast())


def _embed(c_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(ToChannelsFirst(), nn.Conv2d(c_in, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), ToChannelsLast())


class Head(nn.Module):
    """LayerNorm -> mean over tokens -> linear."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(self.norm(x.flatten(1, 2)).mean(1))


class IFormer(nn.Module):
    def __init__(self, cfg: IFormerConfig):
        super().__init__()
        n = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(1, n - 1) for i in range(n)]  # linear 0 -> rate
        stages, c_in, index, grid = [], cfg.in_channels, 0, cfg.img_size // 4
        for s, (depth, dim, heads) in enumerate(zip(cfg.depths, cfg.embed_dims, cfg.num_heads)):
            scale = cfg.layer_scale_init if s in cfg.layer_scale_stages else None
            blocks = [Block(dim, heads, cfg.attention_heads[index + i], cfg.pool_sizes[s], cfg.mlp_ratio,
                            rates[index + i], scale) for i in range(depth)]
            embed = _first_embed(c_in, dim) if s == 0 else _embed(c_in, dim)
            stages.append(Stage(embed, grid, dim, blocks))
            c_in, index, grid = dim, index + depth, grid // 2
        self.stages = nn.ModuleList(stages)
        self.head = Head(c_in, cfg.num_classes)
        self.apply(_init_weights)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def pipeline_stages(self) -> list[nn.Module]:
        return [*self.stages, self.head]

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: the last stage, whose
        channels-last tokens [B, H, W, C] grad-cam needs as [B, C, H, W]."""
        return self.stages[-1], _tokens_to_maps


def _tokens_to_maps(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@MODELS.register("iformer", config=IFormerConfig)
def build_iformer(cfg: IFormerConfig) -> nn.Module:
    return IFormer(cfg)
