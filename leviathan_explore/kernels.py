"""Fast paths for the generator's stage 3, the separable B-spline modes.

``generator.LeviathanGenerator.mode_features`` (``impl="reference"``) expands every
coordinate in the dense ``kappa``-wide basis and contracts it with the coefficients:
``[n, M, d, kappa] x [M, d, kappa, r] -> phi [n, M, d, r]``. A quadratic B-spline has
only three non-zero basis functions at any point, so the fast paths use just those:

* ``"sparse"``: the weighted sum of the three active coefficient rows of
  ``S = 1 + Delta`` for each coordinate (one ``embedding_bag`` with per-sample
  weights: the gathered rows are never stored), then the log-magnitude product;
  plain autograd, so it keeps ``phi [n, M, d, r]`` for the backward pass.
* ``"fused"``: the same arithmetic inside a custom ``torch.autograd.Function`` that
  works through the ids in chunks and saves only ``u`` and ``Psi`` for the backward
  pass, recomputing each chunk's ``phi`` there. Peak memory is one chunk.
* ``"native"``: on a CPU, forward and backward each as one C loop (``csrc/modes.c``, built
  with the system C compiler on first use by ``modes_cpu.py``).
* ``"triton"``: the fused computation as two Triton kernels (forward, backward), one
  program per (id, mode) that keeps its ``d x r`` tile in registers; CUDA only, used
  when ``triton`` imports.

Every path matches the reference forward and every parameter gradient to float32
rounding (tests/test_fast_generator.py). ``impl="auto"`` picks the fastest path that
is correct on the tensor's device (``default_impl``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import modes_cpu
from .bsplines import active_weights_and_slopes, bspline_active, signed_log_product
from .config import GENERATOR_IMPLS

IMPLS = GENERATOR_IMPLS

# The log-magnitude of a factor is clamped here, as in generator.signed_log_product.
_TINY = 1e-30

try:  # Triton ships with CUDA builds of PyTorch; a CPU machine never needs it.
    import triton
    import triton.language as tl
    HAVE_TRITON = True
except Exception:  # pragma: no cover - depends on the installation
    triton = tl = None
    HAVE_TRITON = False


def triton_available(device: torch.device | str) -> bool:
    """True when the Triton kernels can run on ``device``: ``triton`` imports and the device is
    CUDA, or ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, how the kernels are tested without a GPU)."""
    if not HAVE_TRITON:
        return False
    return torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def default_impl(device: torch.device | str) -> str:
    """The path ``impl="auto"`` takes on ``device``: Triton on CUDA when it imports; on a CPU
    the C kernel of ``modes_cpu`` when a C compiler builds it, else fused.

    All three keep only u and Psi between forward and backward. ``leviathan-explore bench
    --device cpu`` measures them against each other and the reference.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "triton" if triton_available(device) else "fused"
    if kind == "cpu":
        if modes_cpu.available():
            return "native"
    return "fused"


def resolve_impl(impl: str, device: torch.device | str) -> str:
    """``impl`` with ``"auto"`` replaced by ``default_impl(device)``; raises ValueError on an unknown name."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} is not a generator implementation; allowed: {list(IMPLS)}")
    if impl == "auto":
        return default_impl(device)
    if impl == "native":
        if torch.device(device).type != "cpu" or not modes_cpu.available():
            raise ValueError(f"impl='native' needs a CPU tensor and a C compiler; device is "
                             f"{torch.device(device).type}, kernel: {modes_cpu.unavailable_reason() or 'built'}")
    if impl == "triton" and not triton_available(device):
        raise ValueError(f"impl='triton' needs a CUDA device and the triton package; device is "
                         f"{torch.device(device).type}, triton {'found' if HAVE_TRITON else 'missing'}")
    return impl


def fast_mode_features(u: torch.Tensor, spline_delta: torch.Tensor, impl: str = "auto",
                       chunk_size: int | None = None) -> torch.Tensor:
    """u [n, M, d] in [0, 1], spline_delta [M, d, kappa, r] -> Psi [n, M, r] (float32).

    The same function as the reference ``mode_features`` with ``S = 1 + Delta``;
    ``impl`` is ``"sparse"``, ``"fused"``, ``"triton"`` or ``"auto"``.
    """
    impl = resolve_impl(impl, u.device)
    lead = u.shape[:-2]
    M, d = u.shape[-2:]
    u = u.reshape(-1, M, d).float()
    coeff = 1.0 + spline_delta.float()
    if impl == "sparse":
        psi = sparse_mode_features(u, coeff)
    elif impl == "fused":
        psi = FusedModeFeatures.apply(u, coeff, chunk_size or _default_chunk(coeff, u.device))
    elif impl == "native":
        psi = NativeModeFeatures.apply(u, coeff)
    elif impl == "triton":
        psi = TritonModeFeatures.apply(u, coeff)
    else:
        raise ValueError(f"impl={impl!r} is not a fast path; use generator.mode_features for the reference")
    return psi.reshape(*lead, M, coeff.shape[-1])


# ---- sparse: three active rows, plain autograd ------------------------------------------------

def _row_offsets(coeff: torch.Tensor) -> torch.Tensor:
    """[M, d, 1] offsets of each coordinate's first basis row in ``coeff.view(M*d*kappa, r)``."""
    M, d, kappa, _ = coeff.shape
    return (torch.arange(M * d, device=coeff.device) * kappa).view(M, d, 1)


def _phi(u: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """u [c, M, d], coeff [M, d, kappa, r] -> phi [c, M, d, r] = sum_j w_j coeff[m, d, idx_j].

    ``embedding_bag`` with per-sample weights is exactly a weighted sum of three
    gathered rows, and it never materialises the gathered [c, M, d, 3, r] rows.
    """
    kappa, r = coeff.shape[-2:]
    idx, w = bspline_active(u, kappa)                                     # [c, M, d, 3] each
    flat_idx = (idx + _row_offsets(coeff)).view(-1, 3)
    phi = F.embedding_bag(flat_idx, coeff.reshape(-1, r), per_sample_weights=w.view(-1, 3), mode="sum")
    return phi.view(*u.shape, r)


def sparse_mode_features(u: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """u [n, M, d], coeff = 1 + Delta [M, d, kappa, r] -> Psi [n, M, r], through autograd."""
    return signed_log_product(_phi(u, coeff), dim=-2)


# ---- fused: custom autograd, chunked, phi recomputed in the backward -----------------------

def _default_chunk(coeff: torch.Tensor, device: torch.device) -> int:
    """Ids per chunk so that one chunk's phi [c, M, d, r] holds about 2^23 (CPU) or 2^26 (GPU) floats."""
    M, d, _, r = coeff.shape
    budget = 1 << (26 if device.type == "cuda" else 23)
    return max(1, budget // (M * d * r))


def _saved_inputs(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool, bool]:
    """What ``fused`` and ``native`` keep for the backward, u, coeff and Psi, and whether u and
    coeff need gradients."""
    u, coeff, psi = ctx.saved_tensors
    return u, coeff, psi, ctx.needs_input_grad[0], ctx.needs_input_grad[1]


class FusedModeFeatures(torch.autograd.Function):
    """Psi = prod_d phi_d without keeping phi [n, M, d, r] between forward and backward.

    Forward saves u [n, M, d], coeff and Psi [n, M, r]. With Psi = prod_d phi_d,
    dPsi/dphi_d = Psi / phi_d, so the backward needs only each chunk's recomputed phi:
    grad_phi = g Psi / phi (0 where |phi| < 1e-30, as the reference's clamp gives),
    grad_S[idx_j] += w_j grad_phi, grad_w_j = <S[idx_j], grad_phi>, and grad_u is
    grad_w through ``bspline_active`` (autograd on the small [c, M, d, 3] weights).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, coeff: torch.Tensor, chunk_size: int) -> torch.Tensor:
        n, M, _ = u.shape
        psi = u.new_empty(n, M, coeff.shape[-1])
        with torch.no_grad():
            for s in range(0, n, chunk_size):
                psi[s:s + chunk_size] = signed_log_product(_phi(u[s:s + chunk_size], coeff), dim=-2)
        ctx.save_for_backward(u, coeff, psi)
        ctx.chunk_size = chunk_size
        return psi

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_psi: torch.Tensor):
        u, coeff, psi, need_u, need_coeff = _saved_inputs(ctx)
        kappa, r = coeff.shape[-2:]
        coeff_rows = coeff.reshape(-1, r)                                      # [M*d*kappa, r]
        grad_u = torch.zeros_like(u) if need_u else None
        grad_coeff = torch.zeros_like(coeff) if need_coeff else None
        c = ctx.chunk_size
        for s in range(0, u.shape[0], c):
            u_chunk = u[s:s + c].detach().requires_grad_(need_u)
            with torch.enable_grad():
                idx, w = bspline_active(u_chunk, kappa)                        # [c, M, d, 3]
            flat_idx = idx + _row_offsets(coeff)
            w_const = w.detach()
            phi = F.embedding_bag(flat_idx.view(-1, 3), coeff_rows, per_sample_weights=w_const.view(-1, 3),
                                  mode="sum").view(*u_chunk.shape, r)          # [c, M, d, r]
            g = (grad_psi[s:s + c] * psi[s:s + c]).unsqueeze(-2)               # [c, M, 1, r]
            grad_phi = torch.where(phi.abs() >= _TINY, g / phi, 0.0)
            del phi
            if need_coeff:
                grad_rows = grad_coeff.view(-1, r)
                for j in range(3):  # three index_adds: no [c, M, d, 3, r] source tensor
                    grad_rows.index_add_(0, flat_idx[..., j].reshape(-1),
                                         (grad_phi * w_const[..., j, None]).view(-1, r))
            if need_u:
                rows = F.embedding(flat_idx, coeff_rows)                       # [c, M, d, 3, r]
                grad_w = (rows @ grad_phi.unsqueeze(-1)).squeeze(-1)           # [c, M, d, 3]
                del rows
                grad_u[s:s + c] = torch.autograd.grad(w, u_chunk, grad_w)[0]
        return grad_u, grad_coeff, None


# ---- native: csrc/modes.c, one C loop each way (built and loaded by modes_cpu) -------------------

def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


class NativeModeFeatures(torch.autograd.Function):
    """Psi = prod_d phi_d through csrc/modes.c; saves u, coeff and Psi (like ``fused``)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        if u.device.type != "cpu":
            raise ValueError(f"impl='native' runs on a CPU only; u is on {u.device}")
        u = u.detach().float().contiguous()
        coeff_c = coeff.detach().float().contiguous()
        n, M, d = u.shape
        kappa, r = coeff_c.shape[-2:]
        psi = torch.empty(n, M, r, dtype=torch.float32)
        if n:
            modes_cpu.library().leviathan_modes_forward(_ptr(u), _ptr(coeff_c), _ptr(psi), n, M, d, kappa, r)
        ctx.save_for_backward(u, coeff_c, psi)
        return psi

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_psi: torch.Tensor):
        u, coeff, psi, need_u, need_coeff = _saved_inputs(ctx)
        n, M, d = u.shape
        kappa, r = coeff.shape[-2:]
        grad_psi = grad_psi.float().contiguous()
        grad_u = torch.empty_like(u)
        grad_coeff = torch.zeros_like(coeff)
        if n:
            modes_cpu.library().leviathan_modes_backward(_ptr(u), _ptr(coeff), _ptr(psi), _ptr(grad_psi),
                                                         _ptr(grad_u), _ptr(grad_coeff), n, M, d, kappa, r,
                                                         int(need_u), int(need_coeff))
        return (grad_u if need_u else None), (grad_coeff if need_coeff else None)


# ---- triton: one program per (id, mode), the d x r tile in registers --------------------------

if HAVE_TRITON:  # pragma: no cover - needs CUDA

    @triton.jit
    def _phi_tile(idx_ptr, w_ptr, coeff_ptr, base, row0, offs_r, mask_d, mask, R: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
        # phi[d, :] = sum_j w[i,m,d,j] coeff[m, d, idx[i,m,d,j], :], the (id, mode)'s [d, r] tile (0 off the mask)
        phi = tl.zeros((BLOCK_D, BLOCK_R), dtype=tl.float32)
        for j in tl.static_range(3):
            g = tl.load(idx_ptr + base + j, mask=mask_d, other=0)
            wj = tl.load(w_ptr + base + j, mask=mask_d, other=0.0)
            rows = tl.load(coeff_ptr + (row0 + g)[:, None] * R + offs_r[None, :], mask=mask, other=0.0)
            phi += wj[:, None] * rows
        return phi

    @triton.jit
    def _modes_fwd_kernel(idx_ptr, w_ptr, coeff_ptr, psi_ptr, D: tl.constexpr, R: tl.constexpr,
                          KAPPA: tl.constexpr, M: tl.constexpr, BLOCK_D: tl.constexpr,
                          BLOCK_R: tl.constexpr):
        # program (i, m): Psi[i, m, :] = prod_d sum_j w[i,m,d,j] coeff[m, d, idx[i,m,d,j], :]
        pid = tl.program_id(0)
        m = pid % M
        offs_d = tl.arange(0, BLOCK_D)
        offs_r = tl.arange(0, BLOCK_R)
        mask_d = offs_d < D
        mask = mask_d[:, None] & (offs_r[None, :] < R)
        base = pid * D * 3 + offs_d * 3                       # into idx / w [n, M, d, 3]
        row0 = (m * D + offs_d) * KAPPA                       # first basis row of each coordinate
        phi = _phi_tile(idx_ptr, w_ptr, coeff_ptr, base, row0, offs_r, mask_d, mask, R, BLOCK_D, BLOCK_R)
        phi = tl.where(mask, phi, 1.0)
        logabs = tl.sum(tl.log(tl.maximum(tl.abs(phi), 1e-30)), axis=0)
        negatives = tl.sum((phi < 0).to(tl.int32), axis=0)
        sign = 1.0 - 2.0 * (negatives % 2).to(tl.float32)
        tl.store(psi_ptr + pid * R + offs_r, sign * tl.exp(logabs), mask=offs_r < R)

    @triton.jit
    def _modes_bwd_kernel(idx_ptr, w_ptr, dw_ptr, coeff_ptr, psi_ptr, gpsi_ptr, gu_ptr, gcoeff_ptr,
                          D: tl.constexpr, R: tl.constexpr, KAPPA: tl.constexpr, M: tl.constexpr,
                          BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
        # grad_phi = g Psi / phi; grad_u = sum_j dw_j <rows_j, grad_phi>; grad_coeff[rows_j] += w_j grad_phi
        pid = tl.program_id(0)
        m = pid % M
        offs_d = tl.arange(0, BLOCK_D)
        offs_r = tl.arange(0, BLOCK_R)
        mask_d = offs_d < D
        mask_r = offs_r < R
        mask = mask_d[:, None] & mask_r[None, :]
        base = pid * D * 3 + offs_d * 3
        row0 = (m * D + offs_d) * KAPPA
        phi = _phi_tile(idx_ptr, w_ptr, coeff_ptr, base, row0, offs_r, mask_d, mask, R, BLOCK_D, BLOCK_R)
        gp = tl.load(gpsi_ptr + pid * R + offs_r, mask=mask_r, other=0.0) * \
            tl.load(psi_ptr + pid * R + offs_r, mask=mask_r, other=0.0)
        safe = tl.where(mask & (tl.abs(phi) >= 1e-30), phi, 1.0)
        grad_phi = tl.where(mask & (tl.abs(phi) >= 1e-30), gp[None, :] / safe, 0.0)
        gu = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for j in tl.static_range(3):
            g = tl.load(idx_ptr + base + j, mask=mask_d, other=0)
            wj = tl.load(w_ptr + base + j, mask=mask_d, other=0.0)
            dwj = tl.load(dw_ptr + base + j, mask=mask_d, other=0.0)
            ptrs = (row0 + g)[:, None] * R + offs_r[None, :]
            rows = tl.load(coeff_ptr + ptrs, mask=mask, other=0.0)
            gu += dwj * tl.sum(rows * grad_phi, axis=1)
            tl.atomic_add(gcoeff_ptr + ptrs, wj[:, None] * grad_phi, mask=mask)
        tl.store(gu_ptr + pid * D + offs_d, gu, mask=mask_d)


def _triton_blocks(d: int, r: int) -> dict[str, int]:
    """Tile sizes (powers of two covering d x r) and warps: 8 for tiles of 4096 floats and up."""
    bd, br = triton.next_power_of_2(d), triton.next_power_of_2(r)
    return {"BLOCK_D": bd, "BLOCK_R": br, "num_warps": 8 if bd * br >= 4096 else 4}


class TritonModeFeatures(torch.autograd.Function):
    """The fused computation as Triton kernels; the active indices, weights and slopes
    ([n, M, d, 3] each) are computed in PyTorch and saved, phi never leaves registers."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        n, M, d = u.shape
        kappa, r = coeff.shape[-2:]
        u = u.contiguous()
        coeff = coeff.contiguous()
        with torch.no_grad():
            idx, w, dw = active_weights_and_slopes(u, kappa)
        idx, w, dw = idx.to(torch.int32).contiguous(), w.contiguous(), dw.contiguous()
        psi = torch.empty(n, M, r, device=u.device, dtype=torch.float32)
        if n:
            _modes_fwd_kernel[(n * M,)](idx, w, coeff, psi, D=d, R=r, KAPPA=kappa, M=M, **_triton_blocks(d, r))
        ctx.save_for_backward(idx, w, dw, coeff, psi)
        return psi

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_psi: torch.Tensor):
        idx, w, dw, coeff, psi = ctx.saved_tensors
        n, M, d, _ = idx.shape
        kappa, r = coeff.shape[-2:]
        grad_u = torch.empty(n, M, d, device=psi.device, dtype=torch.float32)
        grad_coeff = torch.zeros_like(coeff)
        if n:
            _modes_bwd_kernel[(n * M,)](idx, w, dw, coeff, psi, grad_psi.float().contiguous(), grad_u,
                                        grad_coeff, D=d, R=r, KAPPA=kappa, M=M, **_triton_blocks(d, r))
        return grad_u, grad_coeff
