"""The tabular network and the predictor that serving and evaluation load.

`TabularPredictor.load(model_dir)` is the contract with the evaluate, register and serving
stages: it needs only `model.pt`, `model_config.json` and `encoder.json` from model_dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import nn

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import ResolvedTask
from kubeloop.components.train.encoder import Encoder

MODEL_FILE = "model.pt"
CONFIG_FILE = "model_config.json"
ENCODER_FILE = "encoder.json"


def default_embedding_dim(cardinality: int) -> int:
    return max(1, min(16, (cardinality + 1) // 2))


class ModelConfig(BaseModel):
    """Everything needed to rebuild the network and interpret its outputs."""

    task: ResolvedTask
    label: str
    classes: list[Any]
    features: list[str]
    feature_kinds: dict[str, str]
    numeric: list[str]
    categorical: list[str]
    cardinalities: list[int]
    embedding_dims: list[int]
    hidden_units: list[int]
    dropout: float
    batch_norm: bool = False
    n_outputs: int
    params: dict[str, Any] = {}

    @staticmethod
    def outputs_for(task: ResolvedTask, n_classes: int) -> int:
        return n_classes if task == "multiclass" else 1


class TabularMLP(nn.Module):
    """Categorical embeddings concatenated with numeric features, then an MLP."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        embedding_dims: list[int],
        hidden_units: list[int],
        n_outputs: int,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, dim) for card, dim in zip(cardinalities, embedding_dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = n_numeric + sum(embedding_dims)
        for units in hidden_units:
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, n_outputs))
        self.mlp = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> TabularMLP:
        return cls(
            n_numeric=len(cfg.numeric),
            cardinalities=cfg.cardinalities,
            embedding_dims=cfg.embedding_dims,
            hidden_units=cfg.hidden_units,
            n_outputs=cfg.n_outputs,
            dropout=cfg.dropout,
            batch_norm=cfg.batch_norm,
        )

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        if len(self.embeddings):
            embedded = [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
            x = torch.cat([x_num, *embedded], dim=1)
        else:
            x = x_num
        out: torch.Tensor = self.mlp(x)
        return out


def outputs_to_predictions(out: torch.Tensor, task: ResolvedTask) -> torch.Tensor:
    """Raw network outputs -> probabilities (classification) or standardized values."""
    if task == "binary":
        p = torch.sigmoid(out[:, 0].float())
        return torch.stack([1 - p, p], dim=1)
    if task == "multiclass":
        return torch.softmax(out.float(), dim=1)
    return out[:, 0].float()


class TabularPredictor:
    """A trained model ready to predict on feature frames (CPU by default)."""

    def __init__(self, model: TabularMLP, config: ModelConfig, encoder: Encoder) -> None:
        self.model = model.eval()
        self.config = config
        self.encoder = encoder

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str = "cpu") -> TabularPredictor:
        d = Path(model_dir)
        missing = [f for f in (MODEL_FILE, CONFIG_FILE, ENCODER_FILE) if not (d / f).is_file()]
        if missing:
            raise DataError(f"{d}: not a kubeloop model folder (missing {missing})")
        config = ModelConfig.model_validate(json.loads((d / CONFIG_FILE).read_text()))
        model = TabularMLP.from_config(config)
        state = torch.load(d / MODEL_FILE, map_location=device, weights_only=True)
        model.load_state_dict(state)
        return cls(model.to(device), config, Encoder.load(d / ENCODER_FILE))

    @property
    def task(self) -> ResolvedTask:
        return self.config.task

    @property
    def classes(self) -> list[Any]:
        return list(self.config.classes)

    @property
    def features(self) -> list[str]:
        return list(self.config.features)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """binary: (n, 2) [1-p, p]; multiclass: (n, k); regression: (n,) original units."""
        x_num, x_cat = self.encoder.transform(df)
        dev = self.device
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x_num).to(dev), torch.from_numpy(x_cat).to(dev))
            pred = outputs_to_predictions(out, self.task).cpu().numpy()
        if self.task == "regression":
            return np.asarray(self.encoder.decode_regression(pred.astype(np.float64)))
        return pred.astype(np.float64)
