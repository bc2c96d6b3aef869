"""lmlab.ring: ring attention against full attention, simulated and over real gloo processes.

The distributed cases run in ONE ``torchrun`` launch of 4 processes (start-up costs ~15 s): the
ring runs over sub-groups of 1, 2 and 4 ranks, causal (zigzag and contiguous shards) and not,
several shapes, with every rank holding different data (and one shard scaled up so the ranks'
log-sum-exps differ widely), in float32 and in bfloat16. Each rank compares its output and
q/k/v gradient shards with full attention computed on the whole sequence, checks that bad
input (a causal call without its layout, layouts that differ between ranks ...) raises the same
error on every rank, and writes what it found to a JSON file the test reads. Run as a script
(``python -m torch.distributed.run --nproc_per_node 4 tests/test_ring.py OUTDIR [gloo|nccl]``)
it is that worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lmlab.ring
from lmlab.ring import (
    LAYOUTS,
    ring_attention,
    ring_schedule,
    shard_sequence,
    simulate_ring_attention,
    unshard_sequence,
    zigzag_chunks,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}
WORKER_PROCESSES = 4
# (group size, causal, layout, shape (B, H, T, D), seed, dtype)
CASES = [(size, causal, layout, shape, seed, "float32")
         for size in (1, 2, 4)
         for causal, layout in ((False, "contiguous"), (True, "zigzag"), (True, "contiguous"))
         for shape, seed in (((2, 3, 24, 8), 0), ((1, 2, 40, 5), 1))]
CASES += [(size, True, layout, (1, 2, 64, 16), 2, "bfloat16")
          for size in (2, 4) for layout in ("zigzag", "contiguous")]
# what each rank passes: name -> (the error every rank must raise, as its start)
BAD_CASES = {"dtype": "ValueError: q", "shape": "ValueError: q", "odd": "ValueError: q",
             "no layout": "ValueError: layout: causal ring attention needs the layout",
             "unknown layout": "ValueError: layout: expected one of",
             "layouts differ": "ValueError: layout: layout must be the same on every rank",
             "group": "TypeError: group:"}


def within_rounding(ours: torch.Tensor, ref: torch.Tensor, mantissa_bits: int = 7) -> str | None:
    """None when ``ours`` is within one unit in the last place of bfloat16 (plus 2 ** -10 of the
    largest value) of the float64 ``ref``, else the error in units of that tolerance. Rounding
    once costs half a unit; merging in bfloat16 costs several."""
    exponent = torch.floor(torch.log2(ref.abs().clamp_min(1e-30)))
    tol = torch.exp2(exponent - mantissa_bits) + 2**-10 * ref.abs().max()
    worst = ((ours.double() - ref).abs() / tol).max().item()
    return None if worst <= 1 else f"{worst:.2f}x the bfloat16 rounding tolerance"


def _full_inputs(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, k, v, weight = (torch.randn(*shape, generator=g, dtype=dtype) for _ in range(4))
    T = shape[-2]
    # uneven content: the last quarter of the queries and keys 1.5 times larger (scores up to
    # 2.25 times), so the shards' log-sum-exps differ. Much larger scores put float32 gradients,
    # SDPA's included, more than 1e-5 away from the float64 truth.
    q[..., 3 * T // 4:, :] *= 1.5
    k[..., 3 * T // 4:, :] *= 1.5
    return q, k, v, weight


def _reference(q, k, v, weight, causal):
    """Full attention and its gradients in float64 (the truth fp32 results are compared with)."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    return (out.detach(), *grads)


# --- the worker: runs under torchrun ------------------------------------------------------------

def _worker(outdir: Path, backend: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(backend, timeout=timedelta(seconds=120))
    rank = dist.get_rank()
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    world = dist.get_world_size()
    groups = {size: dist.new_group(list(range(size))) for size in (1, 2, 4) if size <= world}
    results = []
    for size, causal, layout, shape, seed, dtype_name in CASES:
        if size > world or rank >= size:
            continue
        group = groups[size]
        # the second shape runs with tiles of 3 inside each step (512 by default)
        lmlab.ring._BLOCK = 3 if seed == 1 else 512
        dtype = getattr(torch, dtype_name)
        full = [t.to(dtype).double() for t in _full_inputs(shape, seed)]  # values dtype holds
        ref = _reference(*full, causal)
        q, k, v, weight = (shard_sequence(t, rank, size, layout).to(device, dtype)
                           for t in full)
        q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
        out = ring_attention(q, k, v, causal=causal, group=group, layout=layout)
        grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
        errors = {}
        for name, ours, theirs in zip(("out", "dq", "dk", "dv"), (out, *grads), ref):
            theirs = shard_sequence(theirs, rank, size, layout)
            ours = ours.detach().cpu()
            if ours.dtype != dtype:
                errors[name] = f"dtype {ours.dtype}, expected {dtype}"
            elif dtype == torch.bfloat16:
                errors[name] = within_rounding(ours, theirs)
            else:
                try:
                    torch.testing.assert_close(ours, theirs.float(), **TOL)
                    errors[name] = None
                except AssertionError as error:
                    errors[name] = str(error)
        results.append({"size": size, "causal": causal, "layout": layout,
                        "shape": list(shape), "dtype": dtype_name, "errors": errors})

    # bad input on one rank raises the same clear error on every rank (no hang)
    base = torch.randn(1, 2, 8, 4, device=device)
    bad_cases = {
        "dtype": (base.double() if rank == 1 else base, "zigzag", None),
        "shape": (torch.randn(1, 2, 6, 4, device=device) if rank == world - 1 else base,
                  "zigzag", None),
        "odd": (base[..., :7, :], "zigzag", None),
        "no layout": (base, None, None),
        "unknown layout": (base, "striped" if rank == 0 else "zigzag", None),
        "layouts differ": (base, "zigzag" if rank == 0 else "contiguous", None),
        "group": (base, "zigzag", "the default group"),
    }
    for name, (x, layout, group) in bad_cases.items():
        try:
            if group is None:
                ring_attention(x, x, x, causal=True, layout=layout)
            else:
                ring_attention(x, x, x, causal=True, layout=layout, group=group)
            message = None
        except (TypeError, ValueError) as error:
            message = f"{type(error).__name__}: {error}"
        results.append({"bad": name, "message": message})
    (outdir / f"rank{rank}.json").write_text(json.dumps({"world": world, "results": results}))
    dist.destroy_process_group()


def _launch(tmp_path: Path, nproc: int, backend: str) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", __file__, str(tmp_path), backend]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nproc)]


def _check_reports(reports: list[dict]) -> None:
    world = len(reports)
    seen, refused = set(), set()
    for rank, report in enumerate(reports):
        for result in report["results"]:
            if "bad" in result:
                name, message = result["bad"], result["message"]
                assert message is not None, f"rank {rank}: {name} not refused"
                if name == "unknown layout" and rank != 0:  # rank 0 passed the unknown one
                    assert message.startswith("ValueError: layout: rank 0 of the group has "
                                              "bad input (ValueError: layout:"), message
                else:
                    assert message.startswith(BAD_CASES[name]), (name, message)
                refused.add((name, rank))
                continue
            failed = {k: v for k, v in result["errors"].items() if v is not None}
            assert not failed, (rank, result)
            seen.add((result["size"], result["causal"], result["layout"],
                      tuple(result["shape"]), result["dtype"], rank))
    # every case ran on every rank of its group, and every bad input was refused on every rank
    assert seen == {(size, causal, layout, shape, dtype, r)
                    for size, causal, layout, shape, _, dtype in CASES
                    for r in range(size) if size <= world}
    assert refused == {(name, r) for name in BAD_CASES for r in range(world)}


@pytest.mark.slow
def test_ring_attention_over_gloo_equals_full_attention(tmp_path):
    """World sizes 1, 2 and 4, causal (zigzag and contiguous shards) and not: outputs and q/k/v
    gradients within 1e-5 in float32, within bfloat16's rounding of float64 in bfloat16; bad
    input refused on every rank."""
    _check_reports(_launch(tmp_path, WORKER_PROCESSES, "gloo"))


@pytest.mark.gpu
def test_ring_attention_over_nccl(tmp_path):
    """NCCL where more than one GPU is present: groups of 1, 2 (and 4 with four GPUs)."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs at least 2 CUDA devices")
    _check_reports(_launch(tmp_path, min(torch.cuda.device_count(), 4), "nccl"))


# --- in one process -----------------------------------------------------------------------------

def test_schedule_every_rank_meets_every_shard_once():
    for n in (1, 2, 3, 5):
        schedule = ring_schedule(n)
        assert all(sorted(column) == list(range(n)) for column in zip(*schedule))
        assert all(sorted(step) == list(range(n)) for step in schedule)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_cover_the_sequence(world_size, layout):
    x = torch.arange(24.0).view(2, 12, 1)
    shards = [shard_sequence(x, r, world_size, layout) for r in range(world_size)]
    assert torch.equal(unshard_sequence(shards, layout), x)
    positions = torch.cat([s[0, :, 0] for s in shards]).sort().values
    assert torch.equal(positions, x[0, :, 0])
    # the older spelling zigzag=True/False cuts the same shards
    zigzag = layout == "zigzag"
    assert all(torch.equal(shard_sequence(x, r, world_size, zigzag=zigzag), shards[r])
               for r in range(world_size))
    assert torch.equal(unshard_sequence(shards, zigzag=zigzag), x)


def test_layouts_hold_the_positions_they_promise():
    x = torch.arange(16).view(16, 1)
    assert shard_sequence(x, 1, 4, "contiguous").flatten().tolist() == [4, 5, 6, 7]
    assert shard_sequence(x, 1, 4, "zigzag").flatten().tolist() == [2, 3, 12, 13]


def test_zigzag_balances_causal_work():
    """With zigzag shards every rank's queries see the same number of keys in total."""
    n, T = 4, 32
    positions = torch.arange(T).view(T, 1).float()
    work = [int((shard_sequence(positions, r, n, "zigzag") + 1).sum()) for r in range(n)]
    assert len(set(work)) == 1
    contiguous = [int((shard_sequence(positions, r, n) + 1).sum()) for r in range(n)]
    assert len(set(contiguous)) == n
    assert zigzag_chunks(0, n) == (0, 7)


@pytest.mark.parametrize("layout", [None, *LAYOUTS])
@pytest.mark.parametrize("world_size", [2, 4])
def test_simulated_ring_in_bfloat16_accumulates_in_float32(layout, world_size):
    """bfloat16 inputs: output and gradients within bfloat16's rounding of the float64 result
    (the running max, sum and output, and the gradients, stay in float32)."""
    full = [t.to(torch.bfloat16) for t in _full_inputs((2, 64, 16), seed=3)]
    ref = _reference(*(t.double() for t in full), causal=True)
    q, k, v = (t.clone().requires_grad_() for t in full[:3])
    out = simulate_ring_attention(q, k, v, world_size, causal=True, layout=layout)
    grads = torch.autograd.grad((out * full[3]).sum(), (q, k, v))
    for ours, theirs in zip((out, *grads), ref):
        assert ours.dtype == torch.bfloat16
        assert within_rounding(ours, theirs) is None, within_rounding(ours, theirs)


@pytest.fixture
def one_process_group(tmp_path):
    """A real gloo process group of one rank (this process), torn down afterwards."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1, timeout=timedelta(seconds=60))
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("causal, layout", [(False, None), (True, "zigzag"),
                                            (True, "contiguous")])
def test_ring_of_one_rank_is_full_attention(one_process_group, causal, layout):
    q, k, v, weight = (t.float() for t in _full_inputs((2, 3, 16, 8), seed=4))
    ref = [t.float() for t in _reference(q, k, v, weight, causal)]
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = ring_attention(q, k, v, causal=causal, layout=layout)
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    for ours, theirs in zip((out, *grads), ref):
        torch.testing.assert_close(ours, theirs, **TOL)


def test_ring_refuses_bad_input_before_any_work(one_process_group):
    x = torch.randn(1, 2, 8, 4)
    with pytest.raises(ValueError, match="^layout: causal ring attention needs the layout"):
        ring_attention(x, x, x, causal=True)  # the layout cannot be guessed: never a default
    with pytest.raises(TypeError, match="^layout:"):
        ring_attention(x, x, x, causal=True, layout=True)
    with pytest.raises(ValueError, match="^layout: expected one of"):
        ring_attention(x, x, x, causal=True, layout="striped")
    with pytest.raises(ValueError, match="^layout: expected one of"):
        ring_attention(x, x, x, layout="Zigzag")  # checked even where it does not matter
    with pytest.raises(ValueError, match="^q: zigzag shards hold two equal chunks"):
        ring_attention(x[..., :7, :], x[..., :7, :], x[..., :7, :], causal=True,
                       layout="zigzag")
    ring_attention(x[..., :7, :], x[..., :7, :], x[..., :7, :], causal=True,
                   layout="contiguous")  # contiguous shards may be odd
    with pytest.raises(TypeError, match="^q:"):
        ring_attention(x.tolist(), x, x)
    with pytest.raises(TypeError, match="^causal:"):
        ring_attention(x, x, x, causal=1, layout="zigzag")
    with pytest.raises(TypeError, match="^scale:"):
        ring_attention(x, x, x, scale="1")
    with pytest.raises(ValueError, match="^scale:"):
        ring_attention(x, x, x, scale=float("nan"))
    with pytest.raises(TypeError, match="^group:"):
        ring_attention(x, x, x, group="world")
    with pytest.raises(ValueError, match="^k: ring self-attention"):
        ring_attention(x, x[..., :6, :], x[..., :6, :])


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is in the test extra; the worker above needs none of it
    pass
else:
    @settings(max_examples=40, deadline=None)
    @given(world_size=st.integers(1, 5), chunk=st.integers(1, 4), D=st.integers(1, 6),
           causal=st.booleans(), layout=st.sampled_from([None, *LAYOUTS]),
           lead=st.sampled_from([(), (2,), (2, 3)]), seed=st.integers(0, 999))
    def test_simulated_ring_equals_full_attention(world_size, chunk, D, causal, layout, lead,
                                                  seed):
        T = world_size * chunk * 2
        q, k, v, weight = _full_inputs((*lead, T, D), seed)
        ref = [t.float() for t in _reference(q, k, v, weight, causal)]
        q, k, v, weight = (t.float() for t in (q, k, v, weight))
        q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
        out = simulate_ring_attention(q, k, v, world_size, causal=causal, layout=layout)
        grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
        for ours, theirs in zip((out, *grads), ref):
            torch.testing.assert_close(ours, theirs, **TOL)


@pytest.mark.parametrize("causal, layout", [(False, None), (True, "zigzag"),
                                            (True, "contiguous")])
@pytest.mark.parametrize("block", [1, 3, 7])
def test_simulated_ring_with_tiles_inside_steps(causal, layout, block, monkeypatch):
    monkeypatch.setattr(lmlab.ring, "_BLOCK", block)
    q, k, v, weight = _full_inputs((2, 3, 48, 8), seed=block)
    ref = [t.float() for t in _reference(q, k, v, weight, causal)]
    q, k, v, weight = (t.float() for t in (q, k, v, weight))
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = simulate_ring_attention(q, k, v, 3, causal=causal, layout=layout)
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    for ours, theirs in zip((out, *grads), ref):
        torch.testing.assert_close(ours, theirs, **TOL)


class TestBadInput:
    def test_sharding(self):
        x = torch.randn(10, 4)
        with pytest.raises(ValueError,
                           match="^x: sequence length 10 is not divisible by world_size = 4"):
            shard_sequence(x, 0, 4)
        with pytest.raises(ValueError, match="^x: .* 2 \\* world_size = 4 \\(zigzag\\)"):
            shard_sequence(x, 0, 2, zigzag=True)
        with pytest.raises(ValueError, match="^rank:"):
            shard_sequence(x, 2, 2)
        with pytest.raises(ValueError, match="^world_size:"):
            shard_sequence(x, 0, 0)
        with pytest.raises(TypeError, match="^x:"):
            shard_sequence(x.tolist(), 0, 1)
        with pytest.raises(ValueError, match="^x:"):
            shard_sequence(torch.randn(4), 0, 1)
        with pytest.raises(ValueError, match="^shards:"):
            unshard_sequence([])
        with pytest.raises(TypeError, match="^shards:"):
            unshard_sequence(x)
        with pytest.raises(TypeError, match=r"^shards\[1\]:"):
            unshard_sequence([x, x.tolist()])
        with pytest.raises(ValueError, match=r"^shards\[0\]:"):
            unshard_sequence([x[0], x[0]])
        with pytest.raises(ValueError, match="^shards:"):
            unshard_sequence([x, x[:5]])
        with pytest.raises(ValueError, match="^shards: expected one dtype"):
            unshard_sequence([x, x.double()])
        with pytest.raises(ValueError, match="^shards: zigzag shards have an even length"):
            unshard_sequence([x[:5], x[:5]], "zigzag")
        with pytest.raises(ValueError, match="^world_size:"):
            ring_schedule(0)
        with pytest.raises(TypeError, match="^world_size:"):
            ring_schedule(2.0)
        with pytest.raises(ValueError, match="^rank:"):
            zigzag_chunks(4, 4)
        with pytest.raises(TypeError, match="^layout:"):
            shard_sequence(x, 0, 2, True)  # the older positional zigzag flag
        with pytest.raises(ValueError, match="^layout: expected one of"):
            shard_sequence(x, 0, 2, "zig-zag")
        with pytest.raises(ValueError, match="^layout: expected one of"):
            unshard_sequence([x, x], "diagonal")
        with pytest.raises(ValueError, match="^zigzag: zigzag=True contradicts"):
            shard_sequence(x, 0, 2, "contiguous", zigzag=True)
        with pytest.raises(TypeError, match="^zigzag:"):
            unshard_sequence([x, x], zigzag="yes")

    def test_simulated(self):
        q = torch.randn(12, 4)
        with pytest.raises(ValueError, match="^q: sequence length 12 .* 8 \\(zigzag\\)"):
            simulate_ring_attention(q, q, q, 4, causal=True)
        with pytest.raises(ValueError,
                           match="^q: sequence length 12 is not divisible by world_size = 5"):
            simulate_ring_attention(q, q, q, 5)
        with pytest.raises(ValueError, match="^q, k, v: expected one dtype"):
            simulate_ring_attention(q, q.double(), q, 2)
        with pytest.raises(ValueError, match="^k:"):
            simulate_ring_attention(q, q[:6], q[:6], 2)
        with pytest.raises(TypeError, match="^world_size:"):
            simulate_ring_attention(q, q, q, 2.0)
        with pytest.raises(ValueError, match="^q: .* 8 \\(zigzag\\)"):
            simulate_ring_attention(q, q, q, 4, layout="zigzag")
        simulate_ring_attention(q, q, q, 4, causal=True, layout="contiguous")  # 12 = 4 x 3
        with pytest.raises(ValueError, match="^layout:"):
            simulate_ring_attention(q, q, q, 2, causal=True, layout="ring")
        with pytest.raises(TypeError, match="^scale:"):
            simulate_ring_attention(q, q, q, 2, scale=[1.0])
        with pytest.raises(ValueError, match="^q: expected a tensor with data"):
            simulate_ring_attention(q.to("meta"), q.to("meta"), q.to("meta"), 2)

    def test_ring_needs_an_initialised_group(self):
        q = torch.randn(4, 4)
        with pytest.raises(RuntimeError, match="^ring_attention: torch.distributed"):
            ring_attention(q, q, q)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "gloo")
