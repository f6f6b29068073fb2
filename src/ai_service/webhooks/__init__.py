"""Alerts as signed webhooks: what fires them, the outbox they wait in, their delivery.

    detect.py    the scan (one instance at a time) that writes the events that are due
    events.py    the events' bodies and the outbox's rows: write once, claim, settle, retry
    delivery.py  one signed POST of an event, and the workers that deliver the outbox
    signing.py   Standard Webhooks' signature (`webhook-id`, `-timestamp`, `-signature`)
    runtime.py   the scan and the workers of one process, built and closed in the lifespan

An event is written to the outbox (`api_webhook_events`) in the database, once
(its `dedup_key` is unique), and delivered at least once by any instance: a
delivery that an instance did not finish is claimed again after a timeout.
"""
