"""The ALSTM network (semantics doc §7.1): fc_in + tanh → GRU/LSTM → attention pooling → fc_out.

Attribute names reproduce Qlib's state_dict keys (``net.fc_in``, ``rnn``, ``fc_out``,
``att_net.att_fc_in``, ``att_net.att_fc_out``) so a Qlib checkpoint loads unchanged, and
the sub-modules are created in Qlib's order so that, after the same ``torch.manual_seed``,
the default PyTorch initialisation draws the same numbers (§7.1).
"""

from __future__ import annotations

import torch
from torch import nn

RNN_TYPES = ("GRU", "LSTM")


class ALSTMModel(nn.Module):
    """Attention-pooled recurrent regressor: input [B, T, d_feat] → one score per sample [B].

    Also Qlib's non-TS ``pytorch_alstm.ALSTMModel``: same modules, same keys, same creation
    order; its flat [B, d_feat * T] rows are accepted by :meth:`forward` (d_feat=6, T=60).
    """

    def __init__(
        self,
        d_feat: int = 20,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        rnn_type: str = "GRU",
    ) -> None:
        super().__init__()
        rnn_type = rnn_type.upper()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {RNN_TYPES}, got {rnn_type!r}")
        if d_feat < 1 or hidden_size < 2 or num_layers < 1:
            raise ValueError(
                f"need d_feat >= 1, hidden_size >= 2, num_layers >= 1; "
                f"got {d_feat}, {hidden_size}, {num_layers}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_feat = d_feat
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.rnn_type = rnn_type

        # §7.1 creation order fc_in, rnn, fc_out, att_fc_in, att_fc_out: each creation
        # draws its default initialisation from the global RNG, so the order fixes the init.
        self.net = nn.Sequential()
        self.net.add_module("fc_in", nn.Linear(d_feat, hidden_size))
        self.net.add_module("act", nn.Tanh())
        rnn_class = nn.GRU if rnn_type == "GRU" else nn.LSTM
        self.rnn = rnn_class(
            input_size=hidden_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=self.dropout,
        )
        # Output sees [last hidden state ; attention context], hence 2 * hidden.
        self.fc_out = nn.Linear(hidden_size * 2, 1)
        self.att_net = nn.Sequential()
        self.att_net.add_module("att_fc_in", nn.Linear(hidden_size, hidden_size // 2))
        # Qlib applies the model's dropout here too; with p = 0 it draws no random numbers.
        self.att_net.add_module("att_dropout", nn.Dropout(self.dropout))
        self.att_net.add_module("att_act", nn.Tanh())
        self.att_net.add_module("att_fc_out", nn.Linear(hidden_size // 2, 1, bias=False))
        self.att_net.add_module("att_softmax", nn.Softmax(dim=1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, T, d_feat] float32 windows (oldest step first), or flat rows, → [B] scores.

        Flat rows ``[B, d_feat * T]`` are Qlib's non-TS input (pytorch_alstm.py, Alpha360):
        feature-major, each feature's T lags oldest first (CLOSE59..CLOSE0, OPEN59..). They
        are viewed as [B, d_feat, T] and made time-major [B, T, d_feat], exactly as Qlib's
        forward does; the weights and their keys are the same for both inputs.
        """
        if inputs.dim() == 2:
            if inputs.shape[1] % self.d_feat:
                raise ValueError(
                    f"flat input has {inputs.shape[1]} columns, not a multiple of d_feat={self.d_feat}"
                )
            inputs = inputs.view(len(inputs), self.d_feat, -1).permute(0, 2, 1)
        # fc_in is one matmul over all B*T steps (nn.Linear acts on the last dimension).
        rnn_out, _ = self.rnn(self.net(inputs))  # [B, T, H]
        attention = self.att_net(rnn_out)  # [B, T, 1], softmax over the T steps
        context = torch.mul(rnn_out, attention).sum(dim=1)  # [B, H]
        out = self.fc_out(torch.cat((rnn_out[:, -1, :], context), dim=1))  # [B, 1]
        return out[..., 0]

    def architecture(self) -> dict[str, object]:
        """The constructor arguments: enough to rebuild an empty model of the same shape."""
        return {
            "d_feat": self.d_feat,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "rnn_type": self.rnn_type,
        }


def parameter_count(model: nn.Module) -> int:
    """Number of scalar parameters (53,505 for Qlib's benchmark ALSTM)."""
    return sum(p.numel() for p in model.parameters())
