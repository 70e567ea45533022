"""The output head's loss: cross-entropy of ``hidden @ weight.T`` computed chunk by chunk, never
holding all N x V logits, with the gradients of a summed loss computed in the forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint


class FusedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T, target_i) with its gradients computed in the forward pass.

    Per chunk of positions: logits = h W^T in the compute dtype (bf16 under autocast),
    p = softmax(logits) in float32, loss = -log p[target], and since the gradient of a
    summed loss is (p - onehot) whatever comes after, grad_h = (p - y) W and
    grad_W += (p - y)^T h right away; the backward only scales them by the incoming
    scalar. Against recomputing the logits in the backward (checkpointing) this saves
    one N x V x D matmul of the four; a chunk's [c, V] logits are read and written only
    three times (softmax reads them, writes p, the cast to the compute dtype).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_size: int) -> torch.Tensor:
        device_type = hidden.device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h_all, w = hidden.to(dtype), weight.to(dtype)
        grad_h = torch.empty_like(hidden) if need_h else None
        cpu_layout = device_type == "cpu" and dtype == torch.float32
        grad_w = (torch.empty_like if cpu_layout else torch.zeros_like)(weight, dtype=torch.float32) if need_w else None
        losses = torch.empty(hidden.shape[0], device=hidden.device, dtype=torch.float32)
        with torch.autocast(device_type=device_type, enabled=False), torch.no_grad():
            chunks = _cpu_float32_chunks if cpu_layout else _chunks
            chunks(h_all, w, targets, chunk_size, losses, grad_h, grad_w)
            # -log p is exact until p underflows (loss > ~69): redo those rare rows as lse - logit
            large = (losses > 69.0).nonzero().squeeze(1)
            if large.numel():
                logits = (h_all[large] @ w.T).float()
                losses[large] = torch.logsumexp(logits, -1) - logits.gather(1, targets[large, None]).squeeze(1)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return losses.sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_total.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_total).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None


def _chunks(h_all: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk_size: int,
            losses: torch.Tensor, grad_h: torch.Tensor | None, grad_w: torch.Tensor | None) -> None:
    """Per chunk: logits in the compute dtype, float32 softmax, -log p[target], then p - onehot
    cast back to the compute dtype for the two gradient matmuls (GPU, bf16 autocast)."""
    dtype = h_all.dtype
    for s in range(0, h_all.shape[0], chunk_size):
        h, t = h_all[s:s + chunk_size], targets[s:s + chunk_size]
        probs = torch.softmax(h @ w.T, dim=-1, dtype=torch.float32)   # [c, V]
        rows = torch.arange(len(t), device=t.device)
        losses[s:s + chunk_size] = -torch.log(probs[rows, t])
        probs[rows, t] -= 1.0
        grad_logits = probs.to(dtype)
        del probs
        if grad_h is not None:
            grad_h[s:s + chunk_size] = grad_logits @ w
        if grad_w is not None:
            grad_w.add_(grad_logits.T @ h)
        del grad_logits


def _cpu_float32_chunks(h_all: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk_size: int,
                        losses: torch.Tensor, grad_h: torch.Tensor | None, grad_w: torch.Tensor | None) -> None:
    """The same arithmetic laid out for a CPU's float32 GEMM (one thread, ``benchmarks/loss_layout.py``).

    - ``w`` is transposed once to a contiguous [D, V] for the logits matmul: at D = 64,
      ``h @ w.T`` on the [V, D] weight ran well below ``h @ wT``.
    - One [c, V] buffer holds a chunk's logits, then softmax in place, then p - onehot: no
      fresh 4-32 MB allocation (and its page faults) per chunk.
    - grad_W is accumulated transposed, ``gwT += h.T @ (p - y)`` (a [D, c] x [c, V] GEMM
      writing into the accumulator, beta = 1), and copied back to [V, D] once at the end.
    """
    n_all, V = h_all.shape[0], w.shape[0]
    wT = w.T.contiguous()
    buf = h_all.new_empty(min(chunk_size, n_all), V)
    grad_wT = h_all.new_zeros(w.shape[1], V) if grad_w is not None else None
    for s in range(0, n_all, chunk_size):
        h, t = h_all[s:s + chunk_size], targets[s:s + chunk_size]
        p = buf[:h.shape[0]]
        torch.mm(h, wT, out=p)
        torch.ops.aten._softmax.out(p, -1, False, out=p)   # row by row: max, exp, scale, in place
        rows = torch.arange(len(t), device=t.device)
        losses[s:s + chunk_size] = -torch.log(p[rows, t])
        p[rows, t] -= 1.0
        if grad_h is not None:
            torch.mm(p, w, out=grad_h[s:s + chunk_size])
        if grad_wT is not None:
            grad_wT.addmm_(h.T, p)
    if grad_w is not None:
        grad_w.copy_(grad_wT.T)


def default_loss_chunk(vocab_size: int, d_model: int, device: torch.device | str) -> int:
    """Positions per chunk of the fused loss.

    GPU: about 2^27 logits a chunk (memory is the limit). CPU: about ``2 * d_model``
    positions whatever the vocabulary, so that a chunk's matmuls have enough rows while its
    logits stay near the cache (one thread, 2 cores: at V = 16,385, d_model 64/128/256 the
    head's forward+backward ran fastest at 128/256/512 positions, and a whole 1,024-position
    batch as one chunk was 10-40% slower: ``python benchmarks/loss_chunk.py``).
    """
    if torch.device(device).type == "cuda":
        return max(1, (1 << 27) // vocab_size)
    return int(min(1024, max(64, 1 << (2 * d_model - 1).bit_length())))


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               chunk_size: int | None = None) -> torch.Tensor:
    """Summed cross-entropy of ``hidden [N, D] @ weight [V, D].T`` against ``targets [N]`` (float32 scalar).

    ``chunk_size`` positions at a time (default: ``default_loss_chunk``).
    """
    if chunk_size is None:
        chunk_size = default_loss_chunk(weight.shape[0], weight.shape[1], hidden.device)
    return FusedLinearCrossEntropy.apply(hidden, weight, targets.long(), chunk_size)


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          reduction: str = "mean", chunk_size: int | None = None) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``targets`` without materialising all logits.

    hidden [N, D], weight [V, D], targets [N]. Positions are processed ``chunk_size``
    at a time (default: ``default_loss_chunk``); each chunk's logits are
    recomputed in the backward pass (activation checkpointing), so peak memory
    holds one chunk of float32 logits instead of N x V.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction={reduction!r} must be 'mean', 'sum' or 'none'")
    N, V = hidden.shape[0], weight.shape[0]
    if N == 0:  # no positions: a mean over nothing is undefined
        if reduction == "mean":
            raise ValueError("targets are empty: a mean loss needs at least one position")
        return hidden.new_zeros(0 if reduction == "none" else ()).float()
    if chunk_size is None:
        chunk_size = default_loss_chunk(V, hidden.shape[1], hidden.device)
    if reduction != "none" and torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        # a summed loss has gradients known in the forward pass: no logits recompute
        return fused_linear_cross_entropy(hidden, weight, targets, chunk_size) / (N if reduction == "mean" else 1)

    def chunk_loss(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = F.linear(h, w)  # bf16 under autocast
        return F.cross_entropy(logits.float(), t, reduction="none")

    parts = []
    for start in range(0, N, chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad) and N > chunk_size:
            parts.append(checkpoint(chunk_loss, h, weight, t, use_reentrant=False))
        else:
            parts.append(chunk_loss(h, weight, t))
    losses = torch.cat(parts) if len(parts) > 1 else parts[0]
    if reduction == "none":
        return losses
    return losses.sum() / (N if reduction == "mean" else 1)
