"""Event sources: EventBridge → SQS (``sqs.py``) and CloudTrail LookupEvents (``lookup.py``)."""
