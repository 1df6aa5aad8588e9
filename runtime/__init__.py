"""npukit runtime: loads artifact directories and runs them on an NPU (pyxrt) or the emulator."""
