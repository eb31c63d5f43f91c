"""What the tests share besides fixtures: the contract's output events written out, the import rule, Eventarc."""
