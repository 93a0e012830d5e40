"""Events: what an operator acts on, made from a camera's clip results.

`rules` turns a camera's results into events (pure), `tracker` runs it per camera in the ingest
worker (which holds the frames the evidence is cut from), `store` keeps events and each camera's
rule state (Redis or in-process), `evidence` writes and prunes each event's clip and key frame,
`notify` signs webhooks and publishes MQTT, `segments` reports an upload's runs of one label.
"""
