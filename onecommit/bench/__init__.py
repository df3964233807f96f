"""`invoke bench`: measured speed of the serving path, written to docs/bench/."""
