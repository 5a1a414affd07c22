"""Shared by the serving tests."""

# The gRPC deadline every test request carries: generous, because the suite may run beside other work (a request
# that takes a second idle once ran out of a tighter deadline on a busy machine).
DEADLINE = 120  # seconds
