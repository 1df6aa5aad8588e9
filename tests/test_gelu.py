"""GELU's float function against independently known values, and the table built from it."""

from __future__ import annotations

import numpy as np

from codegen.kernels import spec_from_params
from codegen.kernels.gelu import GeluSpec, gelu

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
