"""Reusable modules that methods assemble: the selective scan, sparse masks and pruning, hypernetworks."""
