"""What the tests share besides fixtures: the contract's events, the import rule, Eventarc, the former body reader."""
