"""The generated low-light action benchmark (generator v2): people with bodies doing the 11 ARID
actions in lamp-lit rooms at night, filmed by mounted cameras with noisy sensors, written in the
ARID v1.0 layout. One job per module: `motion` (actions, per-actor style), `body` (capsule bodies
and the objects they handle), `scene` (room, furniture, lights, people), `camera` (mount,
projection, shake, exposure, blur), `sensor` (noise, tone curve), `domains` (train and shifted
ranges), `clip` (one clip end to end, with the legibility floor), `benchmark` (the data set on
disk), `stats` (measurements). See docs/benchmark.md.
"""
