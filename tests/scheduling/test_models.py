import pytest

from job_runner.scheduling import GPU_MODELS, SliceRequest


def place_all(spec, profiles):
    """Place profiles greedily at their lowest legal slot; return starts (None = did not fit)."""
    used, counts, out = 0, {}, []
    for p in profiles:
        starts = spec.legal_starts(used, counts, p)
        if not starts:
            out.append(None)
            continue
        used |= spec.profile(p).mask(starts[0])
        counts[p] = counts.get(p, 0) + 1
        out.append(starts[0])
    return out


def test_mig_models_and_profiles_exist():
    for name in ("A100-40GB", "A100-80GB", "H100-80GB", "H200", "A30"):
        assert GPU_MODELS[name].mig is not None, name
    assert set(GPU_MODELS["A100-80GB"].mig.profiles) == {"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"}
    assert set(GPU_MODELS["H200"].mig.profiles) == {"1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"}
    assert set(GPU_MODELS["A30"].mig.profiles) == {"1g.6gb", "2g.12gb", "4g.24gb"}
    assert GPU_MODELS["T4"].mig is None


def test_a100_seven_small_instances_then_full():
    spec = GPU_MODELS["A100-40GB"].mig
    assert place_all(spec, ["1g.5gb"] * 8) == [0, 1, 2, 3, 4, 5, 6, None]  # max 7: slot 7 is not a start


def test_a100_4g_plus_3g_is_legal_but_not_two_4g():
    spec = GPU_MODELS["A100-80GB"].mig
    assert place_all(spec, ["4g.40gb", "3g.40gb"]) == [0, 4]
    assert place_all(spec, ["4g.40gb", "4g.40gb"]) == [0, None]
    assert place_all(spec, ["3g.40gb", "3g.40gb", "1g.10gb"]) == [0, 4, None]
    assert place_all(spec, ["7g.80gb", "1g.10gb"]) == [0, None]


def test_h100_2g_starts_and_1g20_max():
    spec = GPU_MODELS["H100-80GB"].mig
    assert place_all(spec, ["2g.20gb"] * 4) == [0, 2, 4, None]
    assert place_all(spec, ["1g.20gb"] * 5) == [0, 2, 4, 6, None]
    # a 1g at slot 1 blocks the 2g start at 0, leaving 2 and 4
    used = spec.profile("1g.10gb").mask(1)
    assert spec.legal_starts(used, {"1g.10gb": 1}, "2g.20gb") == [2, 4]
    assert spec.legal_starts(used, {"1g.10gb": 1}, "4g.40gb") == []
    assert spec.legal_starts(used, {"1g.10gb": 1}, "3g.40gb") == [4]


def test_a30_geometry():
    spec = GPU_MODELS["A30"].mig
    assert place_all(spec, ["2g.12gb", "1g.6gb", "1g.6gb", "1g.6gb"]) == [0, 2, 3, None]
    assert spec.milli("2g.12gb") == 500


def test_mig_charge_is_compute_fraction():
    assert SliceRequest("mig", mig_profile="3g.40gb").charge().gpu_milli == 429
    assert SliceRequest("mig", mig_profile="7g.80gb").charge().gpu_milli == 1000


@pytest.mark.parametrize("bad", [
    dict(kind="whole", gpus=9), dict(kind="whole", gpus=0), dict(kind="share", gpu_milli=0),
    dict(kind="share", gpu_milli=1500), dict(kind="mig", mig_profile="5g.50gb"), dict(kind="gpu"),
    dict(kind="mig", mig_profile="3g.40gb", gpu_models=("T4",)),
])
def test_invalid_requests_are_rejected_with_a_message(bad):
    with pytest.raises(ValueError, match="invalid slice request"):
        SliceRequest(**bad)


def test_request_from_dict_infers_kind_and_rejects_unknown_fields():
    assert SliceRequest.from_dict({"gpus": 2}).kind == "whole"
    assert SliceRequest.from_dict({"gpu_milli": 250}).kind == "share"
    assert SliceRequest.from_dict({}).kind == "cpu"
    with pytest.raises(ValueError, match="unknown"):
        SliceRequest.from_dict({"gpuz": 1})
