"""Prompt samplers, one module each; every sampler has ``sample(batch, generator) -> Prompts``."""
