"""agentctl: the command-line client and the demo entry point."""
