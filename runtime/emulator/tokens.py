"""Task-completion tokens and the shim task queue, modelled as the NPU lowering makes them.

What mlir-aie's lowering does (lib/Dialect/AIEX/Transforms/AIEDmaToNpu.cpp):
- `aiex.npu.dma_memcpy_nd` (DmaToNpuPattern) becomes a buffer-descriptor write, an address
  patch and an `npu.push_queue` onto the task queue of the FIFO's shim channel. The push sets
  the queue word's "issue token" bit when the op says `issue_token = true`, and always on an
  S2MM (device -> host) channel (kept for backward compatibility, mlir-aie PR #1209). A task
  pushed with that bit sends one task-complete token (TCT) to the controller when it finishes.
- `aiex.npu.dma_wait {symbol = @f}` (DmaWaitToSyncPattern) becomes one `npu.sync` on @f's shim
  column, row, direction and channel, which holds the instruction stream until one TCT from
  that channel arrives: one wait takes one token, and nothing ties it to the transfer meant.
- A token nobody syncs on is not dropped: mlir-aie PR #3254 treats the TCTs as a per-channel
  FIFO (its verifier refuses only a wait with no token to take), so a token left over by one
  invocation satisfies the next invocation's first wait on that channel, before its transfer.
- A DMA channel's task queue holds 4 tasks (aie-rt src/dma/xaie_dma.c, XAIE_DMA_MAX_QUEUE_SIZE,
  returned by XAie_DmaGetMaxQueueSize); a push onto a full queue is dropped, not stalled
  (mlir-aie PR #3734), so that transfer never runs.
mlir-aie's programming_examples (basic/passthrough_dmas) ask a token only of the task they
await and leave the inputs without one. npukit's rule is the same and strict: a transfer
issues a token only if a later wait on its FIFO takes it, between two waits on a FIFO exactly
one transfer issues a token (the last one), and no token is left at the end of a sequence.
"""

from __future__ import annotations

from typing import Protocol

# Tasks one shim DMA channel can hold queued (aie-rt XAIE_DMA_MAX_QUEUE_SIZE). A task counts
# from its push until it is complete: the one running is counted too (conservative).
TASK_QUEUE_DEPTH = 4


class Issued(Protocol):
    """What the token rule needs of a transfer: its line and whether it asks for a token."""

    line: int
    to_fifo: bool
    issue_token: bool


def issues_token(t: Issued) -> bool:
    """Whether the lowered push asks for a TCT: `issue_token = true`, or any S2MM transfer."""
    return t.issue_token or not t.to_fifo


def direction(t: Issued) -> str:
    return "host->device (MM2S)" if t.to_fifo else "device->host (S2MM)"


def wait_problem(fifo: str, covered: list[Issued]) -> str | None:
    """Why a dma_wait on `fifo` after the transfers `covered` (issued on it since the last wait
    on it) would not take the token of the last of them, or None when it does."""
    tokens = [t for t in covered if issues_token(t)]
    if not tokens:
        if not covered:
            return (f"no transfer was issued on @{fifo} since the last wait on it, so no token "
                    "is pending: on the NPU this wait would never return")
        last = covered[-1]
        return (f"waits for the {direction(last)} transfer at line {last.line}, which was "
                "issued without `issue_token = true`: no token is pending on its channel, so "
                "on the NPU this wait would never return")
    if len(tokens) > 1:
        lines = ", ".join(str(t.line) for t in tokens)
        outgoing = sum(not t.to_fifo for t in tokens)
        what = (f"covers {outgoing} device->host transfers on @{fifo}"
                if outgoing == len(tokens) else f"covers {len(tokens)} token-issuing transfers "
                f"on @{fifo}")
        return (f"{what} (lines {lines}), but a dma_wait takes one task-completion token: "
                f"it returns on the first to arrive (line {tokens[0].line}'s) and leaves the "
                "others queued, stale, for later waits to take; wait after each, or drop "
                "`issue_token` where nobody waits")
    if tokens[0] is not covered[-1]:
        return (f"takes the token of the transfer at line {tokens[0].line}, but the transfer "
                f"at line {covered[-1].line} after it on @{fifo} is what it should wait for: "
                "give the token to the last transfer")
    return None


def leftover_problem(fifo: str, t: Issued) -> str:
    """The message for a token-issuing transfer no later dma_wait on `fifo` takes."""
    return (f"issues a task-completion token on @{fifo} that no later `aiex.npu.dma_wait "
            f"{{symbol = @{fifo}}}` takes: it stays queued, and the next invocation's first "
            "wait on that channel returns on it before its own transfer is done; drop "
            "`issue_token` or wait for it")


def queue_problem(fifo: str, in_flight: list[Issued]) -> str:
    """The message for a push onto a shim channel whose task queue is full."""
    lines = ", ".join(str(t.line) for t in in_flight)
    return (f"queues a transfer on the shim channel of @{fifo} while {len(in_flight)} are "
            f"queued and not done (lines {lines}); a channel's task queue holds "
            f"{TASK_QUEUE_DEPTH} (aie-rt XAIE_DMA_MAX_QUEUE_SIZE) and drops a push onto a full "
            "one: wait for an earlier transfer first")
