"""matchrelay's tests: a package, so the conftest and the support modules are imported by one name."""
