"""``breakglass-watcher demo``: the whole watcher against an embedded AWS emulator, no account.

It starts moto's server with the LookupEvents emulator on loopback, creates the break-glass role
and user and the EventBridge rule → SQS queue (+ dead-letter queue) in it, writes a config and
rules with a drill window open now (``scenario``), runs the daemon in this event loop
(``running``), then runs the drill (the ``drill`` command's own code) and one unexpected use, and
checks what the watcher made of them (``checks``); ``story`` tells it all to the person watching.

moto records no CloudTrail events, so the demo plays CloudTrail's part (``cloudtrail``): each
call it made becomes a real-shaped CloudTrail record, delivered both to EventBridge
(``put_events`` → rule → SQS) and to the LookupEvents emulator, so the watcher reads every event
twice and must count it once.

Credentials: dummy ones, set in this process only for the emulator (never printed); instance
metadata look-ups are off and shared AWS config files are ignored, so nothing reaches AWS.
"""
