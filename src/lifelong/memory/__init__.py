"""Replay buffers: tensor-backed, preallocated, O(1) insertion per example."""

from lifelong.memory.buffer import (
    BUFFER_KINDS,
    ClassBalancedBuffer,
    ExperienceBalancedBuffer,
    GreedyClassBalancedBuffer,
    ReservoirBuffer,
    make_buffer,
)

__all__ = [
    "BUFFER_KINDS",
    "ReservoirBuffer",
    "ClassBalancedBuffer",
    "ExperienceBalancedBuffer",
    "GreedyClassBalancedBuffer",
    "make_buffer",
]
