"""Benchmarks: how fast Lumos is against its peers and this machine's limits, side by side.

One module per benchmark (`lumos bench NAME` runs `python -m bench.NAME` in the checkout); the
others are what they share: `report` (machine, load, JSON and the doc's rows), `models` and
`videos` (inputs), `server` (a `lumos serve` process), `profile` (py-spy summaries).
"""
