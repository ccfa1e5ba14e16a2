"""Protocol-faithful mock provider servers (Anthropic, OpenAI, Gemini) with the simulated model behind them.

For tests, the demo and the benchmark: real adapters speak real HTTP to these on loopback.
"""
