"""Attention-specific properties: the causal mask and the fixed-point model's independence."""

from __future__ import annotations

import numpy as np

from codegen.kernels import spec_from_params
from codegen.kernels.attention import AttentionSpec, exp2_table


def test_golden_is_not_the_reference() -> None:
    """The golden model models the fixed-point core: it must differ from float somewhere."""
    spec = spec_from_params("attention")
    diffs = sum(
        int(np.count_nonzero(spec.golden(x)[0] != spec.reference(x)[0]))
        for x in (spec.random_inputs(s) for s in range(4))
    )
    assert diffs > 0


def test_causal_mask_hides_future_keys() -> None:
    """With the mask, query 0 sees key 0 only, so its output is V row 0 rescaled."""
    spec = spec_from_params("attention", {"causal": "1"})
    assert isinstance(spec, AttentionSpec)
    qkv = spec.random_inputs(7)[0]
    _, _, v = spec._split(qkv)
    out = spec.golden([qkv])[0].reshape(spec.n_queries, spec.head_dim)
    expected = np.clip(np.floor(np.abs(v[0, 0] * spec.v_scale / spec.o_scale) + 0.5)
                       * np.sign(v[0, 0]), -128, 127)
    np.testing.assert_array_equal(out[0], expected.astype(np.int8))


def test_exp2_table_is_two_to_the_minus_f() -> None:
    table = exp2_table()
    assert table[0] == 1 << 24 and table[128] == round(2**24 / 2**0.5)
    assert np.all(np.diff(table.astype(int)) < 0)
