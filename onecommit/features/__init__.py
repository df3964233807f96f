"""The Optional layer: a Feast feature store (+ Redis) attached to and detached from the platform.

Modules that import Feast (`feast_job`) run only inside the `feast` environment; everything else
runs in the platform's and talks to Feast through its CLI environment or its feature server.
"""
