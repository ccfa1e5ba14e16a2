"""Protocol-faithful mock provider servers (Anthropic, OpenAI, Gemini) with the simulated model behind them.

Test doubles, shipped in the same distribution as the runtime but beside it, not in it: the tests,
`agentctl demo` (which runs `python -m mock_providers` as its own process) and the benchmarks
point the real adapters at these over real HTTP on loopback. They use the runtime's sans-IO
pieces (messages, the simulated model, token counting) and never the adapters they check;
the runtime never imports them (both contracts in .importlinter).
"""
