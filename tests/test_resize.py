"""Resizing a trained network to new widths (models/resize.py), for every family.

Equality checks run in float64 on networks whose BatchNorm running statistics and affine
parameters are far from their initial 0/1, so that a wrong index or a wrong initial value
shows in the outputs.
"""

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import random_widths, small_arch
from netadjust.errors import ConfigError
from netadjust.models import channel_importance, get_arch, list_archs, resize, top_channels
from netadjust.models.channels import offsets, segments, arch_entries

ARCHS = list(list_archs())


def seeded(name, salt=""):
    return random.Random(f"{name}/{salt}")


def trained(arch, widths, seed=0):
    """``arch.build(widths)`` in float64 with non-trivial BN statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    model = arch.build(widths).double().train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, arch.in_channels, arch.input_size, arch.input_size, dtype=torch.float64) * 2 + 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def load(arch, widths, state):
    model = arch.build(widths).double()
    model.load_state_dict(state, strict=True)
    return model.eval()


def outputs(model, arch, seed=1):
    x = torch.randn(6, arch.in_channels, arch.input_size, arch.input_size, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def assert_same_outputs(a, b, rel=1e-5):
    err = ((a - b).abs().max() / a.abs().max()).item()
    assert err <= rel, err


def segment_of(arch, widths, key):
    return segments(arch_entries(arch, widths))[key]


def free_keys(arch, widths):
    segs = segments(arch_entries(arch, widths))
    return [k for k in arch.keys() if segs[k].free]


# -- the description -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ARCHS)
def test_channel_map_describes_every_entry(name):
    arch = small_arch(name)
    w = random_widths(arch, seeded(name), 1, 9)
    state = arch.build(w).state_dict()
    cmap = arch.channel_map(w)
    assert list(cmap) == list(state)
    for entry, spaces in cmap.items():
        assert len(spaces) == state[entry].dim(), entry
        for dim, sp in enumerate(spaces):
            if sp is not None:
                assert sum(seg.size for seg in sp) == state[entry].shape[dim], (entry, dim)
    segs = {seg.name: seg for spaces in cmap.values() for sp in spaces if sp for seg in sp}
    assert all(segs[k].size == w[k] for k in w)


@pytest.mark.parametrize("name, free, prefix_inert", [
    ("resnet20", ["stage1.block0.conv1"], ["stage1.block0.conv2", "stage2.block0.conv2"]),
    ("plain20", ["stage1.block0.conv1", "stage1.block0.conv2"], []),
    ("resnet18", ["layer1.block0.conv1"], ["layer1.block0.conv2", "layer2.block0.conv2"]),
    ("pyramidnet20", ["stage1.block0.conv1"], ["stage3.block2.conv2"]),
    ("mobilenet_v2", ["blocks.1.expand", "stage2.out", "stage1.out"], []),
    ("mnasnet_a1", ["blocks.3.expand", "stage3.out"], []),
    ("densenet40", ["dense1.layer0.growth", "dense3.layer11.growth"], []),
])
def test_free_and_inert_flags(name, free, prefix_inert):
    arch = small_arch(name)
    segs = segments(arch_entries(arch, arch.default_widths()))
    assert all(segs[k].free and not segs[k].inert for k in free)
    assert all(not segs[k].free and segs[k].inert for k in prefix_inert)
    derived = [s for s in segs.values() if s.name not in arch.keys()]
    assert all(not s.free and not s.inert for s in derived)


def test_residual_local_conv2_is_prefix_and_projection_follows_conv2():
    local = small_arch("resnet20", residual="local")
    seg = segment_of(local, local.default_widths(), "stage1.block1.conv2")
    assert not seg.free and seg.inert
    r18 = small_arch("resnet18")
    cmap = r18.channel_map()
    proj = [k for k in cmap if ".downsample.0.weight" in k][0]
    assert cmap[proj][0][0].name == "layer2.block0.conv2"


# -- 1. widening keeps the outputs -----------------------------------------------------------

@pytest.mark.parametrize("widen", ["zero", "split"])
@pytest.mark.parametrize("name", ARCHS)
def test_widening_keeps_eval_outputs(name, widen):
    rng = seeded(name, "widen")
    arch = small_arch(name)
    for trial in range(2):
        old = random_widths(arch, rng, 1, 10)
        new = {k: v + (rng.randint(1, 6) if rng.random() < 0.6 else 0) for k, v in old.items()}
        assert any(new[k] == old[k] for k in old) and any(new[k] > old[k] for k in old)
        model = trained(arch, old, seed=trial)
        state = resize(arch, model.state_dict(), old, new, generator=torch.Generator().manual_seed(trial), widen=widen)
        assert_same_outputs(outputs(model, arch), outputs(load(arch, new, state), arch))
        if widen == "split":  # it did copy channels: not the zero-start state
            zero = resize(arch, model.state_dict(), old, new, generator=torch.Generator().manual_seed(trial))
            assert any(not torch.equal(state[k], zero[k]) for k in state)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "pyramidnet20"])
def test_split_leaves_residual_add_channels_zero_start(name):
    # Channels that add into a residual stream by position cannot be copies: widening only those
    # keys gives exactly the zero-start state (and draws nothing from the generator).
    arch = small_arch(name)
    old = random_widths(arch, seeded(name, "inert"), 2, 8)
    free = set(free_keys(arch, old))
    new = {k: v + (0 if k in free else 3) for k, v in old.items()}
    state = trained(arch, old).state_dict()
    split = resize(arch, state, old, new, generator=torch.Generator().manual_seed(1), widen="split")
    zero = resize(arch, state, old, new, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(split[k], zero[k]) for k in zero)


def test_residual_local_widening_is_exact_where_no_truncated_channel_comes_back():
    # Under "local" a block's shortcut is cut to conv2's width. Where every block's old conv2 is
    # at least as wide as the stream entering it, widening lets nothing through that was cut.
    arch = small_arch("resnet20", residual="local")
    rng = seeded("local")
    conv2 = sorted(rng.randint(16, 24) for _ in range(9))
    old = {k: rng.randint(2, 10) if k.endswith("conv1") else 0 for k in arch.keys()}
    for k, c in zip([k for k in arch.keys() if k.endswith("conv2")], conv2):
        old[k] = c
    new = {k: v + rng.randint(0, 5) for k, v in old.items()}
    model = trained(arch, old)
    state = resize(arch, model.state_dict(), old, new, generator=torch.Generator().manual_seed(0))
    assert_same_outputs(outputs(model, arch), outputs(load(arch, new, state), arch))


# -- 2. narrowing keeps exactly the chosen channels ------------------------------------------

# Per family: a free key, its writer module, its BN (None: DenseNet's growth has none), and one
# reader weight with the dims that index the key and where the key's channels start in them.
def _dense_offset(arch, w):
    return arch.stem_width + sum(w[f"dense1.layer{j}.growth"] for j in range(3))


BLOCK_CONV1 = ("segments.1.conv1", "segments.1.bn1", "segments.1.conv2.weight", (1,), None)
EXPLICIT = {
    "cifar": [("stage1.block0.conv1", *BLOCK_CONV1)],
    "plain": [("stage1.block0.conv2", "segments.1.conv2", "segments.1.bn2", "segments.2.conv1.weight", (1,), None)],
    "imagenet": [("layer1.block0.conv1", *BLOCK_CONV1)],
    "pyramidnet20": [("stage1.block0.conv1", *BLOCK_CONV1)],
    # Block 1's expansion: the expand conv and the depthwise conv write it, the project conv reads it.
    "mobilenet_v2": [("blocks.1.expand", "segments.2.body.0", "segments.2.body.1", "segments.2.body.7.weight", (1,),
                      None),
                     ("blocks.1.expand", "segments.2.body.3", "segments.2.body.4", "segments.2.body.7.weight", (1,),
                      None),
                     # stage 2's stream: block 1 projects to it, block 2 (residual) reads it.
                     ("stage2.out", "segments.2.body.7", "segments.2.body.8", "segments.3.body.0.weight", (1,), None)],
    "mnasnet_a1": [("blocks.3.expand", "segments.4.body.0", "segments.4.body.1", "segments.4.body.7.reduce.weight",
                    (1,), None),
                   ("blocks.3.expand", "segments.4.body.7.expand", None, "segments.4.body.8.weight", (1,), None)],
    "densenet40": [("dense1.layer3.growth", "segments.4.conv", None, "segments.5.conv.weight", (1,), _dense_offset),
                   # The transition: input and output both the concatenation.
                   ("dense1.layer3.growth", "segments.4.conv", None, "segments.13.conv.weight", (0, 1), _dense_offset)],
}


def explicit_cases(name):
    if name.startswith("plain"):
        return EXPLICIT["plain"]
    if name in ("resnet18", "resnet34"):
        return EXPLICIT["imagenet"]
    return EXPLICIT.get(name, EXPLICIT["cifar"])


@pytest.mark.parametrize("name", ARCHS)
def test_narrowing_keeps_exactly_the_chosen_channels(name):
    rng = seeded(name, "narrow")
    arch = small_arch(name)
    old = random_widths(arch, rng, 4, 12)
    model = trained(arch, old)
    before = model.state_dict()
    for key, writer, bn, reader, dims, offset in explicit_cases(name):
        keep = rng.sample(range(old[key]), rng.randint(1, old[key] - 1))
        new = {**old, key: len(keep)}
        after = resize(arch, before, old, new, keep={key: keep})
        idx = torch.tensor(keep)
        # Other dims are unchanged, or keep a prefix (MnasNet's squeeze width follows the expansion).
        assert_equal_cut(after[f"{writer}.weight"], before[f"{writer}.weight"][idx])
        if bn is not None:
            for t in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(after[f"{bn}.{t}"], before[f"{bn}.{t}"][idx])
        at = offset(arch, old) if offset else 0
        got, want = after[reader], before[reader]
        for d in dims:
            got, want = got.narrow(d, at, len(keep)), want.index_select(d, idx + at)
        assert_equal_cut(got, want)
        assert_every_tensor_is_the_old_one_indexed(arch, before, after, old, new, {key: keep})


@pytest.mark.parametrize("name", ARCHS)
def test_split_channels_copy_a_kept_channel_and_share_its_readers(name):
    rng = seeded(name, "split-explicit")
    arch = small_arch(name)
    old = random_widths(arch, rng, 4, 12)
    before = trained(arch, old).state_dict()
    for key, writer, bn, reader, dims, offset in explicit_cases(name):
        n, extra = old[key], rng.randint(2, 5)
        new = {**old, key: n + extra}
        after = resize(arch, before, old, new, generator=torch.Generator().manual_seed(3), widen="split")
        w_old, w_new = before[f"{writer}.weight"], after[f"{writer}.weight"]
        cut = tuple(slice(0, m) for m in w_old.shape[1:])  # MnasNet's squeeze may grow with the expansion
        assert torch.equal(w_new[:n][(slice(None), *cut)], w_old)
        # Every new channel's incoming weights (and BN entries) are those of one old channel.
        sources = []
        for row in w_new[n:]:
            same = [i for i in range(n) if torch.equal(row[cut], w_old[i])]
            assert len(same) >= 1
            sources.append(same[0])
        if bn is not None:
            for t in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(after[f"{bn}.{t}"], before[f"{bn}.{t}"][torch.tensor(list(range(n)) + sources)])
        if dims != (1,):
            continue  # a DenseNet transition reads and writes the key: its output rows are copies as well
        # Readers: a channel and its copies split its old column into same-signed parts that add up to it.
        at = offset(arch, old) if offset else 0
        r_old = before[reader].narrow(1, at, n)
        r_new = after[reader].narrow(1, at, n + extra)[tuple(slice(0, m) for m in r_old.shape[:1])]
        for i in range(n):
            group = [i] + [n + j for j, s in enumerate(sources) if s == i]
            parts = r_new[:, group]
            if len(group) == 1:
                assert torch.equal(parts[:, 0], r_old[:, i])
                continue
            torch.testing.assert_close(parts.sum(1), r_old[:, i], rtol=1e-12, atol=1e-12)
            assert (parts * r_old[:, i : i + 1] >= 0).all()
            assert (parts.abs() <= r_old[:, i : i + 1].abs()).all()
            assert not torch.equal(parts[:, 0], parts[:, 1])  # the split breaks the copies' symmetry


def assert_equal_cut(got, want):
    assert torch.equal(got, want[tuple(slice(0, n) for n in got.shape)])


def assert_every_tensor_is_the_old_one_indexed(arch, before, after, old, new, keep):
    """Every tensor equals the old one with the key's dims indexed by ``keep`` (at its place in
    the space) and every other channel dim cut to its new size (narrowing keeps a prefix)."""
    old_map, new_map = arch.channel_map(old), arch.channel_map(new)
    assert list(after) == list(new_map)
    for entry, spaces in new_map.items():
        want = before[entry]
        for dim, sp in enumerate(spaces):
            if sp is None:
                continue
            start = offsets(old_map[entry][dim])
            src = []
            for seg in sp:
                chosen = keep.get(seg.name, range(seg.size))
                src += [start[seg.name] + i for i in chosen]
            want = want.index_select(dim, torch.tensor(src, dtype=torch.long))
        assert torch.equal(after[entry], want), entry


# -- 3. identity and permutation -------------------------------------------------------------

@pytest.mark.parametrize("name", ARCHS)
def test_same_widths_is_identity_and_permuting_free_channels_keeps_outputs(name):
    rng = seeded(name, "perm")
    arch = small_arch(name)
    w = random_widths(arch, rng, 2, 10)
    model = trained(arch, w)
    state = model.state_dict()
    same = resize(arch, state, w, w)
    assert list(same) == list(state) and all(torch.equal(same[k], state[k]) for k in state)
    perms = {k: rng.sample(range(w[k]), w[k]) for k in free_keys(arch, w)}
    permuted = resize(arch, state, w, w, keep=perms)
    assert any(not torch.equal(permuted[k], state[k]) for k in state)
    assert_same_outputs(outputs(model, arch), outputs(load(arch, w, permuted), arch))


# -- 4. loads strictly, exact FLOPs ----------------------------------------------------------

@pytest.mark.parametrize("name", ARCHS)
def test_resized_state_loads_strictly_and_costs_arch_macs(name):
    rng = seeded(name, "macs")
    arch = small_arch(name)
    for _ in range(3):
        old, new = random_widths(arch, rng, 1, 12), random_widths(arch, rng, 1, 12)
        free = free_keys(arch, old)
        keep = {k: rng.sample(range(old[k]), min(old[k], new[k])) for k in rng.sample(free, len(free) // 2)}
        state = resize(arch, arch.build(old).state_dict(), old, new, keep=keep)
        model = arch.build(new)
        model.load_state_dict(state, strict=True)
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, arch.in_channels, arch.input_size, arch.input_size))
        assert counter.get_total_flops() / 2 == arch.macs(new)


def test_resize_keeps_dtype_and_is_reproducible_with_a_generator():
    arch = small_arch("mnasnet_a1")
    old = random_widths(arch, seeded("gen"), 1, 6)
    new = {k: v + 3 for k, v in old.items()}
    state = arch.build(old).state_dict()
    a = resize(arch, state, old, new, generator=torch.Generator().manual_seed(5))
    b = resize(arch, state, old, new, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == state[k].dtype for k in a)
    assert a["segments.0.1.num_batches_tracked"].dtype == torch.long


# -- 5. errors -------------------------------------------------------------------------------

def test_unknown_widening_is_named():
    arch = small_arch("resnet20")
    w = arch.default_widths()
    with pytest.raises(ConfigError, match="widen must be one of zero, split, got 'copy'"):
        resize(arch, arch.build(w).state_dict(), w, w, widen="copy")


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "pyramidnet20"])
def test_non_prefix_keep_on_a_non_free_key_is_refused(name):
    arch = small_arch(name)
    w = arch.default_widths()
    key = [k for k in arch.keys() if k.endswith("conv2")][1]
    new = {**w, key: w[key] - 2}
    state = arch.build(w).state_dict()
    with pytest.raises(ConfigError, match=rf"keep\['{key}'\]: {key} is not free: .*residual stream by position"):
        resize(arch, state, w, new, keep={key: list(range(1, w[key] - 1))})
    resize(arch, state, w, new, keep={key: list(range(w[key] - 2))})  # the prefix is what it keeps anyway


@pytest.mark.parametrize("name", ARCHS)
def test_bad_keeps_and_states_are_named(name):
    arch = small_arch(name)
    w = arch.default_widths()
    key = free_keys(arch, w)[0]
    new = {**w, key: w[key] - 1}
    state = arch.build(w).state_dict()
    with pytest.raises(ConfigError, match=rf"keep\['{key}'\] has 2 indices; {w[key]} -> {w[key] - 1} channels keeps"):
        resize(arch, state, w, new, keep={key: [0, 1]})
    with pytest.raises(ConfigError, match="must be distinct indices"):
        resize(arch, state, w, new, keep={key: [0] * (w[key] - 1)})
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        resize(arch, state, w, new, keep={"nope": [0]})
    with pytest.raises(ConfigError, match="not one of .* at the old widths: wrong shape"):
        resize(arch, arch.build(new).state_dict(), w, new)


def test_keep_may_be_a_tensor():
    arch = small_arch("resnet20")
    w = arch.default_widths()
    new = {**w, "stage1.block0.conv1": 8}
    state = arch.build(w).state_dict()
    keep = torch.arange(15, 7, -1)
    out = resize(arch, state, w, new, keep={"stage1.block0.conv1": keep})
    assert torch.equal(out["segments.1.conv1.weight"], state["segments.1.conv1.weight"][keep])


# -- importance ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ARCHS)
def test_channel_importance_covers_free_keys(name):
    arch = small_arch(name)
    w = random_widths(arch, seeded(name, "imp"), 2, 9)
    model = trained(arch, w)
    imp = channel_importance(model, arch, w)
    assert list(imp) == free_keys(arch, w)
    assert all(v.shape == (w[k],) and torch.isfinite(v).all() and (v >= 0).all() for k, v in imp.items())
    # Narrowing every key to its most important channels.
    new = {k: max(1, v // 2) for k, v in w.items()}
    keep = top_channels(imp, new)
    assert all(keep[k] == sorted(keep[k]) and len(keep[k]) == new[k] for k in keep)
    load(arch, new, resize(arch, model.state_dict(), w, new, keep=keep))


def test_channel_importance_rules():
    arch = small_arch("resnet20")
    model = trained(arch, arch.default_widths())
    state = model.state_dict()
    imp = channel_importance(model, arch, arch.default_widths())
    want = state["segments.1.bn1.weight"].abs() * state["segments.1.conv1.weight"].flatten(1).norm(dim=1)
    assert torch.allclose(imp["stage1.block0.conv1"], want.float())
    assert "stage1.block0.conv2" not in imp  # not free
    # DenseNet: the growth conv's filter norm times the mean |gamma| of every later reader's BN.
    dn = small_arch("densenet40")
    w = dn.default_widths()
    model = trained(dn, w)
    state = model.state_dict()
    imp = channel_importance(model, dn, w)
    at, g = dn.stem_width + 12 * 11, 12  # dense1.layer11: read by the transition and every later BN
    readers = [k for k in state if k.endswith("bn.weight") or k == "segments.39.0.weight"]
    readers = [state[k][at:at + g].abs() for k in readers if state[k].shape[0] > at]
    want = state["segments.12.conv.weight"].flatten(1).norm(dim=1) * torch.stack(readers).mean(0)
    assert len(readers) == 1 + 1 + 12 + 12 + 1  # transition1, dense2, transition2, dense3, head
    assert torch.allclose(imp["dense1.layer11.growth"], want.float())


def test_widening_a_real_size_network_is_exact():
    # One check at the families' natural geometry (no float64: float32 to 1e-5).
    arch = get_arch("resnet20", num_classes=10)
    old = arch.default_widths()
    new = {k: v + (4 if i % 3 else 0) for i, (k, v) in enumerate(old.items())}
    torch.manual_seed(0)
    model = arch.build(old).train()
    with torch.no_grad():
        model(torch.randn(32, 3, 32, 32))
    model.eval()
    state = resize(arch, model.state_dict(), old, new)
    wide = arch.build(new)
    wide.load_state_dict(state)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert_same_outputs(model(x), wide.eval()(x))
