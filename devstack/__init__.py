"""Local stand-ins for the services the product talks to (`make run` and the tests start them)."""
