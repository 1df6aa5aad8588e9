"""Tests of the host emulator (runtime.emulator) on small hand-written designs."""
