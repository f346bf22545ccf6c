"""The facility's config: one YAML file, validated into frozen pydantic models.

`loader.py` reads it (`load_config`, `parse_config`), `facility.py` is the whole of it (`FacilityConfig`), and
each section has a module of its own: `mqtt`, `storage`, `api`, `ingest`, `sites`, `rules`, `alarms`,
`work_orders`, `notifications`, `oncall`, `maintenance`. `types.py` and `durations.py` hold the value types the
sections share, `checks.py` the checks across sections, `registry.py` the devices looked up by id and topic,
`errors.py` what a bad config raises.
"""
