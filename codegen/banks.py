"""Where aiecc puts a tile's buffers: its two allocation schemes, modelled address by address.

mlir-aie's `AIEAssignBuffers.cpp` (the `aie-assign-buffer-addresses` pass, `--alloc-scheme`):
- the stack is reserved at address 0 of a core's memory (bank 0);
- "bank-aware": buffers sorted largest first, each placed at the next free address of the first
  bank, in round-robin order from the bank after the previous buffer's, that it fits in whole;
  a buffer larger than a bank (16 KiB on a core) fits none, so the scheme fails;
- "basic-sequential": buffers sorted largest first, packed one after another above the stack;
- no scheme given: bank-aware, with a warning per tile, falling back to basic-sequential
  where bank-aware fails.
npukit always passes the scheme explicitly: bank-aware when it places every tile, else
basic-sequential, so the build says which one it used instead of warning.

What the scheme leaves matters beyond fitting: Peano's linker script (`AIETargetLdScript.cpp`)
puts the core object's .data, .rodata and .bss from the highest buffer end to the end of the
core's memory, so the room for its tables is the memory above that end, not what the sum leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BANK_AWARE = "bank-aware"
BASIC_SEQUENTIAL = "basic-sequential"
SCHEMES = (BANK_AWARE, BASIC_SEQUENTIAL)
# AIE2 target model (`AIETargetModel.h`, getNumBanks): 4 banks in a core, 8 in a mem tile.
CORE_BANKS = 4
MEM_TILE_BANKS = 8


@dataclass(frozen=True)
class Placed:
    """One buffer at its address (bank -1 under basic-sequential)."""

    name: str
    address: int
    size: int
    bank: int = -1

    @property
    def end(self) -> int:
        return self.address + self.size


def _largest_first(buffers: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted(buffers, key=lambda b: -b[1])  # stable: ties keep the design's order


def bank_aware(buffers: Sequence[tuple[str, int]], capacity: int, banks: int,
               stack: int) -> list[Placed] | None:
    """The bank-aware placement, or None where some buffer fits no bank."""
    bank_size = capacity // banks
    next_free = [bank_size * i for i in range(banks)]
    next_free[0] += stack
    placed = []
    start = 0
    for name, size in _largest_first(buffers):
        for step in range(banks):
            bank = (start + step) % banks
            if next_free[bank] + size <= bank_size * (bank + 1):
                placed.append(Placed(name, next_free[bank], size, bank))
                next_free[bank] += size
                start = (bank + 1) % banks
                break
        else:
            return None
    return placed


def basic_sequential(buffers: Sequence[tuple[str, int]], capacity: int,
                     stack: int) -> list[Placed] | None:
    """The sequential placement above the stack, or None when it runs past `capacity`."""
    placed, address = [], stack
    for name, size in _largest_first(buffers):
        placed.append(Placed(name, address, size))
        address += size
    return placed if address <= capacity else None


def place(scheme: str, buffers: Sequence[tuple[str, int]], capacity: int, banks: int,
          stack: int) -> list[Placed] | None:
    if scheme == BANK_AWARE:
        return bank_aware(buffers, capacity, banks, stack)
    if scheme == BASIC_SEQUENTIAL:
        return basic_sequential(buffers, capacity, stack)
    raise ValueError(f"unknown allocation scheme {scheme!r}")


def highest_end(placed: Sequence[Placed], stack: int) -> int:
    """Where Peano's linker script starts the core object's static data."""
    return max([stack, *(p.end for p in placed)])
