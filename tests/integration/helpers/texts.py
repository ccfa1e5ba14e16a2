"""Texts the integration tests send, imported by path (`helpers.texts`), never through `conftest`:
with several test folders collected in one run, `from conftest import` finds whichever conftest
module came first."""

TASK = "task: write fib"
