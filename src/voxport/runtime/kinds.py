"""The device kinds voxport runs on, in --device auto's order of preference (importable without torch)."""

DEVICE_KINDS = ("cuda", "npu", "xpu", "mps", "cpu")
