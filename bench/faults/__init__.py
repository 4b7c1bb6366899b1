"""Faults: the fault-injecting proxy and the reconnect scenarios run through it."""
