"""Tests of handlers/pubsub/: the sinks and the Publish RPC on the emulator."""
