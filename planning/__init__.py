"""Capacity planning: which machines exist, what they cost, what fits and how fast it runs.

Read by the compiler (a profile's machine and parameter defaults) and by `submit` (the cost
estimate, the memory check); nothing here runs inside a step.
"""
