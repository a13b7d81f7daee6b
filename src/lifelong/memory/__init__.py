"""Replay buffers: tensor-backed, preallocated, O(1) insertion per example."""

from lifelong.memory.buffer import ClassBalancedBuffer, ReservoirBuffer, make_buffer

__all__ = ["ReservoirBuffer", "ClassBalancedBuffer", "make_buffer"]
