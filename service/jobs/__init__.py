"""Training jobs: the API checks a request (`planner`) and stores a queued record (`store`,
`records`); a runner (`lumos trainer`, or a thread of the embedded `lumos serve`) takes queued jobs
and runs each as a `lumos train` subprocess (`runner`), following it through the typed progress
file the training engine writes (`training.progress`).

Overrides are checked as a schema diff against the config the trainer pins (`overrides`), and
every path a job may name or show is confined to, and shown relative to, its root (`roots`).
"""
