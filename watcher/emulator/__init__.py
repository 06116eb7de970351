"""Stand-ins for the parts of AWS that moto does not provide (CloudTrail records and look-ups)."""
