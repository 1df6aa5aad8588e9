"""GELU's float function against independently known values and PyTorch, the table built from
it, and the lengths it tiles."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.kernels.gelu import GeluSpec, gelu
from codegen.spec import SpecError

# x·Φ(x) with the standard normal CDF Φ, from tables of Φ (not computed by gelu()).
KNOWN = {
    -3.0: -3.0 * 0.0013498980316301,
    -1.0: -1.0 * 0.15865525393145707,
    0.0: 0.0,
    0.5: 0.5 * 0.6914624612740131,
    1.0: 0.8413447460685429,
    2.0: 2.0 * 0.9772498680518208,
}


def test_gelu_matches_known_values() -> None:
    xs = np.array(list(KNOWN))
    np.testing.assert_allclose(gelu(xs), list(KNOWN.values()), rtol=1e-12, atol=1e-15)


def test_table_entries_are_the_rounded_function() -> None:
    spec = spec_from_params("gelu", {"in_scale": "0.05", "out_scale": "0.04"})
    assert isinstance(spec, GeluSpec)
    table = spec.table()
    assert table[128] == 0  # gelu(0) = 0
    assert table[128 + 20] == round(0.8413447460685429 / 0.04)  # q = 20 is x = 1.0
    assert table[128 - 20] == -round(0.15865525393145707 / 0.04)  # x = -1.0: -3.97 -> -4
    assert np.all(np.diff(table[128:].astype(int)) >= 0)  # increasing for x >= 0


SCALE_PAIRS = [(8.0 / 127.0, 8.0 / 127.0), (0.05, 0.04), (0.02, 0.05), (0.1, 0.01), (0.003, 0.002)]


@pytest.mark.parametrize(("in_scale", "out_scale"), SCALE_PAIRS)
def test_table_matches_pytorchs_erf_gelu(in_scale: float, out_scale: float) -> None:
    """Independent of npukit's float function: PyTorch's exact (erf) GELU, in float64."""
    torch = pytest.importorskip("torch")
    spec = spec_from_params("gelu", {"in_scale": str(in_scale), "out_scale": str(out_scale)})
    assert isinstance(spec, GeluSpec)
    x = torch.arange(-128, 128, dtype=torch.float64) * in_scale
    theirs = (torch.nn.functional.gelu(x, approximate="none") / out_scale).numpy()
    want = np.clip(np.sign(theirs) * np.floor(np.abs(theirs) + 0.5), -128, 127)
    np.testing.assert_array_equal(spec.table().astype(np.int64), want.astype(np.int64))


@pytest.mark.parametrize(("in_scale", "out_scale"), SCALE_PAIRS)
def test_golden_equals_the_erfc_reference(in_scale: float, out_scale: float) -> None:
    """The reference goes through erfc, the table through erf: equal on every int8 value."""
    spec = spec_from_params("gelu", {"in_scale": str(in_scale), "out_scale": str(out_scale),
                                     "length": "256"})
    x = np.arange(-128, 128, dtype=np.int8)
    assert spec.accuracy_problems([x]) == []
    np.testing.assert_array_equal(spec.golden([x])[0], spec.reference([x])[0])


def test_a_length_whose_tiles_are_tiny_is_refused() -> None:
    with pytest.raises(SpecError, match=r"length 16396: .* is 4 bytes, 4,099 tiles a call .*"
                                        r"e\.g\. 16,384 or 16,640"):
        spec_from_params("gelu", {"length": str(4 * 4099)})
    assert spec_from_params("gelu", {"length": "16640"}).n_tiles > 1  # 16,640 = 65 x 256
    assert spec_from_params("gelu", {"length": "12"}).n_tiles == 1  # one small tile is fine
    # A small max_tile is the user's choice of small tiles: it lowers the bar with it.
    assert spec_from_params("gelu", {"length": "1000", "max_tile": "100"}).tile == 100
